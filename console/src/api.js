/**
 * The console's only way to the collector: JSON over fetch to /console/api/, same origin, with the
 * session cookie (HttpOnly: this code never sees it) and, on state changes, the session's CSRF
 * token. A 401 on any page's call sends the page back to the login form.
 */

let csrf = '';
let onUnauthenticated = () => {};

/** Where to go when the session is gone (set once by the app). */
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

export function setCsrf(token) {
  csrf = token;
}

/** An answer with an error code: `{status, code, message}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  const res = await fetch(`/console/api/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new ApiError(
      res.status,
      data?.error?.code ?? 'UNKNOWN',
      data?.error?.message ?? res.statusText,
    );
    // the first look at the session (and a failed login) is not a session that ended
    if (res.status === 401 && path !== 'login' && path !== 'session') onUnauthenticated(err);
    throw err;
  }
  return data;
}

/** GET with a query object (empty and undefined values left out). */
export function get(path, query = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query))
    if (v !== undefined && v !== '' && v !== null) qs.set(k, String(v));
  const s = qs.toString();
  return call('GET', s ? `${path}?${s}` : path);
}

export function post(path, body) {
  return call('POST', path, body ?? {});
}
