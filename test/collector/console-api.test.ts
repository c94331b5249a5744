/**
 * The console's HTTP layer without a browser, against a real collector on loopback (SQLite):
 * login with the admin / viewer token and refusal of anything else (a device token included),
 * the session cookie's attributes, logout, an expired session, CSRF and same-origin refusals of
 * state changes, the viewer's 403 on publishing, the admin's publish through the shared
 * publisher, the headers (CSP & co) on every console answer, and 400 + code for hostile query
 * strings. The data views are checked against events posted with real device tokens.
 */
import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sessionKey } from '../../src/collector/console/console-auth.js';
import { CONSOLE_CSP } from '../../src/collector/console/console-plugin.js';
import { signEnvelope } from '../../src/policy/dsse.js';
import { parsePrivateKey, parsePublicKey } from '../../src/policy/keys.js';
import { POLICY_PAYLOAD_TYPE } from '../../src/policy/policy-types.js';
import {
  blockedEvent,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  postEvents,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { makeKey, policyBody, writeSignedPolicy } from '../helpers/daemon.js';
import { startTestPostgres } from '../helpers/postgres.js';

const dir = collectorTempDir('tg-con-');
const key = makeKey();
const viewerToken = randomBytes(24).toString('base64url');
const RULES = [
  {
    id: 'no-claude',
    name: 'Claude Code',
    action: 'block' as const,
    message: 'no',
    process: { names: ['claude'] },
  },
  {
    id: 'warn-cursor',
    name: 'Cursor',
    action: 'warn' as const,
    message: 'hm',
    process: { names: ['cursor'] },
  },
];

let col: TestCollector;
let deviceToken: string;
let blockedRid: number;

interface Session {
  readonly cookie: string;
  readonly csrf: string;
  readonly setCookie: string;
}

async function login(credential: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${col.url}/console/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ credential }),
  });
}

async function session(credential: string): Promise<Session> {
  const res = await login(credential);
  expect(res.status).toBe(200);
  const setCookie = res.headers.get('set-cookie') ?? '';
  const cookie = setCookie.split(';')[0] as string;
  const body = (await res.json()) as { csrf: string };
  return { cookie, csrf: body.csrf, setCookie };
}

