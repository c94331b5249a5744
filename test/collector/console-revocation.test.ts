/**
 * Replacing a console credential revokes it: sessions opened with the old admin or viewer token
 * stop at once (the store keys a session by HMAC(credential, secret): console-auth.ts), not at
 * their expiry up to console_session_ttl_s (7 days at most) later; removing the viewer token ends
 * viewer sessions. A real collector on loopback, restarted on the same SQLite database the way an
 * operator rotates a token; the same tokens keep their sessions across the restart.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

const running: TestCollector[] = [];
afterAll(async () => {
  await Promise.all(running.map((c) => c.close()));
});

async function start(
  dbFile: string | undefined,
  adminToken: string,
  viewerToken: string,
): Promise<TestCollector> {
  const c = await startTestCollector({
    ...(dbFile ? { dbFile } : {}),
    adminToken,
    consoleViewerToken: viewerToken,
  });
  running.push(c);
  return c;
}

async function login(url: string, credential: string): Promise<string> {
  const res = await fetch(`${url}/console/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ credential }),
  });
  expect(res.status).toBe(200);
  return (res.headers.get('set-cookie') ?? '').split(';')[0] as string;
}

async function sessionStatus(url: string, cookie: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${url}/console/api/session`, { headers: { cookie } });
  return { status: res.status, body: await res.json() };
}

const token = (): string => randomBytes(24).toString('base64url');

describe('console credential rotation', () => {
  it('keeps sessions across a restart with the same tokens, ends them when a token is replaced or removed', async () => {
    const admin1 = token();
    const viewer1 = token();
    const a = await start(undefined, admin1, viewer1);
    const adminCookie = await login(a.url, admin1);
    const viewerCookie = await login(a.url, viewer1);
    await a.close();

    // same tokens, same database (another collector of the cluster, or a restart): still logged in
    const b = await start(a.dbFile, admin1, viewer1);
    expect(await sessionStatus(b.url, adminCookie)).toMatchObject({ status: 200, body: { role: 'admin' } });
    expect(await sessionStatus(b.url, viewerCookie)).toMatchObject({ status: 200, body: { role: 'viewer' } });
    await b.close();

    // both tokens replaced: the old sessions are refused at once
    const admin2 = token();
    const viewer2 = token();
    const c = await start(a.dbFile, admin2, viewer2);
    for (const cookie of [adminCookie, viewerCookie]) {
      const r = await sessionStatus(c.url, cookie);
      expect(r.status).toBe(401);
      expect(r.body).toMatchObject({ error: { code: 'GUARD_CONSOLE_UNAUTHENTICATED' } });
    }
    const fresh = await login(c.url, viewer2);
    expect(await sessionStatus(c.url, fresh)).toMatchObject({ status: 200, body: { role: 'viewer' } });
    await c.close();

    // the viewer token removed (viewer logins off): a viewer session opened before is refused
    const d = await start(a.dbFile, admin2, '');
    expect((await sessionStatus(d.url, fresh)).status).toBe(401);
    await d.close();
  });
});
