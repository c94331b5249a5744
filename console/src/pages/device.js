/** One device: what the fleet knows of it and its recent events. */
import { get } from '../api.js';
import { fmtNum, fmtTime } from '../format.js';
import { html } from '../html.js';
import { coverageText, DevicePolicy, EventRows, isSilent, Loading, useLoad, When } from './common.js';

export function DevicePage({ id }) {
  const { data, error } = useLoad(() => get(`devices/${encodeURIComponent(id)}`), [id]);
  if (!data) return html`<h1>Device</h1><${Loading} error=${error} />`;
  const d = data.device;
  return html`<h1>Device ${d.hostname}</h1>
    <p><a href=${`#/events?device=${encodeURIComponent(d.id)}`}>All events of this device</a></p>
    <section aria-labelledby="dev-h">
      <h2 id="dev-h">State</h2>
      <dl class="facts">
        <dt>Device id</dt><dd><code>${d.id}</code></dd>
        <dt>OS</dt><dd>${d.os}</dd>
        <dt>Agent version</dt><dd>${d.agent_version}</dd>
        <dt>Tags</dt><dd>${d.tags.length ? d.tags.join(', ') : '—'}</dd>
        <dt>Enrolled</dt><dd>${fmtTime(d.enrolled_at)}</dd>
        <dt>Last seen</dt><dd><${When} iso=${d.last_seen_at} /> ${
          d.stopped_at ? '(stopped cleanly)' : isSilent(d, data.silent_after_s) ? '(silent too long)' : ''
        }</dd>
        <dt>Policy</dt><dd><${DevicePolicy} device=${d} published=${data.published_version} /></dd>
        <dt>Coverage</dt><dd>${coverageText(d.coverage)}</dd>
        <dt>Outbox backlog</dt><dd>${fmtNum(d.outbox_depth)}</dd>
        <dt>Dropped events</dt><dd>${fmtNum(d.dropped_total)}</dd>
      </dl>
    </section>
    <section aria-labelledby="dev-ev-h">
      <h2 id="dev-ev-h">Recent events</h2>
      <${EventRows} events=${data.events} caption="Newest events of this device" showDevice=${false} />
    </section>`;
}