function api(path: string, s: Session | null, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (s) headers.set('cookie', s.cookie);
  return fetch(`${col.url}/console/api/${path}`, { ...init, headers });
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

// The same bodies on both stores: the console reads only through the store port.
for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`console on ${kind}`, () => {
    beforeAll(async () => {
      mkdirSync(join(dir, kind), { recursive: true });
      const policyFile = join(dir, kind, 'policy.dsse.json');
      writeSignedPolicy(policyFile, policyBody(RULES, { version: 3 }), key);
      const store =
        kind === 'postgres' ? { url: await (await startTestPostgres()).createDatabase() } : undefined;
      col = await startTestCollector({
        store,
        policyFile,
        policyTrustedKeys: [parsePublicKey(key.publicKeyPem)],
        consoleViewerToken: viewerToken,
      });
      deviceToken = await enrollDevice(col.url, col.enrollSecret, 'dev-con-1');
      const res = await postEvents(col.url, deviceToken, [
        heartbeatEvent('dev-con-1', 1, { policy_version: 3, tags: ['lab'] }),
        blockedEvent('dev-con-1', 2, 'no-claude'),
      ]);
      expect(res.status, await res.clone().text()).toBe(200);
      const page = (await (
        await fetch(`${col.url}/v1/events?type=process.blocked`, {
          headers: { authorization: `Bearer ${col.adminToken}` },
        })
      ).json()) as { events: unknown[] };
      expect(page.events).toHaveLength(1);
    });
    afterAll(async () => {
      await col?.close();
    });

    describe('console login', () => {
      it('logs in with the admin token: an HttpOnly, SameSite=Strict cookie scoped to /console (no Secure over plain HTTP)', async () => {
        const s = await session(col.adminToken);
        expect(s.setCookie).toMatch(/^tg_console=[A-Za-z0-9_-]{43}; /);
        expect(s.setCookie).toContain('HttpOnly');
        expect(s.setCookie).toContain('SameSite=Strict');
        expect(s.setCookie).toContain('Path=/console');
        expect(s.setCookie).not.toContain('Secure');
        const secret = s.cookie.slice('tg_console='.length);
        expect(s.csrf).toBe(createHmac('sha256', secret).update('csrf').digest('base64url'));
        const me = await api('session', s);
        expect(me.status).toBe(200);
        expect(await me.json()).toMatchObject({ role: 'admin', csrf: s.csrf });
        // only the key (HMAC under the admin token) is stored
        expect(
          await col.collector.store.sessionByHash(
            sessionKey(secret, col.adminToken),
            new Date().toISOString(),
          ),
        ).toMatchObject({
          role: 'admin',
        });
        expect(await col.collector.store.sessionByHash(secret, new Date().toISOString())).toBeUndefined();
      });

      it('logs in with the viewer token as role viewer', async () => {
        const s = await session(viewerToken);
        expect(await (await api('session', s)).json()).toMatchObject({ role: 'viewer' });
      });

      it('refuses a device token, the enroll secret and junk with a code', async () => {
        for (const cred of [deviceToken, col.enrollSecret, 'x'.repeat(40)]) {
          const res = await login(cred);
          expect(res.status).toBe(401);
          expect(await errorCode(res)).toBe('GUARD_CONSOLE_LOGIN_FAILED');
          expect(res.headers.get('set-cookie')).toBeNull();
        }
        const bad = await fetch(`${col.url}/console/api/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ credential: col.adminToken, role: 'admin' }),
        });
        expect(bad.status).toBe(400);
        expect(await errorCode(bad)).toBe('GUARD_COLLECTOR_BAD_REQUEST');
      });

      it('does not accept a bearer token (admin or device) in place of a session', async () => {
        for (const token of [col.adminToken, deviceToken]) {
          const res = await api('devices', null, { headers: { authorization: `Bearer ${token}` } });
          expect(res.status).toBe(401);
          expect(await errorCode(res)).toBe('GUARD_CONSOLE_UNAUTHENTICATED');
        }
      });

      it('refuses a login posted from another site', async () => {
        const res = await login(col.adminToken, { origin: 'https://evil.example' });
        expect(res.status).toBe(403);
        expect(await errorCode(res)).toBe('GUARD_CONSOLE_CROSS_SITE');
        const res2 = await login(col.adminToken, { 'sec-fetch-site': 'cross-site' });
        expect(res2.status).toBe(403);
        expect(await errorCode(res2)).toBe('GUARD_CONSOLE_CROSS_SITE');
      });

      it('refuses an expired session (as the session table holds it) and a forged cookie', async () => {
        const secret = randomBytes(32).toString('base64url');
        const past = Date.now() - 3600_000;
        await col.collector.store.createSession(sessionKey(secret, col.adminToken), {
          role: 'admin',
          created_at: new Date(past - 60_000).toISOString(),
          expires_at: new Date(past).toISOString(),
        });
        for (const cookie of [
          `tg_console=${secret}`,
          `tg_console=${randomBytes(32).toString('base64url')}`,
          'tg_console=../../x',
        ]) {
          const res = await fetch(`${col.url}/console/api/overview`, { headers: { cookie } });
          expect(res.status).toBe(401);
          expect(await errorCode(res)).toBe('GUARD_CONSOLE_UNAUTHENTICATED');
        }
      });

      it('logs out: the session is deleted and the cookie cleared', async () => {
        const s = await session(col.adminToken);
        const out = await api('logout', s, { method: 'POST', headers: { 'x-csrf-token': s.csrf } });
        expect(out.status).toBe(200);
        expect(out.headers.get('set-cookie')).toMatch(/^tg_console=; Max-Age=0; /);
        const after = await api('session', s);
        expect(after.status).toBe(401);
        expect(await errorCode(after)).toBe('GUARD_CONSOLE_UNAUTHENTICATED');
      });
    });

    describe('console state changes: CSRF, origin, roles', () => {
      it('refuses a POST without or with a wrong x-csrf-token', async () => {
        const s = await session(col.adminToken);
        const none = await api('logout', s, { method: 'POST' });
        expect(none.status).toBe(403);
        expect(await errorCode(none)).toBe('GUARD_CONSOLE_CSRF');
        const other = await session(col.adminToken);
        const wrong = await api('logout', s, { method: 'POST', headers: { 'x-csrf-token': other.csrf } });
        expect(wrong.status).toBe(403);
        expect(await errorCode(wrong)).toBe('GUARD_CONSOLE_CSRF');
        expect((await api('session', s)).status).toBe(200);
      });

      it('refuses a cross-site POST even with the right token', async () => {
        const s = await session(col.adminToken);
        const crossSite: Record<string, string>[] = [
          { origin: 'http://evil.example', 'x-csrf-token': s.csrf },
          { 'sec-fetch-site': 'cross-site', 'x-csrf-token': s.csrf },
          { 'sec-fetch-site': 'same-site', 'x-csrf-token': s.csrf },
        ];
        for (const headers of crossSite) {
          const res = await api('logout', s, { method: 'POST', headers });
          expect(res.status).toBe(403);
          expect(await errorCode(res)).toBe('GUARD_CONSOLE_CROSS_SITE');
        }
        const own = await api('logout', s, {
          method: 'POST',
          headers: { origin: col.url, 'sec-fetch-site': 'same-origin', 'x-csrf-token': s.csrf },
        });
        expect(own.status).toBe(200);
      });

      it('gives a viewer 403 on publishing; the admin publishes through the same publisher as the admin API', async () => {
        const body = policyBody(RULES, { version: 4 });
        const envelope = signEnvelope(JSON.stringify(body), POLICY_PAYLOAD_TYPE, [
          parsePrivateKey(key.privateKeyPem),
        ]);
        const request = { envelope, by: 'console test', message: 'v4' };
        const viewer = await session(viewerToken);
        const refused = await api('policy', viewer, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-csrf-token': viewer.csrf },
          body: JSON.stringify(request),
        });
        expect(refused.status).toBe(403);
        expect(await errorCode(refused)).toBe('GUARD_CONSOLE_FORBIDDEN');

        const admin = await session(col.adminToken);
        const post = (): Promise<Response> =>
          api('policy', admin, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-csrf-token': admin.csrf },
            body: JSON.stringify(request),
          });
        const ok = await post();
        expect(ok.status).toBe(201);
        expect(await ok.json()).toMatchObject({ version: 4, verified: true, published_by: 'console test' });
        const served = await fetch(`${col.url}/v1/policy`);
        expect(JSON.parse(await served.text())).toEqual(envelope);
        const again = await post();
        expect(again.status).toBe(409);
        expect(await errorCode(again)).toBe('GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER');
        const rollout = (await (await api('rollout', admin)).json()) as {
          published_version: number;
          publications: unknown[];
        };
        expect(rollout.published_version).toBe(4);
        expect(rollout.publications[0]).toMatchObject({ version: 4, published_by: 'console test' });
      });
    });

    describe('console headers', () => {
      it('sends the strict CSP, nosniff and no-referrer on the page, assets, API answers and errors', async () => {
        const s = await session(viewerToken);
        const answers = [
          await fetch(`${col.url}/console`),
          await fetch(`${col.url}/console/assets/app.js`),
          await fetch(`${col.url}/console/assets/app.css`),
          await api('overview', s),
          await api('overview', null),
          await fetch(`${col.url}/console/nope`),
          await fetch(`${col.url}/console/assets/..%2f..%2fpackage.json`),
        ];
        expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 401, 404, 404]);
        for (const r of answers) {
          expect(r.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
          expect(r.headers.get('x-content-type-options')).toBe('nosniff');
          expect(r.headers.get('referrer-policy')).toBe('no-referrer');
        }
        for (const r of answers.slice(3)) expect(r.headers.get('cache-control')).toBe('no-store');
        expect(CONSOLE_CSP).toContain("default-src 'none'");
        expect(CONSOLE_CSP).toContain("frame-ancestors 'none'");
        const page = await answers[0]?.text();
        expect(page).not.toMatch(/<script>|<style|style=|https?:\/\//);
        expect(answers[1]?.headers.get('content-type')).toMatch(/^text\/javascript/);
      });
    });

    describe('console reads', () => {
      let s: Session;
      beforeAll(async () => {
        s = await session(viewerToken);
      });
      const json = async (path: string): Promise<Record<string, unknown>> => {
        const res = await api(path, s);
        expect(res.status, `${path}: ${res.status}`).toBe(200);
        return (await res.json()) as Record<string, unknown>;
      };

      it('lists devices, filters them, and shows one device with its recent events', async () => {
        const all = (await json('devices')) as { devices: { id: string; tags: string[] }[] };
        expect(all.devices.map((d) => d.id)).toEqual(['dev-con-1']);
        expect(all.devices[0]?.tags).toEqual(['lab']);
        expect(((await json('devices?search=DEV-CON')) as { devices: unknown[] }).devices).toHaveLength(1);
        expect(((await json('devices?tag=other')) as { devices: unknown[] }).devices).toHaveLength(0);
        const one = (await json('devices/dev-con-1')) as {
          device: { id: string };
          events: { type: string }[];
        };
        expect(one.device.id).toBe('dev-con-1');
        expect(one.events.map((e) => e.type).sort()).toEqual(['agent.heartbeat', 'process.blocked']);
        const missing = await api('devices/no-such-device', s);
        expect(missing.status).toBe(404);
        expect(await errorCode(missing)).toBe('GUARD_CONSOLE_NOT_FOUND');
      });

      it('filters events by rule, device and type; one event comes as stored and as OCSF', async () => {
        const byRule = (await json('events?rule=no-claude&device=dev-con-1')) as {
          events: { rid: number; type: string; rule_id: string }[];
        };
        expect(byRule.events).toHaveLength(1);
        expect(byRule.events[0]).toMatchObject({ type: 'process.blocked', rule_id: 'no-claude' });
        blockedRid = byRule.events[0]?.rid as number;
        const none = (await json('events?rule=warn-cursor')) as { events: unknown[] };
        expect(none.events).toHaveLength(0);
        const byUser = (await json('events?user=alice')) as { events: { user: string }[] };
        expect(byUser.events.map((e) => e.user)).toEqual(['alice']);
        expect(((await json('events?user=bob')) as { events: unknown[] }).events).toHaveLength(0);
        const inWindow = (await json(
          `events?since=${new Date(Date.now() - 3600_000).toISOString()}&until=${new Date(Date.now() + 3600_000).toISOString()}`,
        )) as { events: unknown[] };
        expect(inWindow.events).toHaveLength(2);
        const before = (await json('events?until=2000-01-01T00:00:00Z')) as { events: unknown[] };
        expect(before.events).toHaveLength(0);
        const types = (await json('events?type=agent.heartbeat,process.blocked')) as { events: unknown[] };
        expect(types.events).toHaveLength(2);
        const one = (await json(`events/${blockedRid}`)) as {
          event: { record: Record<string, unknown>; hostname: string };
          ocsf: Record<string, unknown>;
        };
        expect(one.event.record).toMatchObject({ type: 'process.blocked', rule: { id: 'no-claude' } });
        expect(one.event.hostname).toBe('dev-con-1.test');
        expect(one.ocsf.class_uid).toBeTypeOf('number');
        const gone = await api('events/999999', s);
        expect(gone.status).toBe(404);
        expect(await errorCode(gone)).toBe('GUARD_CONSOLE_NOT_FOUND');
      });

      it('shows rule activity and top devices/users for each rule of the served policy', async () => {
        const rules = (await json('rules')) as {
          rules: {
            id: string;
            buckets: { type: string; count: number }[];
            top: { devices: { device_id: string }[] };
          }[];
        };
        expect(rules.rules.map((r) => r.id)).toEqual(['no-claude', 'warn-cursor']);
        const claude = rules.rules[0];
        expect(claude?.buckets.reduce((n, b) => n + b.count, 0)).toBe(1);
        expect(claude?.top.devices[0]?.device_id).toBe('dev-con-1');
      });

      it('shows the overview numbers', async () => {
        const o = await json('overview');
        expect(o).toMatchObject({ devices_total: 1, devices_silent: 0, blocks_24h: 1, forwarders: [] });
      });

      it('refuses hostile and malformed query strings with 400 + code', async () => {
        const bad = [
          'devices?limit=0',
          'devices?limit=501',
          'devices?limit=1e2',
          'devices?sort=id;drop',
          'devices?order=sideways',
          'devices?policy_state=evil',
          'devices?silent=maybe',
          'devices?unknown=1',
          'devices?search=a&search=b',
          `devices?search=${'x'.repeat(300)}`,
          'devices?search=%00',
          'devices?cursor=%27%20OR%201%3D1',
          'devices?cursor=AAAAAAAAAAAAAAAA',
          'events?type=DROP%20TABLE',
          'events?type=process.blocked,',
          'events?since=yesterday',
          'events?until=2026-99-99T00:00:00Z',
          'events?device=..%2F..%2Fetc',
          'events?cursor=zzzzzzzz',
          'events/0',
          'events/-1',
          'events/1e3',
          'devices/%20bad%20id',
          'rules?bucket=minute',
          'rules?bucket=hour&since=2020-01-01T00:00:00Z',
          'rules?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z',
          'overview?x=1',
        ];
        for (const path of bad) {
          const res = await api(path, s);
          expect(res.status, path).toBe(400);
          expect(await errorCode(res), path).toBe('GUARD_COLLECTOR_BAD_QUERY');
        }
      });

      it('pages devices and events with the store cursor', async () => {
        for (let i = 2; i <= 4; i++) {
          const t = await enrollDevice(col.url, col.enrollSecret, `dev-con-${i}`);
          expect((await postEvents(col.url, t, [heartbeatEvent(`dev-con-${i}`, 1)])).status).toBe(200);
        }
        const seen: string[] = [];
        let cursor: string | null = null;
        for (let round = 0; round < 10; round++) {
          const page = (await json(
            `devices?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
          )) as {
            devices: { id: string }[];
            next: string | null;
          };
          seen.push(...page.devices.map((d) => d.id));
          cursor = page.next;
          if (cursor === null) break;
        }
        expect(seen).toEqual(['dev-con-1', 'dev-con-2', 'dev-con-3', 'dev-con-4']);
      });
    });
  });
}

