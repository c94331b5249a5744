/** Rules: for each rule of the published policy, its blocks / denials / warnings / quarantines over time and who is most affected. */
import { get } from '../api.js';
import { RuleChart } from '../chart.js';
import { fmtNum, fmtTime } from '../format.js';
import { html } from '../html.js';
import { go } from '../router.js';
import { DeviceLink, Loading, useLoad } from './common.js';

export function RulesPage({ params }) {
  const bucket = params.get('bucket') === 'day' ? 'day' : 'hour';
  const { data, error } = useLoad(() => get('rules', { bucket }), [bucket]);
  return html`<h1>Rules</h1>
    <form class="filters" aria-label="Chart window" onSubmit=${(e) => e.preventDefault()}>
      <div><label for="r-bucket">Window</label>
        <select id="r-bucket" value=${bucket} onChange=${(e) => go('rules', { bucket: e.currentTarget.value })}>
          <option value="hour">last 24 hours, per hour</option>
          <option value="day">last 30 days, per day</option>
        </select></div>
    </form>
    ${
      !data
        ? html`<${Loading} error=${error} />`
        : data.policy_version === null
          ? html`<p>No policy is published on this collector.</p>`
          : html`<p class="muted">Policy version ${data.policy_version}: ${data.rules_total} rules; ${fmtTime(data.since)} to ${fmtTime(data.until)}.</p>
            ${data.rules.map(
              (r) => html`<section class="rule" key=${r.id} aria-labelledby=${`rule-${r.id}`}>
                <h2 id=${`rule-${r.id}`}>${r.name} <span class="muted small">(${r.id}, ${r.action})</span></h2>
                <p><a href=${`#/events?rule=${encodeURIComponent(r.id)}`}>Events of this rule</a></p>
                <${RuleChart} rule=${r} since=${data.since} until=${data.until} step=${data.bucket_seconds} />
                <div class="two">
                  <table>
                    <caption>Devices most affected</caption>
                    <thead><tr><th scope="col">Device</th><th scope="col">Events</th></tr></thead>
                    <tbody>${
                      r.top.devices.length
                        ? r.top.devices.map(
                            (d) =>
                              html`<tr key=${d.device_id}><td><${DeviceLink} id=${d.device_id} hostname=${d.hostname} /></td><td>${fmtNum(d.count)}</td></tr>`,
                          )
                        : html`<tr><td colspan="2" class="muted">none</td></tr>`
                    }</tbody>
                  </table>
                  <table>
                    <caption>Users most affected</caption>
                    <thead><tr><th scope="col">User</th><th scope="col">Events</th></tr></thead>
                    <tbody>${
                      r.top.users.length
                        ? r.top.users.map(
                            (u) => html`<tr key=${u.user}><td>${u.user}</td><td>${fmtNum(u.count)}</td></tr>`,
                          )
                        : html`<tr><td colspan="2" class="muted">none</td></tr>`
                    }</tbody>
                  </table>
                </div>
              </section>`,
            )}`
    }`;
}
