/**
 * Coverage at the collector (issue 13, item 7): each device's newest heartbeat says whether it
 * hears execs from the kernel (exec events) and refuses them before they run (pre-exec deny), with
 * the counters of what it may have missed; the collector keeps the newest one per device (by seq,
 * so a late older batch cannot roll it back), lists it in GET /v1/devices and sums it in /metrics
 * with fixed label values. Real collector over loopback, real HTTP, real SQLite.
 */
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRICS_SCAN_REUSE_MS } from '../../src/collector/collector-server.js';
import {
  enrollDevice,
  heartbeatEvent,
  postEvents,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

let c: TestCollector;

beforeAll(async () => {
  c = await startTestCollector();
});
afterAll(async () => {
  await c?.close();
});

const on = (drops: number, misses: number) => ({
  exec_events: {
    state: 'on',
    source: 'exec-events',
    received: 1000,
    kernel_drops: drops,
    queue_drops: 1,
    resyncs: drops,
  },
  exec_deny: { state: 'on', events: 900, cache_hits: 850, denied: 2, deadline_misses: misses, overflow: 0 },
});
const off = { exec_events: { state: 'off', source: 'procfs' }, exec_deny: { state: 'off' } };

async function devices(): Promise<{ id: string; coverage: unknown }[]> {
  const r = await fetch(`${c.url}/v1/devices?limit=100`, {
    headers: { authorization: `Bearer ${c.adminToken}` },
  });
  expect(r.status).toBe(200);
  return ((await r.json()) as { devices: { id: string; coverage: unknown }[] }).devices;
}

async function metric(name: string): Promise<string[]> {
  const text = await (await fetch(`${c.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(`toolguard_collector_${name}`));
}

describe('device coverage from heartbeats', () => {
  it('keeps each device’s newest heartbeat coverage, lists it, and sums it in /metrics', async () => {
    const a = await enrollDevice(c.url, c.enrollSecret, 'dev-cov-a');
    const b = await enrollDevice(c.url, c.enrollSecret, 'dev-cov-b');
    const z = await enrollDevice(c.url, c.enrollSecret, 'dev-cov-z'); // no heartbeat yet
    expect(z).toBeTruthy();
    // a: seq 2 is the newest; seq 1 arrives later in its own batch and must not roll it back
    expect((await postEvents(c.url, a, [heartbeatEvent('dev-cov-a', 2, on(3, 5))])).status).toBe(200);
    expect((await postEvents(c.url, a, [heartbeatEvent('dev-cov-a', 1, off)])).status).toBe(200);
    // b: an agent that polls and does not deny
    expect((await postEvents(c.url, b, [heartbeatEvent('dev-cov-b', 1, off)])).status).toBe(200);

    const byId = Object.fromEntries((await devices()).map((d) => [d.id, d.coverage]));
    expect(byId['dev-cov-a']).toEqual(on(3, 5));
    expect(byId['dev-cov-b']).toEqual(off);
    expect(byId['dev-cov-z']).toBeNull();

    expect(await metric('devices_coverage{')).toEqual(
      expect.arrayContaining([
        'toolguard_collector_devices_coverage{exec_events="on",exec_deny="on"} 1',
        'toolguard_collector_devices_coverage{exec_events="off",exec_deny="off"} 1',
        'toolguard_collector_devices_coverage{exec_events="unknown",exec_deny="unknown"} 1',
      ]),
    );
    expect((await metric('devices_process_source{')).sort()).toEqual([
      'toolguard_collector_devices_process_source{source="exec-events"} 1',
      'toolguard_collector_devices_process_source{source="procfs"} 1',
      'toolguard_collector_devices_process_source{source="unknown"} 1',
    ]);
    expect(await metric('devices_exec_event_drops ')).toEqual([
      'toolguard_collector_devices_exec_event_drops 4',
    ]);
    expect(await metric('devices_exec_deny_deadline_misses ')).toEqual([
      'toolguard_collector_devices_exec_deny_deadline_misses 5',
    ]);
  });

  it('refuses a heartbeat whose coverage is not the schema’s (no label or field from a device’s say-so)', async () => {
    const t = await enrollDevice(c.url, c.enrollSecret, 'dev-cov-bad');
    const bad = heartbeatEvent('dev-cov-bad', 1, { exec_events: { state: 'pwned', evil: 'x' } });
    const r = await postEvents(c.url, t, [bad]);
    expect(r.status).toBe(400);
    const body = (await r.json()) as {
      error: { code: string };
      accepted: number;
      rejected: { id: string | null; reason: string }[];
    };
    expect(body.error.code).toBe('GUARD_COLLECTOR_INVALID_EVENTS');
    expect(body.accepted).toBe(0);
    expect(body.rejected.map((x) => x.reason.split(':')[0])).toEqual(['schema']);
    const byId = Object.fromEntries((await devices()).map((d) => [d.id, d.coverage]));
    expect(byId['dev-cov-bad']).toBeNull();
    const lines = await metric('devices_coverage{');
    expect(lines.join('\n')).not.toMatch(/pwned/);
  });
});

describe('coverage sums from hostile heartbeats', () => {
  it('keeps /metrics answering and its sums safe integers when devices report the largest counters', async () => {
    const max = Number.MAX_SAFE_INTEGER;
    const big = {
      exec_events: { state: 'on', received: max, kernel_drops: max, queue_drops: max, resyncs: max },
      exec_deny: {
        state: 'on',
        events: max,
        cache_hits: max,
        denied: max,
        deadline_misses: max,
        overflow: max,
      },
    };
    const t = await enrollDevice(c.url, c.enrollSecret, 'dev-cov-max');
    expect((await postEvents(c.url, t, [heartbeatEvent('dev-cov-max', 1, big)])).status).toBe(200);
    // A fleet of such devices (enrolling 1,100 over HTTP would hit the enroll rate limit): copies
    // of its row in the collector's own database, as if each had posted that heartbeat.
    const db = new Database(c.dbFile);
    try {
      db.prepare(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1100)
         INSERT INTO devices (id, token_hash, hostname, os, agent_version, enrolled_at, last_seen_at, coverage)
         SELECT id || '-' || i, token_hash || '-' || i, hostname, os, agent_version, enrolled_at, last_seen_at, coverage
         FROM devices, n WHERE id = 'dev-cov-max'`,
      ).run();
    } finally {
      db.close();
    }
    // /metrics reuses a devices scan for METRICS_SCAN_REUSE_MS (the first test's may still be served)
    const text = await waitFor(
      async () => {
        const r = await fetch(`${c.url}/metrics`);
        expect(r.status).toBe(200);
        const t = await r.text();
        return t.includes(`toolguard_collector_devices_exec_event_drops ${max}`) && t;
      },
      'the scan of the 1,101 devices',
      { timeoutMs: 4 * METRICS_SCAN_REUSE_MS, intervalMs: 100 },
    );
    const value = (name: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`toolguard_collector_${name} `));
      return Number(line?.split(' ')[1]);
    };
    // Saturated: a sum past 2^53 - 1 has no exact value in a double anyway.
    expect(value('devices_exec_event_drops')).toBe(max);
    expect(value('devices_exec_deny_deadline_misses')).toBe(max);
  });
});