describe('console on a collector without a bundle: login rate limit, missing page', () => {
  let other: TestCollector;
  beforeAll(async () => {
    // an assets dir without a build: the page answers 503 with a code, the API still works
    other = await startTestCollector({ consoleAssetsDir: collectorTempDir('tg-con-empty-') });
  });

  it('answers 503 GUARD_CONSOLE_NOT_BUILT for the page when the bundle is missing', async () => {
    for (const path of ['/console/', '/console']) {
      const res = await fetch(`${other.url}${path}`);
      expect(res.status, path).toBe(503);
      expect(await errorCode(res)).toBe('GUARD_CONSOLE_NOT_BUILT');
      expect(res.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
    }
  });
  afterAll(async () => {
    await other?.close();
  });

  it('refuses logins from an address after 10 failures, even with the right token, with Retry-After', async () => {
    const attempt = (credential: string) =>
      fetch(`${other.url}/console/api/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ credential }),
      });
    for (let i = 0; i < 10; i++) expect((await attempt(`wrong-${i}-${'x'.repeat(20)}`)).status).toBe(401);
    const limited = await attempt(other.adminToken);
    expect(limited.status).toBe(429);
    expect(await errorCode(limited)).toBe('GUARD_CONSOLE_LOGIN_RATE_LIMITED');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });
});

describe('console logins of a read-only token: sessions opened per address are bounded', () => {
  let viewerCol: TestCollector;
  beforeAll(async () => {
    viewerCol = await startTestCollector({ consoleViewerToken: viewerToken });
  });
  afterAll(async () => {
    await viewerCol?.close();
  });

  it('opens 20 sessions from an address at once, then answers 429 with Retry-After and writes no session', async () => {
    const attempt = () =>
      fetch(`${viewerCol.url}/console/api/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ credential: viewerToken }),
      });
    // concurrently, as a script would: the check and the take cannot be raced
    const answers = await Promise.all(Array.from({ length: 30 }, attempt));
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses.filter((x) => x === 200)).toHaveLength(20);
    expect(statuses.filter((x) => x === 429)).toHaveLength(10);
    const limited = answers.find((r) => r.status === 429) as Response;
    expect(await errorCode(limited)).toBe('GUARD_CONSOLE_LOGIN_RATE_LIMITED');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(limited.headers.get('set-cookie')).toBeNull();
    const db = new Database(viewerCol.dbFile, { readonly: true });
    try {
      expect(db.prepare('SELECT count(*) AS n FROM console_sessions').get()).toEqual({ n: 20 });
    } finally {
      db.close();
    }
    // the sessions opened keep working
    const ok = answers.find((r) => r.status === 200) as Response;
    const cookie = (ok.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const session = await fetch(`${viewerCol.url}/console/api/session`, { headers: { cookie } });
    expect([session.status, ((await session.json()) as { role: string }).role]).toEqual([200, 'viewer']);
  });
});

