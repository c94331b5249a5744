/** What the pages share: loading an API answer, error display, state badges, links, the pager. */
import { useEffect, useState } from 'preact/hooks';
import { fmtAgo, fmtTime } from '../format.js';
import { html } from '../html.js';

/** Calls `load()` when `deps` change (and every `refreshMs` when given); { data, error }. */
export function useLoad(load, deps, refreshMs) {
  const [state, setState] = useState({ data: undefined, error: undefined });
  useEffect(() => {
    let live = true;
    const run = () =>
      load().then(
        (data) => live && setState({ data, error: undefined }),
        (error) => live && setState((s) => ({ data: s.data, error })),
      );
    run();
    const timer = refreshMs ? setInterval(run, refreshMs) : undefined;
    return () => {
      live = false;
      if (timer) clearInterval(timer);
    };
  }, deps);
  return state;
}

export function Loading({ error }) {
  if (error)
    return html`<p class="error" role="alert">Could not load: ${error.message}${error.code ? ` (${error.code})` : ''}</p>`;
  return html`<p role="status" class="muted">Loading…</p>`;
}

const STATE_TEXT = { ok: 'ok', stale: 'stale', rejected: 'rejected', unknown: 'unknown' };
export function PolicyState({ state }) {
  return html`<span class=${`badge badge-${state}`}>${STATE_TEXT[state] ?? state}</span>`;
}

/** The policy a device has in force, its state, and whether it is behind the published version. */
export function DevicePolicy({ device, published }) {
  const v = device.policy_version;
  const behind = v !== null && published !== null && published !== undefined && v < published;
  return html`${v === null ? 'none' : `v${v}`} <${PolicyState} state=${device.policy_state} />${
    behind ? html` <span class="badge badge-stale">behind v${published}</span>` : null
  }${device.policy_error ? html`<div class="small error-text">${device.policy_error}</div>` : null}`;
}

export function DeviceLink({ id, hostname }) {
  return html`<a href=${`#/devices/${encodeURIComponent(id)}`}>${hostname || id}</a>`;
}

export function When({ iso }) {
  return html`<time datetime=${iso} title=${fmtTime(iso)}>${fmtAgo(iso)}</time>`;
}

/** Keyset paging: `cursors` is the stack of cursors that led here; Previous pops, Next pushes. */
export function Pager({ next, cursors, onPage, label }) {
  return html`<nav class="pager" aria-label=${label}>
    <button type="button" class="secondary" disabled=${cursors.length === 0}
      onClick=${() => onPage(cursors.slice(0, -1))}>Previous page</button>
    <span class="muted">Page ${cursors.length + 1}</span>
    <button type="button" class="secondary" disabled=${!next}
      onClick=${() => onPage([...cursors, next])}>Next page</button>
  </nav>`;
}

/** Events table (timeline rows): time, type, rule, device, user. */
export function EventRows({ events, caption, showDevice = true }) {
  if (events.length === 0) return html`<p class="muted">No events.</p>`;
  return html`<table>
    <caption>${caption}</caption>
    <thead><tr>
      <th scope="col">Time</th><th scope="col">Type</th><th scope="col">Rule</th>
      ${showDevice ? html`<th scope="col">Device</th>` : null}<th scope="col">User</th><th scope="col">Record</th>
    </tr></thead>
    <tbody>
      ${events.map(
        (e) => html`<tr key=${e.rid}>
          <td><time datetime=${e.time}>${fmtTime(e.time)}</time></td>
          <td><span class=${`type type-${e.type.split('.')[1] ?? ''}`}>${e.type}</span></td>
          <td>${e.rule_id ?? '—'}</td>
          ${showDevice ? html`<td><${DeviceLink} id=${e.device_id} hostname=${e.hostname} /></td>` : null}
          <td>${e.user ?? '—'}</td>
          <td><a href=${`#/events/${e.rid}`}>Open <span class="visually-hidden">event </span>#${e.rid}</a></td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

/** Coverage of a device's newest heartbeat, as short text. */
export function coverageText(c) {
  if (!c) return '—';
  const parts = [];
  const ev = c.exec_events;
  if (ev) {
    parts.push(`exec events ${ev.state ?? '?'}${ev.source ? ` (${ev.source})` : ''}`);
    if (ev.kernel_drops) parts.push(`${ev.kernel_drops} kernel drops`);
  } else parts.push('polling');
  const deny = c.exec_deny;
  if (deny) {
    parts.push(`pre-exec deny ${deny.state ?? '?'}`);
    if (deny.deadline_misses) parts.push(`${deny.deadline_misses} deadline misses`);
  }
  return parts.join(', ');
}

/** A device's silence: longer than silent_after_s ago. */
export function isSilent(device, silentAfterS) {
  return Date.now() - Date.parse(device.last_seen_at) > silentAfterS * 1000;
}
