/**
 * The policy channels of the collector over loopback: how `policy_file` (sign, copy) and the
 * database (POST /v1/admin/policy) combine — the higher version is served —, the shadow channel's
 * publish / serve (ETag, 304, 204) / promote / clear rules and their refusal codes, hostile
 * admin input; and a cluster on PostgreSQL: two collectors on one database, publications through
 * A served by B, a real guardd fetching through B.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { signEnvelope } from '../../src/policy/dsse.js';
import { parsePrivateKey, parsePublicKey } from '../../src/policy/keys.js';
import { POLICY_PAYLOAD_TYPE, type PolicyRule } from '../../src/policy/policy-types.js';
import { collectorTempDir, startTestCollector, type TestCollector } from '../helpers/collector.js';
import { makeKey, policyBody, ROOT, startGuardd, writeSignedPolicy } from '../helpers/daemon.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const key = makeKey();
const rule = (id: string): PolicyRule => ({
  id,
  name: id,
  action: 'block',
  message: 'not approved',
  process: { names: [`tg-${id}`] },
});
const envelope = (version: number, rules: PolicyRule[] = [rule('r1')]) =>
  signEnvelope(JSON.stringify(policyBody(rules, { version })), POLICY_PAYLOAD_TYPE, [
    parsePrivateKey(key.privateKeyPem),
  ]);
const versionOf = (text: string): number =>
  (
    JSON.parse(Buffer.from((JSON.parse(text) as { payload: string }).payload, 'base64').toString('utf8')) as {
      version: number;
    }
  ).version;

async function post(
  c: TestCollector,
  path: string,
  body: unknown,
  token = c.adminToken,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${c.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}
async function get(
  c: TestCollector,
  path: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${c.adminToken}` } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}
/** guardctl as a real process, without blocking this process's event loop; resolves with its stdout. */
function guardctlAsync(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'guardctl.js'), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('close', () => resolve(out));
  });
}
const codeOf = (r: { json: Record<string, unknown> }): string => (r.json.error as { code: string }).code;
async function served(
  c: TestCollector,
  channel = '',
): Promise<{ status: number; text: string; etag: string | null }> {
  const res = await fetch(`${c.url}/v1/policy${channel}`);
  return { status: res.status, text: await res.text(), etag: res.headers.get('etag') };
}

describe('policy_file and the database combined (SQLite)', () => {
  it('serves the higher version of the two; publishing needs a version above both; the file is never written', async () => {
    const dir = collectorTempDir('tg-pch-');
    const policyFile = join(dir, 'policy.dsse.json');
    writeSignedPolicy(policyFile, policyBody([rule('r1')], { version: 3 }), key);
    const c = await startTestCollector({ policyFile, policyTrustedKeys: [parsePublicKey(key.publicKeyPem)] });
    try {
      expect(versionOf((await served(c)).text)).toBe(3);
      expect(await post(c, '/v1/admin/policy', { envelope: envelope(3), by: 'a' })).toMatchObject({
        status: 409,
      });
      expect((await post(c, '/v1/admin/policy', { envelope: envelope(4), by: 'a' })).status).toBe(201);
      expect(versionOf((await served(c)).text)).toBe(4);
      // the admin signs and copies v5 by hand: the file is higher now, so it is served
      writeSignedPolicy(policyFile, policyBody([rule('r1')], { version: 5 }), key);
      expect(versionOf((await served(c)).text)).toBe(5);
      const stale = await post(c, '/v1/admin/policy', { envelope: envelope(5), by: 'a' });
      expect(stale.status).toBe(409);
      expect(codeOf(stale)).toBe('GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER');
      expect((await post(c, '/v1/admin/policy', { envelope: envelope(6), by: 'a' })).status).toBe(201);
      expect(versionOf((await served(c)).text)).toBe(6);
      // publications live in the database: the admin's file is left as it was
      expect(versionOf(readFileSync(policyFile, 'utf8'))).toBe(5);
    } finally {
      await c.close();
    }
  });
});

