/** One event: the record exactly as stored, its OCSF form, and where it came from. */
import { get } from '../api.js';
import { fmtTime } from '../format.js';
import { html } from '../html.js';
import { DeviceLink, Loading, useLoad } from './common.js';

export function EventPage({ rid }) {
  const { data, error } = useLoad(() => get(`events/${encodeURIComponent(rid)}`), [rid]);
  if (!data) return html`<h1>Event ${rid}</h1><${Loading} error=${error} />`;
  const e = data.event;
  return html`<h1>Event #${e.rid}: ${e.record.type}</h1>
    <dl class="facts">
      <dt>Device</dt><dd><${DeviceLink} id=${e.device_id} hostname=${e.hostname} /></dd>
      <dt>Event time (agent)</dt><dd>${fmtTime(e.record.time)}</dd>
      <dt>Received</dt><dd>${fmtTime(e.received_at)}</dd>
      <dt>Rule</dt><dd>${e.record.rule?.id ?? '—'}${
        e.record.rule?.id
          ? html` (<a href=${`#/events?rule=${encodeURIComponent(e.record.rule.id)}`}>events of this rule</a>)`
          : null
      }</dd>
      <dt>Enrollment</dt><dd>${e.enrollment}</dd>
    </dl>
    <div class="two">
      <section aria-labelledby="rec-h">
        <h2 id="rec-h">Record as stored</h2>
        <pre tabindex="0" aria-labelledby="rec-h"><code>${JSON.stringify(e.record, null, 2)}</code></pre>
      </section>
      <section aria-labelledby="ocsf-h">
        <h2 id="ocsf-h">OCSF</h2>
        <pre tabindex="0" aria-labelledby="ocsf-h"><code>${JSON.stringify(data.ocsf, null, 2)}</code></pre>
      </section>
    </div>`;
}
