/** The hash router: `#/events/12?rule=x` ↔ { parts, params }; every filter lives in the URL. */

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path = '', query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts: parts.length ? parts : ['overview'], params: new URLSearchParams(query) };
}

/** Navigates to `page` with `params` (empty values left out). */
export function go(page, params = {}) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== '' && v !== null) qs.set(k, String(v));
  const s = qs.toString();
  location.hash = `#/${page}${s ? `?${s}` : ''}`;
}
