/**
 * Retention: events older than retention_days are pruned oldest first, but never before every
 * forwarder delivered them; rids stay unique after pruning so forwarder cursors remain valid.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { IncomingEvent } from '../../src/collector/collector-store.js';
import { parseBatch } from '../../src/collector/ingest.js';
import { pruneExpiredEvents } from '../../src/collector/retention.js';
import { SqliteCollectorStore } from '../../src/collector/store/sqlite-store.js';
import { collectorTempDir, heartbeatEvent, ndjson } from '../helpers/collector.js';

const DAY = 86_400_000;

function events(n: number, firstSeq: number): IncomingEvent[] {
  return parseBatch(
    Buffer.from(ndjson(Array.from({ length: n }, (_, i) => heartbeatEvent('d1', firstSeq + i)))),
    'd1',
  ).valid;
}

describe('retention', () => {
  it('prunes events past retention_days, keeps what a forwarder still owes, never reuses rids', async () => {
    const port = new SqliteCollectorStore({ file: join(collectorTempDir('tg-ret-'), 'c.db') });
    const store = port.engine;
    store.enrollDevice(
      { id: 'd1', hostname: 'h', os: 'linux', agent_version: '1' },
      'hash',
      new Date().toISOString(),
    );
    const now = Date.parse('2026-11-24T12:00:00Z');
    const iso = (ms: number): string => new Date(ms).toISOString();
    // 12,000 events received 40 days ago (more than one prune step), 10 received yesterday
    store.insertGroup([
      { deviceId: 'd1', enrollment: 1, events: events(12_000, 1), receivedAt: iso(now - 40 * DAY) },
    ]);
    store.insertGroup([
      { deviceId: 'd1', enrollment: 1, events: events(10, 20_000), receivedAt: iso(now - DAY) },
    ]);
    const count = (): number =>
      (store.db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;

    expect(await pruneExpiredEvents({ store: port, retentionDays: 0, sinks: [], now: () => now })).toBe(0);
    expect(count()).toBe(12_010);

    // the splunk sink has delivered only the first 5,000: the old ones after it are kept for it
    store.setCursor('splunk-hec', 5_000);
    store.setCursor('ndjson', 12_010);
    expect(
      await pruneExpiredEvents({
        store: port,
        retentionDays: 30,
        sinks: ['ndjson', 'splunk-hec'],
        now: () => now,
      }),
    ).toBe(5_000);
    expect(count()).toBe(7_010);

    store.setCursor('splunk-hec', 12_010);
    expect(
      await pruneExpiredEvents({
        store: port,
        retentionDays: 30,
        sinks: ['ndjson', 'splunk-hec'],
        now: () => now,
      }),
    ).toBe(7_000);
    expect(count()).toBe(10);

    // without sinks only age counts; new events get fresh rids above every cursor
    expect(await pruneExpiredEvents({ store: port, retentionDays: 30, sinks: [], now: () => now })).toBe(0);
    store.insertGroup([{ deviceId: 'd1', enrollment: 1, events: events(1, 30_000), receivedAt: iso(now) }]);
    expect(store.maxRid()).toBe(12_011);
    store.close();
  });
});
