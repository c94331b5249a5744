/**
 * Forwarders: the NDJSON file sink (rotation, keep N, every event once) and the Splunk HEC sink
 * against a small HEC-compatible receiver (node:http on 127.0.0.1) that fails, stalls and recovers.
 * A stalled SIEM must not slow ingest; after recovery every event arrives.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_FORWARD_BATCH_BYTES, ForwarderRunner } from '../../src/collector/forwarders/forwarder.js';
import { CollectorMetrics } from '../../src/collector/metrics.js';
import { SqliteCollectorStore } from '../../src/collector/store/sqlite-store.js';
import { createRootLogger } from '../../src/common/logger.js';
import {
  blockedEvent,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  ndjson,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { validateEcs } from '../helpers/ecs-validator.js';
import { HecReceiver, isPoisoned } from '../helpers/hec-receiver.js';
import { ocsf180 } from '../helpers/ocsf-validator.js';
import { waitFor } from '../helpers/wait.js';

async function post(c: TestCollector, token: string, events: Record<string, unknown>[]): Promise<Response> {
  return fetch(`${c.url}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(events),
  });
}

describe('NDJSON file sink', () => {
  const dir = collectorTempDir('tg-ndj-');
  const out = join(dir, 'out', 'events.ndjson');
  let c: TestCollector;
  let token: string;
  const MAX = 8 * 1024;

  beforeAll(async () => {
    c = await startTestCollector({
      forwarders: { ndjson: { file: out, maxBytes: MAX, keep: 5 }, backoffInitialMs: 20 },
    });
    token = await enrollDevice(c.url, c.enrollSecret, 'dev-ndj');
  });
  afterAll(async () => {
    await c.close();
  });

  function linesOf(file: string): Record<string, unknown>[] {
    return existsSync(file)
      ? readFileSync(file, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l))
      : [];
  }

  it('writes every stored event once, as received, rotating by size into .1 … .N', async () => {
    const events = Array.from({ length: 30 }, (_, i) =>
      i % 3 ? heartbeatEvent('dev-ndj', i + 1) : blockedEvent('dev-ndj', i + 1),
    );
    for (let i = 0; i < 30; i += 10) expect((await post(c, token, events.slice(i, i + 10))).status).toBe(200);
    // a replay is not forwarded again
    expect(await (await post(c, token, events.slice(0, 10))).json()).toEqual({ accepted: 0, duplicates: 10 });
    const files = [out, ...[1, 2, 3, 4, 5].map((n) => `${out}.${n}`)];
    const all = await waitFor(() => {
      const lines = files.flatMap(linesOf);
      return lines.length >= 30 ? lines : undefined;
    }, 'all 30 events in the NDJSON files');
    expect(all.map((e) => e.id).sort()).toEqual(events.map((e) => e.id).sort());
    expect(existsSync(`${out}.1`)).toBe(true);
    for (const f of files) if (existsSync(f)) expect(statSync(f).size).toBeLessThanOrEqual(MAX);
    // the live file holds the newest events; rotated files are older
    const live = linesOf(out).map((e) => e.seq as number);
    const first = linesOf(`${out}.1`).map((e) => e.seq as number);
    expect(Math.min(...live)).toBeGreaterThan(Math.max(...first));
    // the cursor moves only after the write was fsynced, i.e. just after the lines appear
    await waitFor(
      async () => (await c.collector.store.forwarderLag('ndjson')) === 0,
      'the NDJSON cursor to reach the last event',
    );
  });

  it('starts a new file when the live one was moved away by someone else', async () => {
    const { renameSync } = await import('node:fs');
    renameSync(out, `${out}.moved`);
    const ev = heartbeatEvent('dev-ndj', 1000);
    expect((await post(c, token, [ev])).status).toBe(200);
    const line = await waitFor(() => (existsSync(out) ? linesOf(out)[0] : undefined), 'a new live file');
    expect(line?.id).toBe(ev.id);
  });

  it('keeps only `keep` rotated files', async () => {
    const dir2 = collectorTempDir('tg-ndk-');
    const out2 = join(dir2, 'e.ndjson');
    const c2 = await startTestCollector({ forwarders: { ndjson: { file: out2, maxBytes: 4096, keep: 1 } } });
    try {
      const t = await enrollDevice(c2.url, c2.enrollSecret, 'dev-keep');
      for (let i = 0; i < 4; i++)
        await post(
          c2,
          t,
          Array.from({ length: 10 }, (_, j) => heartbeatEvent('dev-keep', i * 10 + j + 1)),
        );
      await waitFor(
        async () => (await c2.collector.store.forwarderLag('ndjson')) === 0,
        'the sink to catch up',
      );
      expect(existsSync(`${out2}.1`)).toBe(true);
      expect(existsSync(`${out2}.2`)).toBe(false);
    } finally {
      await c2.close();
    }
  });
});

describe('OCSF output', () => {
  it('writes OCSF 1.8.0 that validates against the released schema (a kill is Process Remediation, class 7003)', async () => {
    const out = join(collectorTempDir('tg-ocsf-'), 'ocsf.ndjson');
    const c = await startTestCollector({
      forwarders: { ndjson: { file: out, maxBytes: 1024 * 1024, keep: 1, format: 'ocsf' } },
    });
    try {
      const t = await enrollDevice(c.url, c.enrollSecret, 'dev-ocsf');
      const ev = blockedEvent('dev-ocsf', 1);
      expect((await post(c, t, [ev, heartbeatEvent('dev-ocsf', 2)])).status).toBe(200);
      const lines = await waitFor(() => {
        const l = existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean) : [];
        return l.length >= 2 ? l : undefined;
      }, 'the two OCSF lines');
      const parsed = lines.map(
        (l) => JSON.parse(l) as { class_uid: number; metadata: { uid: string }; device: { uid: string } },
      );
      const o = parsed.find((p) => p.metadata.uid === ev.id);
      expect(o?.class_uid).toBe(7003);
      expect(o?.device.uid).toBe('dev-ocsf');
      for (const line of lines) expect(ocsf180().validate(JSON.parse(line)).errors).toEqual([]);
    } finally {
      await c.close();
    }
  });
});

describe('ECS output', () => {
  it('writes ECS documents that validate against the @elastic/ecs field definitions, to the file and to HEC', async () => {
    const out = join(collectorTempDir('tg-ecs-'), 'ecs.ndjson');
    const hec = new HecReceiver();
    await hec.start();
    const c = await startTestCollector({
      forwarders: {
        ndjson: { file: out, maxBytes: 1024 * 1024, keep: 1, format: 'ecs' },
        splunkHec: { url: hec.url, token: hec.token, format: 'ecs' },
      },
    });
    try {
      const t = await enrollDevice(c.url, c.enrollSecret, 'dev-ecs');
      const events = [blockedEvent('dev-ecs', 1), heartbeatEvent('dev-ecs', 2)];
      expect((await post(c, t, events)).status).toBe(200);
      const lines = await waitFor(() => {
        const l = existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean) : [];
        return l.length >= 2 ? l : undefined;
      }, 'the two ECS lines');
      await waitFor(() => hec.events.length >= 2, 'the two ECS events at HEC');
      const fromFile = lines.map((l) => JSON.parse(l) as { event: { id: string; kind: string } });
      const fromHec = hec.events.map((e) => e.event as { event: { id: string; kind: string } });
      for (const docs of [fromFile, fromHec]) {
        expect(docs.map((d) => d.event.id)).toEqual(events.map((e) => e.id));
        expect(docs.map((d) => d.event.kind)).toEqual(['alert', 'metric']);
        for (const d of docs) expect(validateEcs(d)).toEqual([]);
      }
    } finally {
      await c.close();
      await hec.close();
    }
  });
});

describe('Splunk HEC sink', () => {
  const hec = new HecReceiver({ poison: isPoisoned });
  const HEC_TOKEN = hec.token;
  let c: TestCollector;
  let token: string;

  beforeAll(async () => {
    await hec.start();
    c = await startTestCollector({
      forwarders: {
        splunkHec: { url: hec.url, token: HEC_TOKEN, sourcetype: 'toolguard:test', timeoutMs: 60_000 },
        backoffInitialMs: 20,
        backoffMaxMs: 200,
      },
    });
    token = await enrollDevice(c.url, c.enrollSecret, 'dev-hec');
  });
  afterAll(async () => {
    await c.close();
    await hec.close();
  });

  it('posts batched HEC events with the Splunk token to /services/collector/event', async () => {
    const events = [blockedEvent('dev-hec', 1), heartbeatEvent('dev-hec', 2)];
    expect((await post(c, token, events)).status).toBe(200);
    await waitFor(() => hec.events.length >= 2, 'HEC to receive 2 events');
    expect(hec.requests[0]?.path).toBe('/services/collector/event');
    expect(hec.requests[0]?.authorization).toBe(`Splunk ${HEC_TOKEN}`);
    expect(hec.requests[0]?.contentEncoding).toBe('gzip');
    const first = hec.events[0] as {
      time: number;
      host: string;
      source: string;
      sourcetype: string;
      event: { id: string };
    };
    // HEC host: the device id ingest checked against the token, not the hostname the event claims
    expect(first).toMatchObject({ host: 'dev-hec', source: 'toolguard', sourcetype: 'toolguard:test' });
    expect(first.time).toBeCloseTo(Date.parse(events[0]?.time as string) / 1000, 3);
    expect(first.event).toEqual(events[0]);
  });

  it('retries while HEC fails, then delivers every event exactly once', async () => {
    hec.down = true;
    const before = hec.events.length;
    const failedBefore = hec.requests.length;
    const events = Array.from({ length: 50 }, (_, i) => heartbeatEvent('dev-hec', 100 + i));
    expect((await post(c, token, events)).status).toBe(200);
    await waitFor(() => hec.requests.length >= failedBefore + 3, 'at least 3 failed HEC attempts');
    hec.down = false;
    await waitFor(() => hec.events.length >= before + 50, 'HEC to receive the 50 events');
    const got = hec.events.slice(before).map((e) => (e.event as { id: string }).id);
    expect(got).toEqual(events.map((e) => e.id));
    expect(
      await c.collector.metrics.get('forward_errors_total', { sink: 'splunk-hec' }),
    ).toBeGreaterThanOrEqual(3);
  });

  it('isolates and drops only an event HEC refuses as data (code 6); retries setup errors (code 7)', async () => {
    hec.refuse = { status: 400, code: 7, text: 'Incorrect index' };
    const before = hec.events.length;
    const errorsBefore = await c.collector.metrics.get('forward_errors_total', { sink: 'splunk-hec' });
    const poison: Record<string, unknown> = { ...heartbeatEvent('dev-hec', 300), hostname: 'poison.test' };
    const events = [
      ...Array.from({ length: 6 }, (_, i) => heartbeatEvent('dev-hec', 301 + i)),
      poison,
      ...Array.from({ length: 5 }, (_, i) => heartbeatEvent('dev-hec', 310 + i)),
    ];
    expect((await post(c, token, events)).status).toBe(200);
    await waitFor(
      async () =>
        (await c.collector.metrics.get('forward_errors_total', { sink: 'splunk-hec' })) >= errorsBefore + 2,
      'setup errors to be retried',
    );
    expect(await c.collector.metrics.get('forward_dropped_total', { sink: 'splunk-hec' })).toBe(0);
    hec.refuse = null;
    await waitFor(() => hec.events.length >= before + 11, 'the 11 good events');
    const got = hec.events.slice(before).map((e) => (e.event as { id: string }).id);
    expect(got).toEqual(events.filter((e) => e !== poison).map((e) => e.id));
    // the runner counts the drop when the delivery returns, i.e. when the cursor moves
    await waitFor(
      async () => (await c.collector.store.forwarderLag('splunk-hec')) === 0,
      'the cursor past the poison',
    );
    expect(await c.collector.metrics.get('forward_dropped_total', { sink: 'splunk-hec' })).toBe(1);
    expect(await c.collector.metrics.get('forward_dead_letter_total', { sink: 'splunk-hec' })).toBe(1);
  });

  it('a stalled SIEM does not slow ingest; everything arrives after it recovers', async () => {
    hec.stall = true;
    const before = hec.events.length;
    expect((await post(c, token, [heartbeatEvent('dev-hec', 500)])).status).toBe(200);
    await waitFor(() => hec.stalledCount >= 1, 'HEC to hold a request');
    // ingest keeps answering while the sink is stuck
    for (let i = 0; i < 10; i++) {
      const r = await post(
        c,
        token,
        Array.from({ length: 20 }, (_, j) => heartbeatEvent('dev-hec', 1000 + i * 20 + j)),
      );
      expect(await r.json()).toEqual({ accepted: 20, duplicates: 0 });
    }
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/toolguard_collector_forwarder_lag_events\{sink="splunk-hec"\} [1-9]/);
    hec.stall = false;
    hec.release();
    await waitFor(() => hec.events.length >= before + 201, 'HEC to receive all 201 events');
    const ids = hec.events.map((e) => (e.event as { id: string }).id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('shutting down does not wait for a stalled SIEM (the batch stays in the outbox)', async () => {
    hec.stall = true;
    expect((await post(c, token, [heartbeatEvent('dev-hec', 5000)])).status).toBe(200);
    await waitFor(() => hec.stalledCount >= 1, 'HEC to hold a request');
    expect(await c.collector.store.forwarderLag('splunk-hec')).toBeGreaterThan(0);
    await c.close(); // bounded by the test timeout; the 60 s HEC timeout is not waited for
  });
});

describe('ForwarderRunner batches', () => {
  it('bounds a delivery by bytes as well as by count: large events are not read 500 at a time', async () => {
    const dir = collectorTempDir('tg-fwdbytes-');
    const port = new SqliteCollectorStore({ file: join(dir, 'c.db') });
    const store = port.engine;
    // 120 events of ~200 KiB (the collector accepts lines up to 256 KiB): ~24 MiB in all
    const pad = 'p'.repeat(200 * 1024);
    store.insertGroup([
      {
        deviceId: 'dev-big',
        enrollment: 1,
        receivedAt: new Date().toISOString(),
        events: Array.from({ length: 120 }, (_, i) => {
          const e: Record<string, unknown> = { ...blockedEvent('dev-big', i + 1), pad };
          return {
            id: e.id as string,
            seq: i + 1,
            type: 'process.blocked',
            time: e.time as string,
            ruleId: 'claude-code',
            agentVersion: '0.1.0',
            policyVersion: null,
            coverage: null,
            tags: null,
            outboxDepth: null,
            droppedTotal: null,
            policyState: null,
            policyError: null,
            user: null,
            body: JSON.stringify(e),
          };
        }),
      },
    ]);
    const batches: number[] = [];
    const seen = new Set<number>();
    const runner = new ForwarderRunner({
      sink: {
        name: 'capture',
        async deliver(rows) {
          batches.push(rows.reduce((n, r) => n + r.body.length, 0));
          for (const r of rows) seen.add(r.rid);
          return undefined;
        },
        async close() {},
      },
      store: port,
      logger: createRootLogger('silent'),
      metrics: new CollectorMetrics(),
    });
    runner.start();
    await waitFor(() => seen.size === 120, 'every event delivered');
    await runner.stop();
    await port.close();
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches) expect(b).toBeLessThanOrEqual(DEFAULT_FORWARD_BATCH_BYTES + 256 * 1024);
  });
});
