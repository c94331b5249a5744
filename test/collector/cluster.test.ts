/**
 * Several collectors on one PostgreSQL database, as real processes (dist/, like the packaged
 * program): three guard-collector processes share a throwaway server; HTTP clients posting real
 * agent batches enroll on one collector and post round-robin to all; one collector is SIGKILLed
 * while it takes batches, another (the one holding the forwarding claim) while its NDJSON
 * forwarder writes. Clients re-send a batch whose
 * answer they did not get to the next collector (what an agent does). In the end every event is
 * stored once, and the NDJSON files of the three collectors together hold every stored event —
 * checked line by line — each once, except the one unacknowledged batch a killed collector may
 * have been writing when it died (at-least-once across a crash, never lost).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  blockedEvent,
  type CollectorProcess,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  postEvents,
  spawnCollectorProcess,
} from '../helpers/collector.js';
import { startTestPostgres } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const DEVICES = 12;
const BATCHES_PER_DEVICE = 16;
const EVENTS_PER_BATCH = 50;
/** The forwarder's batch: the most a collector killed mid-delivery can leave unacknowledged. */
const FORWARD_BATCH = 500;

const procs: CollectorProcess[] = [];
afterAll(async () => {
  for (const p of procs) await p.kill();
});

function lines(file: string): string[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  // a SIGKILL in the middle of a write may leave a torn last line (the sink cuts it off at its next
  // open; a killed collector here never opens it again): not an event
  const whole = text.endsWith('\n') ? text : text.slice(0, text.lastIndexOf('\n') + 1);
  return whole.split('\n').filter((l) => l !== '');
}
const size = (file: string): number => (existsSync(file) ? statSync(file).size : 0);

describe('a collector on PostgreSQL refuses to start', () => {
  it('on a database of a newer schema (exit 11, GUARD_STORE_SCHEMA_NEWER), and on an unreachable server (GUARD_STORE_UNAVAILABLE)', async () => {
    const server = await startTestPostgres();
    const url = await server.createDatabase();
    const dir = collectorTempDir('tg-cluster-');
    const first = await spawnCollectorProcess({ dbFile: join(dir, 'unused.db'), args: ['--store-url', url] });
    expect(await first.stop()).toBe(0);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query('UPDATE collector_schema SET version = version + 1');
    await db.end();
    const refused = await spawnCollectorProcess({
      dbFile: join(dir, 'unused.db'),
      args: ['--store-url', url],
    }).then(
      () => null,
      (e: Error) => e.message,
    );
    expect(refused).toMatch(/exited 11: .*newer than this collector.*\[GUARD_STORE_SCHEMA_NEWER\]/s);
    await server.stop();
    const gone = await spawnCollectorProcess({
      dbFile: join(dir, 'unused.db'),
      args: ['--store-url', url],
    }).then(
      () => null,
      (e: Error) => e.message,
    );
    expect(gone).toMatch(/exited 1: .*\[GUARD_STORE_UNAVAILABLE\]/s);
    expect(gone).not.toMatch(/password/i);
  });
});

