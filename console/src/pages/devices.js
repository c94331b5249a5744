/** Devices: filter (hostname/id search, tag, agent version, policy state, silence), sort, keyset pages. */
import { useState } from 'preact/hooks';
import { get } from '../api.js';
import { fmtNum } from '../format.js';
import { html } from '../html.js';
import { go } from '../router.js';
import { coverageText, DeviceLink, DevicePolicy, isSilent, Loading, Pager, useLoad, When } from './common.js';

const FILTERS = ['search', 'tag', 'agent_version', 'policy_state', 'silent', 'sort', 'order'];

export function DevicesPage({ params }) {
  const query = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) ?? '']));
  const [cursors, setCursors] = useState([]);
  const [form, setForm] = useState(query);
  const cursor = cursors[cursors.length - 1];
  const { data, error } = useLoad(
    () => get('devices', { ...query, limit: 25, cursor }),
    [params.toString(), cursor],
  );
  const field = (k) => ({ value: form[k], onInput: (e) => setForm({ ...form, [k]: e.currentTarget.value }) });
  const submit = (e) => {
    e.preventDefault();
    setCursors([]);
    go('devices', form);
  };
  return html`<h1>Devices</h1>
    <form class="filters" role="search" aria-label="Filter devices" onSubmit=${submit}>
      <div><label for="d-search">Hostname or id</label><input id="d-search" type="search" ...${field('search')} /></div>
      <div><label for="d-tag">Tag</label><input id="d-tag" ...${field('tag')} /></div>
      <div><label for="d-ver">Agent version</label><input id="d-ver" ...${field('agent_version')} /></div>
      <div><label for="d-state">Policy state</label>
        <select id="d-state" ...${field('policy_state')} onChange=${field('policy_state').onInput}>
          <option value="">any</option><option value="ok">ok</option><option value="stale">stale</option>
          <option value="rejected">rejected</option><option value="unknown">unknown</option>
        </select></div>
      <div><label for="d-silent">Seen</label>
        <select id="d-silent" ...${field('silent')} onChange=${field('silent').onInput}>
          <option value="">any</option><option value="true">silent</option><option value="false">recently</option>
        </select></div>
      <div><label for="d-sort">Sort by</label>
        <select id="d-sort" ...${field('sort')} onChange=${field('sort').onInput}>
          <option value="">hostname</option><option value="last_seen_at">last seen</option>
          <option value="agent_version">agent version</option><option value="policy_version">policy version</option>
        </select></div>
      <div><label for="d-order">Order</label>
        <select id="d-order" ...${field('order')} onChange=${field('order').onInput}>
          <option value="">ascending</option><option value="desc">descending</option>
        </select></div>
      <div class="actions"><button type="submit">Apply</button></div>
    </form>
    ${
      !data
        ? html`<${Loading} error=${error} />`
        : html`${error ? html`<${Loading} error=${error} />` : null}
          <div class="table-wrap"><table>
            <caption>Devices${data.devices.length ? '' : ': none match'}</caption>
            <thead><tr>
              <th scope="col">Hostname</th><th scope="col">OS</th><th scope="col">Agent</th><th scope="col">Tags</th>
              <th scope="col">Last seen</th><th scope="col">Policy</th><th scope="col">Coverage</th>
              <th scope="col">Outbox</th><th scope="col">Dropped</th>
            </tr></thead>
            <tbody>
              ${data.devices.map(
                (d) => html`<tr key=${d.id}>
                  <td><${DeviceLink} id=${d.id} hostname=${d.hostname} />${
                    d.id !== d.hostname ? html`<div class="small muted">${d.id}</div>` : null
                  }</td>
                  <td>${d.os}</td>
                  <td>${d.agent_version}</td>
                  <td>${d.tags.length ? d.tags.map((t) => html`<span class="tag">${t}</span> `) : '—'}</td>
                  <td><${When} iso=${d.last_seen_at} />${
                    d.stopped_at
                      ? html` <span class="badge badge-unknown">stopped</span>`
                      : isSilent(d, data.silent_after_s)
                        ? html` <span class="badge badge-stale">silent</span>`
                        : null
                  }</td>
                  <td><${DevicePolicy} device=${d} published=${data.published_version} /></td>
                  <td class="small">${coverageText(d.coverage)}</td>
                  <td>${fmtNum(d.outbox_depth)}</td>
                  <td>${fmtNum(d.dropped_total)}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>
          <${Pager} label="Device pages" next=${data.next} cursors=${cursors} onPage=${setCursors} />`
    }`;
}
