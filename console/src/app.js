/**
 * The console's shell: the session (log in, log out, role), the hash router (#/devices?…) and the
 * page layout with its landmarks (banner, navigation, main). Pages live in pages/*.js and get the
 * route's parameters; every filter is in the URL so a view can be linked and reloaded.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, post, setCsrf, setUnauthenticatedHandler } from './api.js';
import { html } from './html.js';
import { DevicePage } from './pages/device.js';
import { DevicesPage } from './pages/devices.js';
import { EventPage } from './pages/event.js';
import { EventsPage } from './pages/events.js';
import { OverviewPage } from './pages/overview.js';
import { RolloutPage } from './pages/rollout.js';
import { RulesPage } from './pages/rules.js';
import { parseHash } from './router.js';

const NAV = [
  ['overview', 'Overview'],
  ['devices', 'Devices'],
  ['events', 'Events'],
  ['rules', 'Rules'],
  ['rollout', 'Rollout'],
];

function Login({ onDone, notice }) {
  const [credential, setCredential] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      const s = await post('login', { credential });
      setCsrf(s.csrf);
      setCredential('');
      onDone(s);
    } catch (err) {
      setError(err instanceof ApiError ? `${err.message} (${err.code})` : String(err));
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main" class="login">
    <h1>toolguard console</h1>
    ${notice ? html`<p class="notice" role="status">${notice}</p>` : null}
    <form onSubmit=${submit} aria-describedby="login-help">
      <label for="credential">Console token</label>
      <input id="credential" name="credential" type="password" autocomplete="current-password" required
        value=${credential} onInput=${(e) => setCredential(e.currentTarget.value)} />
      <p id="login-help" class="muted">The collector's admin token (role admin) or its console viewer token (read only).</p>
      <button type="submit" disabled=${busy}>Log in</button>
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    </form>
  </main>`;
}

function Shell({ session, onLogout }) {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const [page, id] = route.parts;
  const props = { params: route.params, session, key: location.hash };
  let body;
  if (page === 'devices' && id) body = html`<${DevicePage} id=${id} ...${props} />`;
  else if (page === 'devices') body = html`<${DevicesPage} ...${props} />`;
  else if (page === 'events' && id) body = html`<${EventPage} rid=${id} ...${props} />`;
  else if (page === 'events') body = html`<${EventsPage} ...${props} />`;
  else if (page === 'rules') body = html`<${RulesPage} ...${props} />`;
  else if (page === 'rollout') body = html`<${RolloutPage} ...${props} />`;
  else body = html`<${OverviewPage} ...${props} />`;
  const logout = async () => {
    try {
      await post('logout');
    } finally {
      onLogout('You are logged out.');
    }
  };
  return html`
    <a class="skip" href="#main" onClick=${(e) => {
      e.preventDefault();
      document.getElementById('main')?.focus();
    }}>Skip to content</a>
    <header class="top">
      <span class="brand">toolguard console</span>
      <nav aria-label="Console">
        <ul>
          ${NAV.map(
            ([p, label]) =>
              html`<li><a href=${`#/${p}`} aria-current=${page === p ? 'page' : undefined}>${label}</a></li>`,
          )}
        </ul>
      </nav>
      <span class="who">Role: <strong>${session.role}</strong></span>
      <button type="button" class="secondary" onClick=${logout}>Log out</button>
    </header>
    <main id="main" tabindex="-1">${body}</main>`;
}

function App() {
  const [session, setSession] = useState(undefined);
  const [notice, setNotice] = useState('');
  useEffect(() => {
    setUnauthenticatedHandler(() => {
      setNotice('Your session ended: log in again.');
      setSession(null);
    });
    get('session')
      .then((s) => {
        setCsrf(s.csrf);
        setSession(s);
      })
      .catch(() => setSession(null));
  }, []);
  if (session === undefined) return html`<main id="main"><p role="status">Loading…</p></main>`;
  if (session === null)
    return html`<${Login} notice=${notice} onDone=${(s) => {
      setNotice('');
      setSession(s);
    }} />`;
  return html`<${Shell} session=${session} onLogout=${(msg) => {
    setCsrf('');
    setNotice(msg);
    setSession(null);
  }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