describe('three collectors on one PostgreSQL', () => {
  it('stores every event once and forwards it once across the cluster, through a kill mid-ingest and one mid-forward', async () => {
    const server = await startTestPostgres();
    const url = await server.createDatabase();
    const dir = collectorTempDir('tg-cluster-');
    const enrollSecret = 'cluster-enroll-secret-0123456789';
    const adminToken = 'cluster-admin-token-0123456789ab';
    const outs = [0, 1, 2].map((i) => join(dir, `c${i}.ndjson`));
    for (const out of outs)
      procs.push(
        await spawnCollectorProcess({
          enrollSecret,
          adminToken,
          dbFile: join(dir, 'unused.db'),
          args: [
            '--store-url',
            url,
            '--ndjson-out',
            out,
            '--ndjson-max-bytes',
            String(1024 * 1024 * 1024),
            '--rate-limit',
            '10000',
            '--rate-burst',
            '10000',
            '--ingest-workers',
            '0',
          ],
        }),
      );
    const [c0, c1, c2] = procs as [CollectorProcess, CollectorProcess, CollectorProcess];
    const alive = new Set<CollectorProcess>(procs);
    const answered = new Map<CollectorProcess, number>(procs.map((p) => [p, 0]));

    // every device enrolls on one collector…
    const tokens: string[] = [];
    for (let d = 0; d < DEVICES; d++)
      tokens.push(await enrollDevice((procs[d % 3] as CollectorProcess).url, enrollSecret, `dev-c${d}`));

    /** Posts one batch, to the next collector in turn; re-sends it to the next one until answered. */
    const sent: string[] = [];
    let turn = 0;
    async function post(token: string, batch: Record<string, unknown>[]): Promise<void> {
      for (let attempt = 0; attempt < 50; attempt++) {
        const target = procs[turn++ % 3] as CollectorProcess;
        if (!alive.has(target)) continue;
        try {
          const r = await postEvents(target.url, token, batch);
          if (r.status === 200) {
            const body = (await r.json()) as { accepted: number; duplicates: number };
            expect(body.accepted + body.duplicates).toBe(batch.length);
            answered.set(target, (answered.get(target) ?? 0) + 1);
            return;
          }
          await r.arrayBuffer(); // 503 from a collector shutting down: next one
        } catch {
          // the collector died with the request in flight: the answer is lost, re-send elsewhere
        }
      }
      throw new Error('no collector took the batch');
    }
    // …and posts to all of them, round-robin
    const clients = tokens.map(async (token, d) => {
      const id = `dev-c${d}`;
      for (let b = 0; b < BATCHES_PER_DEVICE; b++) {
        const batch = Array.from({ length: EVENTS_PER_BATCH }, (_, i) => {
          const seq = b * EVENTS_PER_BATCH + i + 1;
          return i % 10 === 0 ? heartbeatEvent(id, seq) : blockedEvent(id, seq);
        });
        await post(token, batch);
        for (const e of batch) sent.push(`${id}/${e.id as string}`);
      }
    });
    const done = Promise.all(clients);

    // kill c1 while it is taking batches (it has answered some; clients keep posting to it)
    await waitFor(() => (answered.get(c1) ?? 0) >= 10, 'collector 1 to answer 10 batches');
    alive.delete(c1);
    await c1.kill();
    // kill a collector while its forwarder writes: whichever of the two left holds the claim now
    // (its NDJSON file grows after c1's death) is killed; the other one survives
    const before = [size(outs[0] as string), size(outs[2] as string)];
    const grown = await waitFor(
      () =>
        size(outs[0] as string) > (before[0] as number)
          ? 0
          : size(outs[2] as string) > (before[1] as number)
            ? 2
            : undefined,
      "a collector's NDJSON file to grow",
    );
    const victim = procs[grown] as CollectorProcess;
    const survivor = grown === 0 ? c2 : c0;
    alive.delete(victim);
    await victim.kill();
    await done;

    const total = DEVICES * BATCHES_PER_DEVICE * EVENTS_PER_BATCH;
    expect(new Set(sent).size).toBe(total);
    // stored once each: count and no (device, id) twice
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      const stored = await db.query<{ device_id: string; id: string }>('SELECT device_id, id FROM events');
      expect(stored.rows.length).toBe(total);
      expect(new Set(stored.rows.map((r) => `${r.device_id}/${r.id}`))).toEqual(new Set(sent));
    } finally {
      await db.end();
    }

    // the survivor forwards whatever the dead ones left: every stored event is in some file
    const forwarded = (): string[] =>
      outs.flatMap((f) =>
        lines(f).map((l) => {
          const e = JSON.parse(l) as { device_id: string; id: string };
          return `${e.device_id}/${e.id}`;
        }),
      );
    await waitFor(() => new Set(forwarded()).size === total, 'every event to be forwarded', {
      timeoutMs: 30_000,
    });
    // once: never twice in one file, and a copy beyond the first only within the last
    // unacknowledged batch of a killed collector's file (a batch a collector died delivering is
    // delivered again by the next claimant, which may die delivering it too)
    const keysOf = (f: string): string[] =>
      lines(f).map((l) => {
        const e = JSON.parse(l) as { device_id: string; id: string };
        return `${e.device_id}/${e.id}`;
      });
    for (const f of outs) expect(new Set(keysOf(f)).size, `${f} holds an event twice`).toBe(keysOf(f).length);
    const tails = [outs[1] as string, outs[grown] as string].map(
      (f) => new Set(keysOf(f).slice(-FORWARD_BATCH)),
    );
    const count = new Map<string, number>();
    for (const k of forwarded()) count.set(k, (count.get(k) ?? 0) + 1);
    let extra = 0;
    for (const [k, n] of count) {
      if (n === 1) continue;
      extra += n - 1;
      const inTails = tails.filter((t) => t.has(k)).length;
      expect(
        n - 1,
        `${k} forwarded ${n} times, in ${inTails} killed collectors' last batches`,
      ).toBeLessThanOrEqual(inTails);
    }
    expect(extra).toBeLessThanOrEqual(2 * FORWARD_BATCH);
    expect(lines(outs[survivor === c0 ? 0 : 2] as string).length).toBeGreaterThan(0);
    // the survivor answers for the whole fleet
    const res = await fetch(`${survivor.url}/v1/devices?limit=100`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(((await res.json()) as { devices: unknown[] }).devices).toHaveLength(DEVICES);
    expect(await survivor.stop()).toBe(0);
  });
});