describe('console over TLS', () => {
  it('marks the session cookie Secure and checks the https origin', async () => {
    const tlsDir = collectorTempDir('tg-con-tls-');
    const keyFile = join(tlsDir, 'key.pem');
    const certFile = join(tlsDir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
        ...['-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1'],
        ...['-addext', 'subjectAltName=IP:127.0.0.1'],
      ],
      { stdio: 'ignore' },
    );
    const ca = readFileSync(certFile);
    const c = await startTestCollector({ tls: { cert: ca, key: readFileSync(keyFile) } });
    const post = (origin: string): Promise<{ status: number; cookie: string; body: string }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          `${c.url}/console/api/login`,
          { method: 'POST', ca, headers: { 'content-type': 'application/json', origin } },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, cookie: String(res.headers['set-cookie'] ?? ''), body }),
            );
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify({ credential: c.adminToken }));
      });
    const get = (cookie: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(`${c.url}/console/api/session`, { ca, headers: { cookie } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const ok = await post(c.url);
      expect(ok.status).toBe(200);
      expect(ok.cookie).toMatch(/; Secure$/);
      expect(ok.cookie).toContain('HttpOnly');
      // __Host-: no other host (a sibling subdomain, a plain-HTTP man in the middle) can set it
      expect(ok.cookie).toMatch(/^__Host-tg_console=[A-Za-z0-9_-]{43}; /);
      expect(ok.cookie).toContain('; Path=/;');
      expect(ok.cookie).not.toContain('Domain');
      const secret = (/^__Host-tg_console=([^;]+)/.exec(ok.cookie) as RegExpExecArray)[1] as string;
      expect(await get(`__Host-tg_console=${secret}`)).toBe(200);
      // the unprefixed name, which a sibling host could toss in, is not read over TLS
      expect(await get(`tg_console=${secret}`)).toBe(401);
      const plain = await post(c.url.replace('https:', 'http:'));
      expect(plain.status).toBe(403);
      expect(JSON.parse(plain.body).error.code).toBe('GUARD_CONSOLE_CROSS_SITE');
    } finally {
      await c.close();
    }
  });
});
