/**
 * The collector's record of a clean stop (devices.stopped_at, real SQLite file): set by a batch
 * whose newest new event is agent.stopped, cleared by the next new event, untouched by a batch
 * re-sent as duplicates, and only from the device's current enrollment.
 */
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { CollectorStore, type IncomingEvent } from '../../src/collector/collector-store.js';
import { collectorTempDir } from '../helpers/collector.js';

function ev(seq: number, type: string): IncomingEvent {
  const id = `0190f0f0-0000-7000-8000-${String(seq).padStart(12, '0')}`;
  const time = new Date(Date.UTC(2030, 0, 1, 0, 0, seq)).toISOString();
  return {
    id,
    seq,
    type,
    time,
    ruleId: null,
    agentVersion: null,
    policyVersion: null,
    coverage: null,
    body: JSON.stringify({ id, seq, type, time }),
  };
}

describe('collector: stopped cleanly vs silent', () => {
  test('stopped_at follows the newest new event of the current enrollment', () => {
    const store = new CollectorStore({ file: join(collectorTempDir(), 'c.db') });
    const at = '2030-01-01T00:00:00.000Z';
    store.enrollDevice({ id: 'd1', hostname: 'h', os: 'linux', agent_version: '0.1.0' }, 'a'.repeat(64), at);
    const put = (enrollment: number, events: IncomingEvent[]) =>
      store.insertGroup([{ deviceId: 'd1', enrollment, events, receivedAt: at }]);
    const stoppedAt = () => store.listDevices(undefined, 10)[0]?.stopped_at;

    put(1, [ev(1, 'agent.started'), ev(2, 'agent.heartbeat')]);
    expect(stoppedAt()).toBeNull();
    const stop = [ev(3, 'agent.heartbeat'), ev(4, 'agent.stopped')];
    put(1, stop);
    expect(stoppedAt()).toBe(ev(4, 'agent.stopped').time);
    put(1, [ev(5, 'agent.started')]);
    expect(stoppedAt()).toBeNull();
    // the stop batch again (its ack was lost): all duplicates, says nothing new
    expect(put(1, stop)).toEqual([{ accepted: 0, duplicates: 2 }]);
    expect(stoppedAt()).toBeNull();
    // a batch of an older enrollment does not touch the device's state
    store.enrollDevice({ id: 'd1', hostname: 'h', os: 'linux', agent_version: '0.1.0' }, 'b'.repeat(64), at);
    put(1, [ev(9, 'agent.stopped')]);
    expect(stoppedAt()).toBeNull();
    store.close();
  });
});