describe('the shadow channel (SQLite)', () => {
  it('publish / serve (ETag, 304, 204) / promote / clear, with their refusal codes', async () => {
    const c = await startTestCollector({ policyTrustedKeys: [parsePublicKey(key.publicKeyPem)] });
    try {
      expect((await served(c, '/shadow')).status).toBe(204);
      expect((await post(c, '/v1/admin/policy', { envelope: envelope(2), by: 'a' })).status).toBe(201);
      // a shadow must be above the enforced version
      const low = await post(c, '/v1/admin/policy', { envelope: envelope(2), by: 'a', channel: 'shadow' });
      expect([low.status, codeOf(low)]).toEqual([409, 'GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER']);
      const pub = await post(c, '/v1/admin/policy', {
        envelope: envelope(3, [rule('r1'), rule('r2')]),
        by: 'alice',
        message: 'candidate',
        channel: 'shadow',
      });
      expect(pub.status).toBe(201);
      expect(pub.json).toMatchObject({ channel: 'shadow', action: 'publish', version: 3, verified: true });
      expect((pub.json.diff as { rulesAdded: { id: string }[] }).rulesAdded.map((r) => r.id)).toEqual(['r2']);
      const s = await served(c, '/shadow');
      expect([s.status, versionOf(s.text)]).toEqual([200, 3]);
      const again = await fetch(`${c.url}/v1/policy/shadow`, { headers: { 'if-none-match': s.etag ?? '' } });
      expect(again.status).toBe(304);
      // the enforced channel is untouched
      expect(versionOf((await served(c)).text)).toBe(2);
      // an untrusted signature is refused before it is stored
      const stranger = makeKey();
      const forged = signEnvelope(
        JSON.stringify(policyBody([rule('x')], { version: 9 })),
        POLICY_PAYLOAD_TYPE,
        [parsePrivateKey(stranger.privateKeyPem)],
      );
      const bad = await post(c, '/v1/admin/policy', { envelope: forged, by: 'm', channel: 'shadow' });
      expect([bad.status, codeOf(bad)]).toEqual([422, 'GUARD_POLICY_UNTRUSTED_KEY']);
      // a lower or equal shadow than the one published: refused
      const same = await post(c, '/v1/admin/policy', { envelope: envelope(3), by: 'a', channel: 'shadow' });
      expect(same.status).toBe(409);

      // the admin view before any match
      const view = await get(c, '/v1/admin/policy/shadow');
      expect(view.json).toMatchObject({
        version: 3,
        present: true,
        shadow_version: 3,
        enforced_version: 2,
        rules: [],
      });

      // promote: the version reviewed must be the shadow's
      const wrong = await post(c, '/v1/admin/policy/promote', { by: 'bob', version: 4 });
      expect([wrong.status, codeOf(wrong)]).toEqual([409, 'GUARD_COLLECTOR_SHADOW_CHANGED']);
      const promoted = await post(c, '/v1/admin/policy/promote', { by: 'bob', version: 3 });
      expect(promoted.status).toBe(201);
      expect(promoted.json).toMatchObject({ channel: 'enforced', action: 'promote', version: 3 });
      expect(versionOf((await served(c)).text)).toBe(3);
      expect((await served(c)).text).toBe(s.text); // the very envelope that was the shadow
      expect((await served(c, '/shadow')).status).toBe(204);
      const none = await post(c, '/v1/admin/policy/promote', { by: 'bob' });
      expect([none.status, codeOf(none)]).toEqual([409, 'GUARD_COLLECTOR_NO_SHADOW']);

      // clear a new shadow; clearing twice says there is none
      expect(
        (await post(c, '/v1/admin/policy', { envelope: envelope(4), by: 'a', channel: 'shadow' })).status,
      ).toBe(201);
      const cleared = await post(c, '/v1/admin/policy/shadow/clear', { by: 'carol', message: 'too broad' });
      expect(cleared.json).toMatchObject({ channel: 'shadow', action: 'clear', version: 4 });
      expect((await served(c, '/shadow')).status).toBe(204);
      const twice = await post(c, '/v1/admin/policy/shadow/clear', { by: 'carol' });
      expect([twice.status, codeOf(twice)]).toEqual([409, 'GUARD_COLLECTOR_NO_SHADOW']);
      // the cleared version stays taken: the next shadow must be above it
      expect(
        (await post(c, '/v1/admin/policy', { envelope: envelope(4), by: 'a', channel: 'shadow' })).status,
      ).toBe(409);
      // the counts of the cleared (or any) version stay readable
      expect((await get(c, '/v1/admin/policy/shadow?version=4')).json).toMatchObject({
        version: 4,
        present: false,
      });
    } finally {
      await c.close();
    }
  });

  it('hostile admin input: no token, unknown fields and parameters, a bad channel or cursor', async () => {
    const c = await startTestCollector();
    try {
      expect((await post(c, '/v1/admin/policy/promote', { by: 'x' }, 'wrong')).status).toBe(401);
      expect((await post(c, '/v1/admin/policy/shadow/clear', { by: 'x' }, '')).status).toBe(401);
      expect((await fetch(`${c.url}/v1/admin/policy/shadow`)).status).toBe(401);
      const badChannel = await post(c, '/v1/admin/policy', {
        envelope: envelope(1),
        by: 'x',
        channel: 'staging',
      });
      expect([badChannel.status, codeOf(badChannel)]).toEqual([400, 'GUARD_COLLECTOR_BAD_REQUEST']);
      const extra = await post(c, '/v1/admin/policy/promote', { by: 'x', envelope: envelope(9) });
      expect([extra.status, codeOf(extra)]).toEqual([400, 'GUARD_COLLECTOR_BAD_REQUEST']);
      const neg = await post(c, '/v1/admin/policy/promote', { by: 'x', version: -1 });
      expect(neg.status).toBe(400);
      for (const q of ['?rules=1', '?limit=0', '?limit=100000', '?version=abc']) {
        const r = await get(c, `/v1/admin/policy/shadow${q}`);
        expect([r.status, codeOf(r)], q).toEqual([400, 'GUARD_COLLECTOR_BAD_QUERY']);
      }
      for (const after of ['%%%', 'bm90LWpzb24', Buffer.from('[1,2]').toString('base64url')]) {
        const r = await get(c, `/v1/admin/policy/shadow/devices?after=${after}`);
        expect([r.status, codeOf(r)], after).toEqual([400, 'GUARD_COLLECTOR_BAD_QUERY']);
      }
    } finally {
      await c.close();
    }
  });
});

