/** Events timeline: filters (type, rule, device, user, time range), newest first, keyset pages. */
import { useState } from 'preact/hooks';
import { get } from '../api.js';
import { isoToLocal, localToIso } from '../format.js';
import { html } from '../html.js';
import { go } from '../router.js';
import { EventRows, Loading, Pager, useLoad } from './common.js';

const FILTERS = ['type', 'rule', 'device', 'user', 'since', 'until'];
const TYPES = [
  ['', 'any type'],
  ['process.blocked,process.denied,package.quarantined,path.quarantined', 'blocks and quarantines'],
  ['process.blocked', 'process.blocked'],
  ['process.denied', 'process.denied'],
  ['process.warned,package.warned,path.warned', 'warnings'],
  ['package.quarantined', 'package.quarantined'],
  ['path.quarantined', 'path.quarantined'],
  ['policy.applied,policy.rejected,policy.stale', 'policy changes'],
  ['agent.heartbeat', 'agent.heartbeat'],
  ['agent.started,agent.stopped,agent.tamper', 'agent lifecycle'],
];

export function EventsPage({ params }) {
  const query = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) ?? '']));
  const [form, setForm] = useState({
    ...query,
    since: isoToLocal(query.since),
    until: isoToLocal(query.until),
  });
  const [cursors, setCursors] = useState([]);
  const cursor = cursors[cursors.length - 1];
  const { data, error } = useLoad(
    () => get('events', { ...query, limit: 50, cursor }),
    [params.toString(), cursor],
  );
  const field = (k) => ({ value: form[k], onInput: (e) => setForm({ ...form, [k]: e.currentTarget.value }) });
  const types = TYPES.some(([v]) => v === query.type) ? TYPES : [...TYPES, [query.type, query.type]];
  const submit = (e) => {
    e.preventDefault();
    setCursors([]);
    go('events', { ...form, since: localToIso(form.since), until: localToIso(form.until) });
  };
  return html`<h1>Events</h1>
    <form class="filters" role="search" aria-label="Filter events" onSubmit=${submit}>
      <div><label for="e-type">Type</label>
        <select id="e-type" ...${field('type')} onChange=${field('type').onInput}>
          ${types.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
        </select></div>
      <div><label for="e-rule">Rule id</label><input id="e-rule" ...${field('rule')} /></div>
      <div><label for="e-device">Device id</label><input id="e-device" ...${field('device')} /></div>
      <div><label for="e-user">User</label><input id="e-user" ...${field('user')} /></div>
      <div><label for="e-since">From</label><input id="e-since" type="datetime-local" ...${field('since')} /></div>
      <div><label for="e-until">Until</label><input id="e-until" type="datetime-local" ...${field('until')} /></div>
      <div class="actions"><button type="submit">Apply</button></div>
    </form>
    ${
      !data
        ? html`<${Loading} error=${error} />`
        : html`${error ? html`<${Loading} error=${error} />` : null}
          <div class="table-wrap"><${EventRows} events=${data.events} caption="Events, newest first" /></div>
          ${
            data.next && data.events.length === 0
              ? html`<p role="status">No match among the events searched so far; older events continue on the next page.</p>`
              : null
          }
          <${Pager} label="Event pages" next=${data.next} cursors=${cursors} onPage=${setCursors} />`
    }`;
}
