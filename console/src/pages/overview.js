/** Overview: the numbers an admin watches — devices total / silent / stale policy, blocks 24 h, ingest, forwarder lag. */
import { get } from '../api.js';
import { fmtNum } from '../format.js';
import { html } from '../html.js';
import { Loading, useLoad } from './common.js';

/** The front page refreshes itself this often (ms). */
const REFRESH_MS = 10_000;

function Stat({ label, value, href, tone }) {
  const body = html`<span class="stat-value">${value}</span><span class="stat-label">${label}</span>`;
  return html`<li class=${`stat ${tone ?? ''}`}>
    ${href ? html`<a class="stat-body" href=${href}>${body}</a>` : html`<div class="stat-body">${body}</div>`}
  </li>`;
}

export function OverviewPage() {
  const { data, error } = useLoad(() => get('overview'), [], REFRESH_MS);
  return html`<h1>Overview</h1>
    ${
      !data
        ? html`<${Loading} error=${error} />`
        : html`<section aria-labelledby="fleet-h">
            <h2 id="fleet-h">Fleet</h2>
            <ul class="stats">
              <${Stat} label="Devices" value=${fmtNum(data.devices_total)} href="#/devices" />
              <${Stat} label="Silent" value=${fmtNum(data.devices_silent)} href="#/devices?silent=true"
                tone=${data.devices_silent > 0 ? 'warn' : ''} />
              <${Stat} label="Stale or rejected policy" value=${fmtNum(data.devices_stale_policy)} href="#/rollout"
                tone=${data.devices_stale_policy > 0 ? 'warn' : ''} />
              <${Stat} label="Blocks in 24 h" value=${fmtNum(data.blocks_24h)}
                href="#/events?type=process.blocked,process.denied,package.quarantined,path.quarantined" />
              <${Stat} label="Ingest (events/s, 5 min)" value=${data.ingest_per_s.toFixed(2)} />
              <${Stat} label="Published policy" value=${data.published_version === null ? 'none' : `v${data.published_version}`} href="#/rollout" />
            </ul>
          </section>
          <section aria-labelledby="fwd-h">
            <h2 id="fwd-h">Forwarders</h2>
            ${
              data.forwarders.length === 0
                ? html`<p class="muted">No forwarder is configured.</p>`
                : html`<table>
                    <caption class="visually-hidden">Events stored but not yet delivered, per forwarder</caption>
                    <thead><tr><th scope="col">Sink</th><th scope="col">Lag (events)</th></tr></thead>
                    <tbody>${data.forwarders.map((f) => html`<tr key=${f.sink}><td>${f.sink}</td><td>${fmtNum(f.lag)}</td></tr>`)}</tbody>
                  </table>`
            }
          </section>`
    }`;
}
