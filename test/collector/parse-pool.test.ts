/**
 * The parse pool with real worker threads (the compiled dist/collector/parse-worker.js): it answers
 * exactly what parseBatch answers on the main thread, takes bodies without copying them, and a
 * worker that dies fails only the bodies it held, with GUARD_COLLECTOR_WORKER_FAILED, and is
 * replaced.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CollectorStore } from '../../src/collector/collector-store.js';
import { IngestQueue, parseBatch } from '../../src/collector/ingest.js';
import { ParsePool, packBatch, unpackBatch } from '../../src/collector/parse-pool.js';
import { blockedEvent, collectorTempDir, heartbeatEvent, ndjson } from '../helpers/collector.js';

const CRASHING_WORKER = new URL('../fixtures/parse-worker-crashing.mjs', import.meta.url);

const pools: ParsePool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});
async function pool(options: Parameters<typeof ParsePool.start>[0]): Promise<ParsePool> {
  const p = await ParsePool.start(options);
  pools.push(p);
  return p;
}

/** A body with every kind of line: valid, invalid JSON, schema error, other device, blank, CRLF, non-ASCII. */
function mixedBody(): string {
  const lines = [
    JSON.stringify(heartbeatEvent('d1', 1)),
    '{"broken": ',
    JSON.stringify({ ...blockedEvent('d1', 2), pid: 'not a number' }),
    JSON.stringify(blockedEvent('d2', 3)),
    '   ',
    `${JSON.stringify(blockedEvent('d1', 4))}\r`,
    JSON.stringify({ ...blockedEvent('d1', 5), argv: ['claude', 'ünïcødé ✓ \u2028 line\nbreak'] }),
    '[1,2]',
    JSON.stringify({ ...heartbeatEvent('d1', 6), time: '2026-11-24T12:00:00+02:00' }),
    '',
  ];
  return lines.join('\n');
}

describe('ParsePool', () => {
  it('answers exactly what parseBatch answers on the main thread', async () => {
    const p = await pool({ workers: 2 });
    const text = mixedBody();
    const inline = parseBatch(Buffer.from(text), 'd1');
    expect(inline.valid).toHaveLength(4);
    expect(inline.rejectedByReason).toEqual({
      invalid_json: 1,
      schema: 1,
      device_mismatch: 1,
      not_an_object: 1,
    });
    const viaWorker = await p.parse('d1', Buffer.from(text));
    expect(viaWorker).toEqual(inline);
    // the packed form round-trips an event whose JSON holds an escaped newline
    expect(unpackBatch(packBatch(inline))).toEqual(inline);
    expect(p.pending).toBe(0);
  });

  it('takes a body that owns its memory without copying it, and copies a pooled one', async () => {
    const p = await pool({ workers: 1 });
    const big = Buffer.alloc(64 * 1024, 0x20); // own ArrayBuffer
    big.write(`${JSON.stringify(heartbeatEvent('d1', 1))}\n`);
    const r = await p.parse('d1', big);
    expect(r.valid).toHaveLength(1);
    expect(big.byteLength).toBe(0); // transferred to the worker, not copied
    const small = Buffer.from(ndjson([heartbeatEvent('d1', 2)])); // from the shared pool
    const before = small.toString();
    expect((await p.parse('d1', small)).valid).toHaveLength(1);
    expect(small.toString()).toBe(before); // the pool's memory was left alone
  });

  it('a worker that dies fails only the bodies it held, with GUARD_COLLECTOR_WORKER_FAILED, and is replaced', async () => {
    const exits: number[] = [];
    const p = await pool({
      workers: 1,
      workerFile: CRASHING_WORKER,
      onWorkerExit: (i) => exits.push(i.code),
    });
    const crash = p.parse('crash', Buffer.from(ndjson([heartbeatEvent('crash', 1)])));
    const behind = p.parse('d1', Buffer.from(ndjson([heartbeatEvent('d1', 1)]))); // queued on the same worker
    await expect(crash).rejects.toMatchObject({ code: 'GUARD_COLLECTOR_WORKER_FAILED' });
    await expect(behind).rejects.toMatchObject({ code: 'GUARD_COLLECTOR_WORKER_FAILED' });
    expect(exits).toEqual([7]);
    const after = await p.parse('d1', Buffer.from(ndjson([heartbeatEvent('d1', 2)])));
    expect(after.valid.map((e) => e.seq)).toEqual([2]);
  });

  it('a worker file that cannot run fails the start with GUARD_COLLECTOR_WORKER_FAILED', async () => {
    await expect(
      ParsePool.start({ workers: 1, workerFile: new URL('../fixtures/no-such-worker.mjs', import.meta.url) }),
    ).rejects.toMatchObject({ code: 'GUARD_COLLECTOR_WORKER_FAILED' });
  });

  it('close() rejects what is still pending and every later body', async () => {
    const p = await ParsePool.start({ workers: 1 });
    const bodies = Array.from({ length: 20 }, (_, i) =>
      p.parse(
        'd1',
        Buffer.from(ndjson(Array.from({ length: 200 }, (_, k) => blockedEvent('d1', i * 200 + k)))),
      ),
    );
    const settled = Promise.allSettled(bodies);
    await p.close();
    const outcomes = await settled;
    const failed = outcomes.filter((o) => o.status === 'rejected');
    expect(failed).toHaveLength(20); // close() fails them before any answer can be read
    for (const f of failed)
      expect((f as PromiseRejectedResult).reason).toMatchObject({ code: 'GUARD_COLLECTOR_WORKER_FAILED' });
    await expect(p.parse('d1', Buffer.from('x\n'))).rejects.toMatchObject({
      code: 'GUARD_COLLECTOR_WORKER_FAILED',
    });
  });

  it('in the ingest queue, a dead worker fails its body; the other worker’s body is stored', async () => {
    const p = await pool({ workers: 2, workerFile: CRASHING_WORKER });
    const store = new CollectorStore({ file: join(collectorTempDir('tg-pp-'), 'c.db') });
    store.enrollDevice({ id: 'd1', hostname: 'h', os: 'linux', agent_version: '1' }, 'hash-d1', 'now');
    const q = new IngestQueue({
      store: { insertGroup: async (b) => store.insertGroup(b) },
      parser: p,
      maxGroupAgeMs: 60_000,
    });
    const [crashed, stored] = await Promise.allSettled([
      q.submit({ id: 'crash', enrollment: 1 }, Buffer.from(ndjson([heartbeatEvent('crash', 1)]))),
      q.submit(
        { id: 'd1', enrollment: 1 },
        Buffer.from(ndjson([heartbeatEvent('d1', 1), blockedEvent('d1', 2)])),
      ),
    ]);
    expect(crashed).toMatchObject({ status: 'rejected', reason: { code: 'GUARD_COLLECTOR_WORKER_FAILED' } });
    expect(stored).toMatchObject({ status: 'fulfilled', value: { result: { accepted: 2, duplicates: 0 } } });
    expect(store.db.prepare('SELECT count(*) AS n FROM events').get()).toEqual({ n: 2 });
    expect(q.depth).toBe(0);
    store.close();
  });
});