describe('a device enrolled again through another collector', () => {
  it('its old token is refused at once by every collector, also by one that had it cached', async () => {
    const server = await startTestPostgres();
    const url = await server.createDatabase();
    const dir = collectorTempDir('tg-cluster-');
    const enrollSecret = 'cluster-enroll-secret-0123456789';
    const pair: CollectorProcess[] = [];
    for (const _ of [0, 1]) {
      const p = await spawnCollectorProcess({
        enrollSecret,
        dbFile: join(dir, 'unused.db'),
        args: ['--store-url', url],
      });
      procs.push(p);
      pair.push(p);
    }
    const [a, b] = pair as [CollectorProcess, CollectorProcess];
    const oldToken = await enrollDevice(a.url, enrollSecret, 'dev-reenroll');
    // both collectors have checked (and cached) the old token
    expect((await postEvents(a.url, oldToken, [heartbeatEvent('dev-reenroll', 1)])).status).toBe(200);
    expect((await postEvents(b.url, oldToken, [heartbeatEvent('dev-reenroll', 2)])).status).toBe(200);
    const newToken = await enrollDevice(b.url, enrollSecret, 'dev-reenroll');
    // A never saw the enrollment: its insert refuses the replaced token all the same
    for (const c of [a, b, a]) {
      const r = await postEvents(c.url, oldToken, [blockedEvent('dev-reenroll', 3)]);
      expect(r.status).toBe(401);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe(
        'GUARD_COLLECTOR_UNAUTHORIZED',
      );
    }
    for (const c of [a, b])
      expect((await postEvents(c.url, newToken, [heartbeatEvent('dev-reenroll', 4)])).status).toBe(200);
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    const rows = await db.query<{ enrollment: number; seq: string }>(
      `SELECT enrollment, seq::text FROM events WHERE device_id = 'dev-reenroll' ORDER BY seq`,
    );
    await db.end();
    expect(rows.rows.map((r) => [r.enrollment, Number(r.seq)])).toEqual([
      [1, 1],
      [1, 2],
      [2, 4],
      [2, 4],
    ]);
    for (const p of pair) expect(await p.stop()).toBe(0);
    await server.stop();
  });
});
