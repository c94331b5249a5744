/**
 * Ack means durable: agents post batches concurrently, the collector process is killed with
 * SIGKILL mid-stream, restarted on the same database, and the agents re-send everything. Every
 * batch acknowledged before the kill must already be stored (its re-send is all duplicates), and
 * in the end every event is stored exactly once.
 */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { enrollDevice, heartbeatEvent, ndjson, spawnCollectorProcess } from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

const BATCHES = 40;
const PER_BATCH = 250;
const SENDERS = 4;

describe('kill -9 of the collector mid-stream', () => {
  it('loses no acknowledged event and stores nothing twice after restart and re-send', async () => {
    const first = await spawnCollectorProcess();
    const token = await enrollDevice(first.url, first.enrollSecret, 'dev-crash');
    const batches = Array.from({ length: BATCHES }, (_, b) =>
      ndjson(Array.from({ length: PER_BATCH }, (_, i) => heartbeatEvent('dev-crash', b * PER_BATCH + i + 1))),
    );
    const post = (url: string, body: string): Promise<Response> =>
      fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
        body,
      });

    const acked = new Set<number>();
    let next = 0;
    // Set once the kill is decided: no new batch starts, so the kill lands mid-stream by
    // construction however fast this machine ingests.
    let killing = false;
    const sender = async (): Promise<void> => {
      while (next < BATCHES && !killing) {
        const b = next++;
        try {
          const r = await post(first.url, batches[b] as string);
          if (r.status === 200) acked.add(b);
          else return;
        } catch {
          return; // the collector died: this batch stays un-acked, like in a real agent outbox
        }
      }
    };
    const senders = Promise.all(Array.from({ length: SENDERS }, sender));
    await waitFor(() => acked.size >= 8, '8 acknowledged batches', { intervalMs: 1 });
    killing = true;
    await first.kill();
    await senders;
    expect(acked.size).toBeLessThan(BATCHES); // the kill really happened mid-stream

    const second = await spawnCollectorProcess({
      dbFile: first.dbFile,
      enrollSecret: first.enrollSecret,
      adminToken: first.adminToken,
    });
    try {
      for (let b = 0; b < BATCHES; b++) {
        const r = (await (await post(second.url, batches[b] as string)).json()) as {
          accepted: number;
          duplicates: number;
        };
        expect(r.accepted + r.duplicates).toBe(PER_BATCH);
        if (acked.has(b)) expect(r).toEqual({ accepted: 0, duplicates: PER_BATCH });
      }
    } finally {
      expect(await second.stop()).toBe(0);
    }
    const db = new Database(first.dbFile, { readonly: true });
    try {
      const row = db
        .prepare('SELECT count(*) AS n, count(DISTINCT id) AS d, count(DISTINCT seq) AS s FROM events')
        .get() as {
        n: number;
        d: number;
        s: number;
      };
      expect(row).toEqual({ n: BATCHES * PER_BATCH, d: BATCHES * PER_BATCH, s: BATCHES * PER_BATCH });
    } finally {
      db.close();
    }
  });
});
