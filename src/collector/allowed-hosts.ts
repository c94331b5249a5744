/**
 * Owns the collector's Host check (config `allowed_hosts`): which names a request may address the
 * collector by. A web page can make a browser inside the network talk to the collector through
 * DNS rebinding (its own name, re-resolved to the collector's address): the browser then treats
 * the collector's answers as the page's own and lets the page read them — `/metrics`, `/healthz`,
 * the console's login — but its requests still say the page's name in `Host`. Refusing names the
 * operator did not list stops that; IP addresses are always accepted (a rebinding page cannot make
 * a browser send one, and load balancers and scrapers often address a node by its IP).
 *
 * Hand-written, a dozen lines: fastify's host route constraints would have to be put on every
 * route (and a new one could forget it) and cannot accept any IP; the parsing is the Host grammar
 * (RFC 9110 §7.2: uri-host [":" port]) and node:net's isIP.
 */
import { isIP } from 'node:net';
import { GuardError } from '../common/errors.js';

/** A DNS name (RFC 1123 labels), lower case, as an `allowed_hosts` entry must be written. */
const HOST_NAME =
  /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * The names of `allowed_hosts` (comma-separated; case and spaces ignored), or null when it is
 * empty (any host). An entry that is not a host name or an IP address is a config error naming
 * the key.
 */
export function parseAllowedHosts(list: string): ReadonlySet<string> | null {
  const names = list
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter((n) => n !== '');
  if (names.length === 0) return null;
  for (const n of names) {
    const bare = n.startsWith('[') && n.endsWith(']') ? n.slice(1, -1) : n;
    if (!HOST_NAME.test(n) && isIP(bare) === 0)
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `config key "allowed_hosts": got ${JSON.stringify(n.slice(0, 80))}, expected host names or IP addresses without port or scheme, comma-separated`,
        { key: 'allowed_hosts' },
      );
  }
  return new Set(names);
}

/** The host of a `Host` header value (`name`, `name:port`, `[v6]`, `[v6]:port`), lower case; null when malformed. */
export function hostOf(header: string): string | null {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0 || !/^(:\d{1,5})?$/.test(h.slice(end + 1))) return null;
    return h.slice(1, end);
  }
  const m = /^([^:]+)(:\d{1,5})?$/.exec(h);
  return m ? (m[1] as string).replace(/\.$/, '') : null;
}

/** Whether a request whose `Host` is `header` may be answered (`allowed` null: any host). */
export function hostAllowed(header: string | undefined, allowed: ReadonlySet<string> | null): boolean {
  if (allowed === null) return true;
  if (header === undefined) return false;
  const host = hostOf(header);
  if (host === null) return false;
  return isIP(host) !== 0 || allowed.has(host) || allowed.has(`[${host}]`);
}
