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
});
