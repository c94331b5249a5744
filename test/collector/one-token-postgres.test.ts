/**
 * One device token against a collector on PostgreSQL (docs/security.md "The collector and one
 * device token"): what one token posts must not break what the collector answers about the rest
 * of the fleet. A real collector over loopback on a real throwaway PostgreSQL server.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signEnvelope } from '../../src/policy/dsse.js';
import { parsePrivateKey, parsePublicKey } from '../../src/policy/keys.js';
import { POLICY_PAYLOAD_TYPE } from '../../src/policy/policy-types.js';
import {
  enrollDevice,
  heartbeatEvent,
  postEvents,
  shadowMatchEvent,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { makeKey, policyBody } from '../helpers/daemon.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';

const key = makeKey();
let server: TestPostgres | undefined;
let c: TestCollector;
afterAll(async () => {
  await c?.close();
  await server?.stop();
});

const envelope = (version: number) =>
  signEnvelope(
    JSON.stringify(
      policyBody([{ id: 'r1', name: 'r1', action: 'block', message: 'no', process: { names: ['tg-r1'] } }], {
        version,
      }),
    ),
    POLICY_PAYLOAD_TYPE,
    [parsePrivateKey(key.privateKeyPem)],
  );
const admin = (): Record<string, string> => ({
  authorization: `Bearer ${c.adminToken}`,
  'content-type': 'application/json',
});
async function adminGet(path: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${c.url}${path}`, { headers: admin() });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('one device token, collector on PostgreSQL', () => {
  beforeAll(async () => {
    server = await startTestPostgres();
    c = await startTestCollector({
      store: { url: await server.createDatabase() },
      enrollSecret: randomBytes(24).toString('base64url'),
      adminToken: randomBytes(24).toString('base64url'),
      policyTrustedKeys: [parsePublicKey(key.publicKeyPem)],
    });
    for (const [version, channel] of [
      [1, 'enforced'],
      [2, 'shadow'],
    ] as const) {
      const res = await fetch(`${c.url}/v1/admin/policy`, {
        method: 'POST',
        headers: admin(),
        body: JSON.stringify({ envelope: envelope(version), by: 'sec', channel }),
      });
      expect(res.status).toBe(201);
    }
  }, 120_000);

  it('a U+0000 in its events does not take down the fleet-wide shadow review (stored as U+FFFD, as in text columns)', async () => {
    const honest = await enrollDevice(c.url, c.enrollSecret, 'honest-1');
    const hostile = await enrollDevice(c.url, c.enrollSecret, 'hostile-1');
    expect((await postEvents(c.url, honest, [shadowMatchEvent('honest-1', 1, 'r1', 2)])).status).toBe(200);
    // any string of the event will do: an argument, the user
    const poison: Record<string, unknown> = {
      ...shadowMatchEvent('hostile-1', 1, 'r1', 2),
      argv: ['claude', 'a\u0000b', 'c\ud800d'],
      user: 'x\u0000',
    };
    const res = await postEvents(c.url, hostile, [poison]);
    expect([res.status, await res.json()]).toEqual([200, { accepted: 1, duplicates: 0 }]);

    const rules = await adminGet('/v1/admin/policy/shadow');
    expect(rules.status).toBe(200);
    expect(rules.json.rules).toEqual([expect.objectContaining({ rule_id: 'r1', matches: 2, devices: 2 })]);
    const devices = await adminGet('/v1/admin/policy/shadow/devices');
    expect(devices.status).toBe(200);
    expect((devices.json.devices as { device_id: string }[]).map((d) => d.device_id)).toEqual([
      'honest-1',
      'hostile-1',
    ]);
    // what is stored (and forwarded) carries U+FFFD where U+0000 was
    const stored = await adminGet('/v1/events?device_id=hostile-1');
    expect(stored.json.events).toEqual([
      expect.objectContaining({ id: poison.id, argv: ['claude', 'a\uFFFDb', 'c\uFFFDd'], user: 'x\uFFFD' }),
    ]);
  });

  it('a lone surrogate in its heartbeat tags does not fail the group commit its batch shares with other devices', async () => {
    const tokens = await Promise.all(
      ['honest-2', 'honest-3', 'hostile-2'].map((id) => enrollDevice(c.url, c.enrollSecret, id)),
    );
    const [h2, h3, bad] = tokens as [string, string, string];
    // the tags go through json_array_elements_text (devices -> device_tags), which refused `\udxxx`
    const poison = heartbeatEvent('hostile-2', 1, { tags: ['team-a', 'x\ud800'] });
    // posted together: they share a group when their bodies are parsed within one commit's wait
    const answers = await Promise.all([
      postEvents(c.url, h2, [heartbeatEvent('honest-2', 1, { tags: ['team-a'] })]),
      postEvents(c.url, bad, [poison]),
      postEvents(c.url, h3, [heartbeatEvent('honest-3', 1, { tags: ['team-b'] })]),
    ]);
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
    // the console's tag filter reads device_tags
    const login = await fetch(`${c.url}/console/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ credential: c.adminToken }),
    });
    expect(login.status).toBe(200);
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const res = await fetch(`${c.url}/console/api/devices?tag=team-a`, { headers: { cookie } });
    expect(res.status).toBe(200);
    const devices = ((await res.json()) as { devices: { id: string }[] }).devices;
    expect(devices.map((d) => d.id).sort()).toEqual(['honest-2', 'hostile-2']);
  });
});