describe('several collectors on one PostgreSQL database', () => {
  it('a shadow published through A is served by B and fetched by a real guardd through B; promote through B is served by A', async () => {
    const server = await startTestPostgres();
    const url = await server.createDatabase();
    const enrollSecret = randomBytes(24).toString('base64url');
    const adminToken = randomBytes(24).toString('base64url');
    const common = {
      store: { url },
      enrollSecret,
      adminToken,
      policyTrustedKeys: [parsePublicKey(key.publicKeyPem)],
    };
    const a = await startTestCollector(common);
    const b = await startTestCollector(common);
    const dir = collectorTempDir('tg-pch-pg-');
    try {
      expect((await post(a, '/v1/admin/policy', { envelope: envelope(1), by: 'a' })).status).toBe(201);
      expect(versionOf((await served(b)).text)).toBe(1);
      const shadowEnv = envelope(2, [rule('r1'), rule('cand')]);
      expect(
        (await post(a, '/v1/admin/policy', { envelope: shadowEnv, by: 'a', channel: 'shadow' })).status,
      ).toBe(201);
      expect(versionOf((await served(b, '/shadow')).text)).toBe(2);
      // the version check holds across collectors: B refuses what A already took
      const dup = await post(b, '/v1/admin/policy', { envelope: envelope(2), by: 'b', channel: 'shadow' });
      expect([dup.status, codeOf(dup)]).toEqual([409, 'GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER']);

      writeFileSync(join(dir, 'enroll-secret'), enrollSecret, { mode: 0o600 });
      const guardd = await startGuardd(join(dir, 'agent'), {
        'collector.url': b.url,
        'collector.enroll_secret_file': join(dir, 'enroll-secret'),
        'policy.trusted_keys': [key.publicKeyPem],
      });
      // guardctl runs asynchronously throughout: the collectors live in this process, and a blocked
      // event loop would also race the clients' keep-alive sockets against the servers' idle timers
      const status = async () =>
        JSON.parse(await guardctlAsync(['--socket-dir', guardd.socketDir, 'status', '--json'])) as {
          policy: { version: number | null; source: string | null };
          shadow?: { version: number; source: string } | null;
        };
      const s = await waitFor(
        async () => {
          const st = await status();
          return st.policy.version === 1 && st.shadow?.version === 2 ? st : undefined;
        },
        'guardd to fetch the enforced policy and the shadow through B',
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      expect(s.shadow?.source).toBe(`${b.url}/v1/policy/shadow`);

      const promoted = await post(b, '/v1/admin/policy/promote', { by: 'b', version: 2 });
      expect(promoted.status).toBe(201);
      expect((await served(a)).text).toBe((await served(b)).text);
      expect(versionOf((await served(a)).text)).toBe(2);
      expect((await served(a, '/shadow')).status).toBe(204);
      const r = JSON.parse(
        await guardctlAsync(['--socket-dir', guardd.socketDir, '--json', 'policy', 'reload']),
      ) as {
        version: number;
        shadow: { status: string };
      };
      expect(r).toMatchObject({ version: 2, shadow: { status: 'none' } });
      expect((await status()).shadow ?? null).toBeNull();
      const history = (await get(a, '/v1/admin/policy/history')).json.publications as Record<
        string,
        unknown
      >[];
      expect(history.map((h) => [h.channel, h.action, h.version])).toEqual([
        ['shadow', 'clear', 2],
        ['enforced', 'promote', 2],
        ['shadow', 'publish', 2],
        ['enforced', 'publish', 1],
      ]);
      await guardd.stop();
      // the database gone: 503 (agents keep their policy and retry), no store detail, never an older policy
      await server.stop();
      const down = await fetch(`${a.url}/v1/policy`);
      expect(down.status).toBe(503);
      const body = (await down.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('GUARD_COLLECTOR_NO_POLICY');
      expect(body.error.message).not.toMatch(/127\.0\.0\.1|postgres|ECONNREFUSED/i);
    } finally {
      await a.close();
      await b.close();
      await server.stop();
    }
  });
});
