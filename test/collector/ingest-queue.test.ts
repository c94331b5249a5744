/**
 * The ingest queue against a real SQLite store, with each parser (worker threads and the main
 * thread): bodies that arrive together are committed as one group (one fsync), results go back to
 * the right request, and a failed commit rejects the whole group with nothing stored.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type BatchToStore, CollectorStore } from '../../src/collector/collector-store.js';
import { IngestQueue, parseBatch } from '../../src/collector/ingest.js';
import { type BatchParser, InlineParser, ParsePool } from '../../src/collector/parse-pool.js';
import type { EventLog } from '../../src/collector/store/port.js';
import { blockedEvent, collectorTempDir, heartbeatEvent, ndjson } from '../helpers/collector.js';

function storeWithDevices(ids: string[]): CollectorStore {
  const store = new CollectorStore({ file: join(collectorTempDir('tg-iq-'), 'c.db') });
  for (const id of ids)
    store.enrollDevice(
      { id, hostname: 'h', os: 'linux', agent_version: '1' },
      `hash-${id}`,
      new Date().toISOString(),
    );
  return store;
}

const parsers: [string, () => Promise<BatchParser>][] = [
  ['worker threads', () => ParsePool.start({ workers: 1 })],
  ['the main thread', async () => new InlineParser()],
];
const opened: BatchParser[] = [];
afterAll(async () => {
  await Promise.all(opened.map((p) => p.close()));
});
async function parserOf(make: () => Promise<BatchParser>): Promise<BatchParser> {
  const p = await make();
  opened.push(p);
  return p;
}

/** The store's insertGroup, recording the event count of each batch of every group it commits. */
function recordingStore(store: CollectorStore, groups: number[][]): Pick<EventLog, 'insertGroup'> {
  return {
    insertGroup: async (b: readonly BatchToStore[]) => {
      groups.push(b.map((x) => x.events.length));
      return store.insertGroup(b);
    },
  };
}

describe.each(parsers)('IngestQueue, parsing on %s', (_name, makeParser) => {
  it('commits bodies that arrive together as one group and answers each with its own result', async () => {
    const store = storeWithDevices(['d1', 'd2']);
    const groups: number[][] = [];
    const q = new IngestQueue({
      parser: await parserOf(makeParser),
      maxGroupAgeMs: 60_000, // no time-based cut: the group ends when the queue runs dry
      store: recordingStore(store, groups),
    });
    const a = [heartbeatEvent('d1', 1), blockedEvent('d1', 2)];
    const b = [heartbeatEvent('d2', 1)];
    const bad = `{"nope": true}\n`;
    const results = await Promise.all([
      q.submit({ id: 'd1', enrollment: 1 }, Buffer.from(ndjson(a))),
      q.submit({ id: 'd2', enrollment: 1 }, Buffer.from(ndjson(b))),
      q.submit({ id: 'd1', enrollment: 1 }, Buffer.from(ndjson(a))), // the same batch again in the same group: duplicates
      q.submit({ id: 'd1', enrollment: 1 }, Buffer.from(bad)),
    ]);
    expect(groups).toEqual([[2, 1, 2]]); // one commit; the all-invalid body needs no store
    expect(results.map((r) => r.result)).toEqual([
      { accepted: 2, duplicates: 0 },
      { accepted: 1, duplicates: 0 },
      { accepted: 0, duplicates: 2 },
      { accepted: 0, duplicates: 0 },
    ]);
    expect(results[3]?.batch.rejectedTotal).toBe(1);
    expect(store.db.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 3 });
    store.close();
  });

  it('cuts groups at maxGroupBatches', async () => {
    const store = storeWithDevices(['d1']);
    const groups: number[][] = [];
    const q = new IngestQueue({
      parser: await parserOf(makeParser),
      maxGroupBatches: 2,
      maxGroupAgeMs: 60_000,
      store: recordingStore(store, groups),
    });
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        q.submit({ id: 'd1', enrollment: 1 }, Buffer.from(ndjson([heartbeatEvent('d1', i + 1)]))),
      ),
    );
    expect(groups).toEqual([[1, 1], [1, 1], [1]]);
    store.close();
  });

  it('cuts groups at maxGroupEvents; a batch larger than the cap is committed alone', async () => {
    const store = storeWithDevices(['d1']);
    const groups: number[][] = [];
    const q = new IngestQueue({
      parser: await parserOf(makeParser),
      maxGroupEvents: 4,
      maxGroupAgeMs: 60_000,
      store: recordingStore(store, groups),
    });
    const body = (first: number, n: number) =>
      Buffer.from(ndjson(Array.from({ length: n }, (_, i) => heartbeatEvent('d1', first + i))));
    const results = await Promise.all([
      q.submit({ id: 'd1', enrollment: 1 }, body(1, 2)),
      q.submit({ id: 'd1', enrollment: 1 }, body(3, 2)),
      q.submit({ id: 'd1', enrollment: 1 }, body(5, 2)),
      q.submit({ id: 'd1', enrollment: 1 }, body(7, 6)),
      q.submit({ id: 'd1', enrollment: 1 }, body(13, 1)),
    ]);
    expect(groups).toEqual([[2, 2], [2], [6], [1]]);
    expect(results.map((r) => r.result.accepted)).toEqual([2, 2, 2, 6, 1]);
    expect(store.db.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 13 });
    store.close();
  });

  it('rejects every request of a group whose commit fails, storing none of it', async () => {
    const store = storeWithDevices(['d1']);
    const q = new IngestQueue({
      parser: await parserOf(makeParser),
      store: {
        insertGroup: () => {
          throw new Error('disk I/O error');
        },
      },
    });
    const r = await Promise.allSettled([
      q.submit({ id: 'd1', enrollment: 1 }, Buffer.from(ndjson([heartbeatEvent('d1', 1)]))),
      q.submit({ id: 'd1', enrollment: 1 }, Buffer.from(ndjson([heartbeatEvent('d1', 2)]))),
    ]);
    expect(r.map((x) => x.status)).toEqual(['rejected', 'rejected']);
    expect(store.db.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 0 });
    store.close();
  });
});

describe('parseBatch', () => {
  it('lists at most 1000 rejections but counts them all, and never throws on junk', () => {
    const body = Buffer.from('x\n'.repeat(5000));
    const r = parseBatch(body, 'd1');
    expect(r.rejectedTotal).toBe(5000);
    expect(r.rejected).toHaveLength(1000);
    expect(r.rejectedByReason).toEqual({ invalid_json: 5000 });
    expect(parseBatch(Buffer.from([0xff, 0xfe, 0x0a, 0x00]), 'd1').rejectedTotal).toBe(2);
  });

  it('normalises event times to UTC with milliseconds for the admin filters', () => {
    const ev = { ...heartbeatEvent('d1', 1), time: '2026-11-24T12:00:00+02:00' };
    const r = parseBatch(Buffer.from(ndjson([ev])), 'd1');
    expect(r.valid[0]?.time).toBe('2026-11-24T10:00:00.000Z');
    expect(r.valid[0]?.body).toBe(JSON.stringify(ev)); // stored exactly as received
  });
});
