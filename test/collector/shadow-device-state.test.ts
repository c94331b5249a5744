/**
 * A device's policy state on the collector (console devices/rollout, GET /v1/devices) is its
 * ENFORCED policy's: the shadow channel's policy.applied / policy.rejected (`channel: "shadow"`)
 * must neither move the device's policy version to the shadow's, nor mark it rejected (every device
 * would show "rejected" after an untrusted shadow, and heartbeats leave a rejection standing), nor
 * clear a rejection of the enforced policy (which would hide a device refusing it). A real collector
 * on loopback, events posted with a real device token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uuidv7 } from '../../src/common/uuidv7.js';
import {
  enrollDevice,
  heartbeatEvent,
  postEvents,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';

let col: TestCollector;
let token: string;
const DEV = 'dev-shadow-state';
let seq = 0;

beforeAll(async () => {
  col = await startTestCollector();
  token = await enrollDevice(col.url, col.enrollSecret, DEV);
});
afterAll(async () => {
  await col?.close();
});

function policyEvent(
  type: 'policy.applied' | 'policy.rejected',
  version: number,
  shadow: boolean,
): Record<string, unknown> {
  return {
    id: uuidv7(),
    time: new Date().toISOString(),
    seq: ++seq,
    device_id: DEV,
    hostname: `${DEV}.test`,
    type,
    agent_version: '0.1.0',
    policy_version: version,
    sha256: 'b'.repeat(64),
    source: 'http://127.0.0.1/v1/policy',
    ...(type === 'policy.applied'
      ? { previous_version: null }
      : { reason: 'GUARD_POLICY_UNTRUSTED_KEY', message: 'no trusted signature' }),
    ...(shadow ? { channel: 'shadow' } : {}),
  };
}

async function post(events: Record<string, unknown>[]): Promise<void> {
  const res = await postEvents(col.url, token, events);
  expect(res.status, await res.clone().text()).toBe(200);
  expect(((await res.json()) as { accepted: number }).accepted).toBe(events.length);
}

async function device(): Promise<{ policy_version: number | null; policy_state: string }> {
  const d = await col.collector.store.consoleDevice(DEV);
  if (!d) throw new Error('device not stored');
  return { policy_version: d.policy_version, policy_state: d.policy_state };
}

describe("the shadow channel's policy events", () => {
  it("leave the device's enforced policy version and state alone", async () => {
    await post([heartbeatEvent(DEV, ++seq, { policy_version: 5, policy_state: 'ok' })]);
    expect(await device()).toEqual({ policy_version: 5, policy_state: 'ok' });

    // a shadow refused by the device (e.g. signed by a key it does not trust): still v5, ok
    await post([policyEvent('policy.rejected', 6, true)]);
    await post([heartbeatEvent(DEV, ++seq, { policy_version: 5, policy_state: 'ok' })]);
    expect(await device()).toEqual({ policy_version: 5, policy_state: 'ok' });

    // a shadow applied: the device still enforces v5
    await post([policyEvent('policy.applied', 7, true)]);
    expect(await device()).toEqual({ policy_version: 5, policy_state: 'ok' });

    // the enforced v8 refused: rejected, and a shadow applied afterwards does not clear it
    await post([policyEvent('policy.rejected', 8, false)]);
    await post([policyEvent('policy.applied', 9, true)]);
    await post([heartbeatEvent(DEV, ++seq, { policy_version: 5, policy_state: 'ok' })]);
    expect(await device()).toEqual({ policy_version: 5, policy_state: 'rejected' });

    // the enforced policy applied clears it
    await post([policyEvent('policy.applied', 8, false)]);
    expect(await device()).toEqual({ policy_version: 8, policy_state: 'ok' });
  });
});
