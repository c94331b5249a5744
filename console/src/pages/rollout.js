/** Policy rollout: the published version, how many devices run it, who is behind or rejected it and why; admins publish here. */
import { useState } from 'preact/hooks';
import { ApiError, get, post } from '../api.js';
import { fmtNum, fmtTime } from '../format.js';
import { html } from '../html.js';
import { Loading, PolicyState, useLoad } from './common.js';

/** The page refreshes itself this often while an admin watches a rollout (ms). */
const REFRESH_MS = 3000;

function Publish({ onPublished }) {
  const [status, setStatus] = useState('');
  const [error, setError] = useState('');
  const submit = async (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    setError('');
    setStatus('');
    const file = form.elements.envelope.files[0];
    if (!file) return setError('Choose a signed policy file.');
    let envelope;
    try {
      envelope = JSON.parse(await file.text());
    } catch {
      return setError('The file is not JSON (a signed envelope from `guardctl policy sign`).');
    }
    try {
      const r = await post('policy', {
        envelope,
        by: form.elements.by.value,
        message: form.elements.message.value,
      });
      setStatus(`Published version ${r.version}${r.verified ? ' (signature verified)' : ''}.`);
      form.reset();
      onPublished();
    } catch (err) {
      setError(err instanceof ApiError ? `${err.message} (${err.code})` : String(err));
    }
  };
  return html`<section aria-labelledby="pub-h">
    <h2 id="pub-h">Publish a policy</h2>
    <form class="publish" onSubmit=${submit}>
      <div><label for="p-file">Signed policy envelope (JSON)</label>
        <input id="p-file" name="envelope" type="file" accept=".json,application/json" required /></div>
      <div><label for="p-by">Published by</label><input id="p-by" name="by" required maxlength="200" autocomplete="name" /></div>
      <div><label for="p-msg">Why</label><input id="p-msg" name="message" maxlength="4000" /></div>
      <div class="actions"><button type="submit">Publish</button></div>
    </form>
    <div aria-live="polite">
      ${status ? html`<p class="ok-text" role="status">${status}</p>` : null}
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    </div>
  </section>`;
}

/** Where a version stands against the published one. */
function rolloutText(version, published) {
  if (version === null) return html`<span class="badge badge-unknown">no policy yet</span>`;
  if (published === null || version === published) return html`<span class="badge badge-ok">current</span>`;
  return version < published
    ? html`<span class="badge badge-stale">behind</span>`
    : html`<span class="badge badge-rejected">newer than published</span>`;
}

export function RolloutPage({ session }) {
  const [tick, setTick] = useState(0);
  const { data, error } = useLoad(() => get('rollout'), [tick], REFRESH_MS);
  const total = data ? data.versions.reduce((n, v) => n + v.devices, 0) : 0;
  const onIt = data
    ? data.versions
        .filter((v) => v.version === data.published_version && v.state === 'ok')
        .reduce((n, v) => n + v.devices, 0)
    : 0;
  return html`<h1>Policy rollout</h1>
    ${
      !data
        ? html`<${Loading} error=${error} />`
        : html`<section aria-labelledby="prog-h">
            <h2 id="prog-h">Version ${data.published_version ?? '—'}</h2>
            <p id="rollout-summary"><strong>${fmtNum(onIt)}</strong> of ${fmtNum(total)} devices run the published version.</p>
            <progress max=${Math.max(total, 1)} value=${onIt} aria-labelledby="rollout-summary"></progress>
            <table>
              <caption>Devices by policy version in force and state</caption>
              <thead><tr><th scope="col">Version</th><th scope="col">Rollout</th><th scope="col">State</th><th scope="col">Devices</th></tr></thead>
              <tbody>${data.versions.map(
                (v) => html`<tr key=${`${v.version}-${v.state}`}>
                  <td>${v.version ?? 'none yet'}${v.version === data.published_version ? ' (published)' : ''}</td>
                  <td>${rolloutText(v.version, data.published_version)}</td>
                  <td><${PolicyState} state=${v.state} /></td>
                  <td><a href=${`#/devices?policy_state=${v.state}`}>${fmtNum(v.devices)}</a></td>
                </tr>`,
              )}</tbody>
            </table>
          </section>
          <section aria-labelledby="rej-h">
            <h2 id="rej-h">Rejections</h2>
            ${
              data.rejections.length === 0
                ? html`<p class="muted">No device rejected its policy.</p>`
                : html`<table>
                    <caption class="visually-hidden">Devices that rejected the policy, by error</caption>
                    <thead><tr><th scope="col">Error</th><th scope="col">Devices</th></tr></thead>
                    <tbody>${data.rejections.map((r) => html`<tr><td>${r.error}</td><td>${fmtNum(r.devices)}</td></tr>`)}</tbody>
                  </table>`
            }
          </section>
          ${session.role === 'admin' ? html`<${Publish} onPublished=${() => setTick(tick + 1)} />` : null}
          <section aria-labelledby="hist-h">
            <h2 id="hist-h">Publications</h2>
            ${
              data.publications.length === 0
                ? html`<p class="muted">None recorded on this collector.</p>`
                : html`<table>
                    <caption class="visually-hidden">Recent publications, newest first</caption>
                    <thead><tr><th scope="col">Version</th><th scope="col">When</th><th scope="col">By</th><th scope="col">Why</th><th scope="col">Verified</th></tr></thead>
                    <tbody>${data.publications.map(
                      (p) =>
                        html`<tr><td>${p.version}</td><td>${fmtTime(p.published_at)}</td><td>${p.published_by}</td><td>${p.message || '—'}</td><td>${p.verified ? 'yes' : 'no'}</td></tr>`,
                    )}</tbody>
                  </table>`
            }
          </section>`
    }`;
}
