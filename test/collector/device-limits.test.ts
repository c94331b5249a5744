/**
 * What one device token (or one source address) can make the collector do: per-device quotas on
 * events and bytes (429 GUARD_COLLECTOR_QUOTA_EXCEEDED + Retry-After, nothing of a refused batch
 * stored), an honest agent (real OutboxStore + CollectorClient + Shipper) that loses nothing
 * against a small quota, enroll attempts limited per source address (all attempts, and failed
 * ones much more), and the limiter itself under a fake monotonic clock.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sourceKey, TokenBucketLimiter } from '../../src/collector/rate-limit.js';
import { createRootLogger } from '../../src/common/logger.js';
import { CollectorClient } from '../../src/shipping/collector-client.js';
import { Shipper } from '../../src/shipping/shipper.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { OutboxStore } from '../../src/store/outbox-store.js';
import {
  blockedEvent,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  ndjson,
  spawnCollectorProcess,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

const logger = createRootLogger('silent');
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function collector(limits: Parameters<typeof startTestCollector>[0]): Promise<TestCollector> {
  const c = await startTestCollector(limits);
  cleanups.push(() => c.close());
  return c;
}

interface Answer {
  readonly status: number;
  readonly retryAfter: string | undefined;
  readonly body: Record<string, unknown>;
}

/** A POST over node:http, optionally from another loopback source address (127.0.0.2 …). */
function postFrom(
  url: string,
  path: string,
  body: string,
  headers: Record<string, string>,
  localAddress = '127.0.0.1',
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${path}`,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        localAddress,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => {
          text += s;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'],
            body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const postEvents = (url: string, token: string, events: readonly unknown[]) =>
  postFrom(url, '/v1/events', ndjson(events), {
    authorization: `Bearer ${token}`,
    'content-type': 'application/x-ndjson',
  });

const enroll = (url: string, id: string, secret: string, from = '127.0.0.1') =>
  postFrom(
    url,
    '/v1/enroll',
    JSON.stringify({
      enroll_secret: secret,
      device: { id, hostname: `${id}.test`, os: 'linux', agent_version: '0.1.0' },
    }),
    { 'content-type': 'application/json' },
    from,
  );

const codeOf = (a: Answer) => (a.body.error as { code?: string } | undefined)?.code;

async function metric(c: TestCollector, line: RegExp): Promise<number> {
  const text = await (await fetch(`${c.url}/metrics`)).text();
  const m = line.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Seconds since `t0` (monotonic), rounded up: an allowance refills while a slow machine runs the test. */
const secondsSince = (t0: number) => Math.ceil((performance.now() - t0) / 1000);

async function storedIds(c: TestCollector, device: string): Promise<string[]> {
  return (await c.collector.store.queryEvents({ deviceId: device, limit: 100_000 })).map(
    (r) => (JSON.parse(r.body) as { id: string }).id,
  );
}

describe('per-device quotas', () => {
  it('events: a batch past the quota gets 429 QUOTA_EXCEEDED + Retry-After and is not stored; other devices are not affected', async () => {
    // 10 events per hour: a refill of one event per 360 s, so the wall time of the test is noise
    const c = await collector({ limits: { quotaWindowS: 3600, quotaEvents: 10 } });
    const a = await enrollDevice(c.url, c.enrollSecret, 'dev-q-a');
    const b = await enrollDevice(c.url, c.enrollSecret, 'dev-q-b');
    const batch = (seq: number, n: number) =>
      Array.from({ length: n }, (_, i) => blockedEvent('dev-q-a', seq + i));

    const t0 = performance.now();
    const first = batch(1, 6);
    expect(await postEvents(c.url, a, first)).toMatchObject({ status: 200, body: { accepted: 6 } });
    const over = batch(7, 6);
    const refused = await postEvents(c.url, a, over);
    expect(refused.status).toBe(429);
    expect(codeOf(refused)).toBe('GUARD_COLLECTOR_QUOTA_EXCEEDED');
    // 2 events short at 10/3600 per s: 720 s, less what refilled since
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(720 - secondsSince(t0) - 1);
    expect(Number(refused.retryAfter)).toBeLessThanOrEqual(720);
    expect(await storedIds(c, 'dev-q-a')).toEqual(first.map((e) => e.id));

    // what is left of the quota is still usable, exactly
    const rest = batch(7, 4);
    expect(await postEvents(c.url, a, rest)).toMatchObject({ status: 200, body: { accepted: 4 } });
    // now empty: refused before the body is read (one event short: 360 s)
    const empty = await postEvents(c.url, a, batch(11, 1));
    expect(empty.status).toBe(429);
    expect(codeOf(empty)).toBe('GUARD_COLLECTOR_QUOTA_EXCEEDED');
    expect(Number(empty.retryAfter)).toBeGreaterThanOrEqual(360 - secondsSince(t0) - 1);
    expect(Number(empty.retryAfter)).toBeLessThanOrEqual(360);
    expect(await storedIds(c, 'dev-q-a')).toHaveLength(10);

    // another token has its own quota
    expect(await postEvents(c.url, b, [heartbeatEvent('dev-q-b', 1)])).toMatchObject({ status: 200 });
    expect(await metric(c, /toolguard_collector_quota_exceeded_total\{resource="events"\} (\d+)/)).toBe(2);
  });

  it('bytes: a batch larger than the whole quota passes from a full allowance, then the device waits (precheck on Content-Length)', async () => {
    const c = await collector({ limits: { quotaWindowS: 3600, quotaBytes: 4096 } });
    const a = await enrollDevice(c.url, c.enrollSecret, 'dev-q-bytes');
    const big = Array.from({ length: 12 }, (_, i) => blockedEvent('dev-q-bytes', i + 1));
    expect(Buffer.byteLength(ndjson(big))).toBeGreaterThan(4096);
    // never refused forever: an oversized batch goes through from a full allowance
    expect(await postEvents(c.url, a, big)).toMatchObject({ status: 200, body: { accepted: 12 } });
    const next = await postEvents(c.url, a, [blockedEvent('dev-q-bytes', 13)]);
    expect(next.status).toBe(429);
    expect(codeOf(next)).toBe('GUARD_COLLECTOR_QUOTA_EXCEEDED');
    // in debt by the overshoot plus this body: well over one window's share of a second
    expect(Number(next.retryAfter)).toBeGreaterThan(400);
    expect(await metric(c, /toolguard_collector_quota_exceeded_total\{resource="bytes"\} (\d+)/)).toBe(1);
    expect(await storedIds(c, 'dev-q-bytes')).toHaveLength(12);
  });

  it('an honest agent (OutboxStore + Shipper) against a small quota: every event arrives once, nothing set aside, 429s counted', async () => {
    // 60 events per second per device; the agent ships 25-event batches as fast as it may
    const c = await collector({ limits: { quotaWindowS: 1, quotaEvents: 60 } });
    const { db } = openDatabase(join(collectorTempDir(), 'agent.db'), { migrations: MIGRATIONS });
    cleanups.push(() => {
      db.close();
    });
    const outbox = new OutboxStore({
      db,
      deviceId: 'dev-q-agent',
      hostname: 'dev-q-agent.test',
      maxBytes: 64 * 1024 * 1024,
      logger,
    });
    const client = new CollectorClient({
      url: c.url,
      timeoutMs: 10_000,
      state: new StateStore(db),
      deviceId: 'dev-q-agent',
      hostname: 'dev-q-agent.test',
      os: 'linux test',
      enrollSecret: c.enrollSecret,
      logger,
    });
    cleanups.push(() => client.close());
    const shipper = new Shipper({
      outbox,
      client,
      batchMaxEvents: 25,
      batchMaxBytes: 1024 * 1024,
      intervalMs: 50,
      backoffMaxS: 1,
      logger,
    });
    cleanups.push(() => shipper.stop());
    const ids: string[] = [];
    for (let i = 0; i < 300; i++)
      ids.push((outbox.emit('agent.stopped', { reason: `q${i}` }) as { id: string }).id);
    shipper.start();
    await waitFor(() => outbox.depth() === 0, 'the outbox to drain against the quota', { timeoutMs: 60_000 });
    const stored = await storedIds(c, 'dev-q-agent');
    expect(stored.sort()).toEqual([...ids].sort());
    expect(shipper.status().set_aside).toBe(0);
    expect(shipper.status().shipped_total).toBe(300);
    expect(
      await metric(c, /toolguard_collector_quota_exceeded_total\{resource="events"\} (\d+)/),
    ).toBeGreaterThan(0);
    expect(
      await metric(c, /toolguard_collector_http_requests_total\{route="\/v1\/events",status="429"\} (\d+)/),
    ).toBeGreaterThan(0);
  });
});

describe('requests in flight per device token', () => {
  it('a token holding 8 slow bodies gets 429 RATE_LIMITED for a 9th; other tokens are served; released when they end', async () => {
    const c = await collector({ limits: { ratePerS: 1000, rateBurst: 1000 } });
    const slow = await enrollDevice(c.url, c.enrollSecret, 'dev-f-slow');
    const other = await enrollDevice(c.url, c.enrollSecret, 'dev-f-other');
    const held = Array.from({ length: 8 }, () => {
      const req = request(`${c.url}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${slow}`, 'content-type': 'application/x-ndjson' },
      });
      req.on('error', () => {});
      req.write('{"id":'); // chunked, never finished
      return req;
    });
    let seq = 0;
    const probe = (token: string, device: string) =>
      postEvents(c.url, token, [heartbeatEvent(device, ++seq)]);
    const refused = await waitFor(async () => {
      const a = await probe(slow, 'dev-f-slow');
      return a.status === 429 ? a : undefined;
    }, 'the 9th request of the slow token to be refused');
    expect(codeOf(refused)).toBe('GUARD_COLLECTOR_RATE_LIMITED');
    expect(refused.retryAfter).toBe('1');
    expect((await probe(other, 'dev-f-other')).status).toBe(200);
    for (const r of held) r.destroy();
    await waitFor(
      async () => (await probe(slow, 'dev-f-slow')).status === 200,
      'the slow token to be served again',
    );
  });
});

describe('enroll attempts per source address', () => {
  it('wrong secrets: 403 up to the failure burst, then 429 ENROLL_RATE_LIMITED for every attempt from that address; other addresses enroll', async () => {
    const c = await collector({ limits: { enrollFailureBurst: 2, enrollFailuresPerHour: 1 } });
    const t0 = performance.now();
    for (let i = 0; i < 2; i++) {
      const r = await enroll(c.url, 'dev-e-guess', `wrong-secret-${i}-xxxxxxxx`);
      expect(r.status).toBe(403);
      expect(codeOf(r)).toBe('GUARD_COLLECTOR_ENROLL_DENIED');
    }
    const limited = await enroll(c.url, 'dev-e-guess', 'wrong-secret-3-xxxxxxxx');
    expect(limited.status).toBe(429);
    expect(codeOf(limited)).toBe('GUARD_COLLECTOR_ENROLL_RATE_LIMITED');
    // one failure per hour: the next is allowed in ≤ 3600 s
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(3600 - secondsSince(t0) - 1);
    expect(Number(limited.retryAfter)).toBeLessThanOrEqual(3600);
    // the guessing address cannot enroll now even with the right secret (no oracle, no bypass)
    const right = await enroll(c.url, 'dev-e-guess', c.enrollSecret);
    expect(right.status).toBe(429);
    expect(codeOf(right)).toBe('GUARD_COLLECTOR_ENROLL_RATE_LIMITED');
    // an honest machine elsewhere enrolls
    const honest = await enroll(c.url, 'dev-e-honest', c.enrollSecret, '127.0.0.2');
    expect(honest.status).toBe(200);
    expect(typeof honest.body.device_token).toBe('string');
    expect(await metric(c, /toolguard_collector_enroll_rate_limited_total\{reason="failures"\} (\d+)/)).toBe(
      2,
    );
  });

  it('all attempts: past the burst, 429 + Retry-After; an agent reads it as "retry later" with that delay', async () => {
    const c = await collector({ limits: { enrollBurst: 3, enrollPerMin: 1 } });
    const t0 = performance.now();
    for (let i = 0; i < 3; i++)
      expect((await enroll(c.url, `dev-e-ok-${i}`, c.enrollSecret)).status).toBe(200);
    const limited = await enroll(c.url, 'dev-e-ok-3', c.enrollSecret);
    expect(limited.status).toBe(429);
    expect(codeOf(limited)).toBe('GUARD_COLLECTOR_ENROLL_RATE_LIMITED');
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(Math.max(1, 60 - secondsSince(t0) - 1));
    expect(Number(limited.retryAfter)).toBeLessThanOrEqual(60);
    expect(await metric(c, /toolguard_collector_enroll_rate_limited_total\{reason="attempts"\} (\d+)/)).toBe(
      1,
    );

    const { db } = openDatabase(join(collectorTempDir(), 'agent.db'), { migrations: MIGRATIONS });
    cleanups.push(() => {
      db.close();
    });
    const client = new CollectorClient({
      url: c.url,
      timeoutMs: 10_000,
      state: new StateStore(db),
      deviceId: 'dev-e-agent',
      hostname: 'dev-e-agent.test',
      enrollSecret: c.enrollSecret,
      logger,
    });
    cleanups.push(() => client.close());
    const r = await client.enroll();
    expect(r).toMatchObject({ kind: 'retry_later', status: 429 });
    expect((r as { retryAfterS: number }).retryAfterS).toBeGreaterThanOrEqual(
      Math.max(1, 60 - secondsSince(t0) - 1),
    );
    // from another address the same agent enrolls
    expect((await enroll(c.url, 'dev-e-agent', c.enrollSecret, '127.0.0.3')).status).toBe(200);
  });

  it('source keys: IPv4 as is (also IPv4-mapped), IPv6 by its /64', () => {
    const table: [string | undefined, string][] = [
      ['127.0.0.1', '127.0.0.1'],
      ['::ffff:10.1.2.3', '10.1.2.3'],
      ['::1', '0:0:0:0::/64'],
      ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
      ['2001:db8:1:2::99', '2001:db8:1:2::/64'],
      ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
      ['2001:db8::1', '2001:db8:0:0::/64'],
      ['fe80::1%eth0', 'fe80:0:0:0::/64'],
      [undefined, 'unknown'],
    ];
    for (const [addr, key] of table) expect(sourceKey(addr), String(addr)).toBe(key);
  });
});

describe('guard-collector settings', () => {
  it('--quota-events and --enroll-failure-burst reach the running program', async () => {
    const p = await spawnCollectorProcess({ args: ['--quota-events', '3', '--enroll-failure-burst', '1'] });
    cleanups.push(() => p.kill());
    const token = await enrollDevice(p.url, p.enrollSecret, 'dev-s-q');
    const events = Array.from({ length: 3 }, (_, i) => heartbeatEvent('dev-s-q', i + 1));
    expect((await postEvents(p.url, token, events)).status).toBe(200);
    const over = await postEvents(p.url, token, [heartbeatEvent('dev-s-q', 4)]);
    expect(over.status).toBe(429);
    expect(codeOf(over)).toBe('GUARD_COLLECTOR_QUOTA_EXCEEDED');
    expect(Number(over.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(codeOf(await enroll(p.url, 'dev-s-g', 'wrong-secret-xxxxxxxxxxxx'))).toBe(
      'GUARD_COLLECTOR_ENROLL_DENIED',
    );
    const limited = await enroll(p.url, 'dev-s-g', 'wrong-secret-xxxxxxxxxxxx');
    expect(limited.status).toBe(429);
    expect(codeOf(limited)).toBe('GUARD_COLLECTOR_ENROLL_RATE_LIMITED');
  });
});

describe('TokenBucketLimiter (fake monotonic clock)', () => {
  it('several dimensions: all or nothing, Retry-After of the slowest, oversized costs from a full bucket run into debt', () => {
    let now = 0;
    const l = new TokenBucketLimiter({
      buckets: [
        { capacity: 10, refillPerS: 1 },
        { capacity: 1000, refillPerS: 10 },
      ],
      now: () => now,
    });
    expect(l.take('k', [5, 900])).toEqual({ allowed: true });
    // events would fit (5 left), bytes would not (100 left, 200 asked): nothing is taken
    expect(l.take('k', [5, 200])).toEqual({ allowed: false, retryAfterS: 10, dimension: 1 });
    expect(l.check('k', [5, 100])).toEqual({ allowed: true });
    expect(l.take('k', [5, 100])).toEqual({ allowed: true });
    // both short: the first refusing dimension is named, the wait is the longest
    expect(l.check('k', [3, 600])).toEqual({ allowed: false, retryAfterS: 60, dimension: 0 });
    now += 60_000;
    // larger than the capacity: needs a full bucket, then goes into debt
    expect(l.take('k', [1, 5000])).toEqual({ allowed: false, retryAfterS: 40, dimension: 1 });
    now += 40_000;
    expect(l.take('k', [1, 5000])).toEqual({ allowed: true });
    expect(l.check('k', [1, 1])).toEqual({ allowed: false, retryAfterS: 401, dimension: 1 });
    now += 401_000;
    expect(l.take('k', [1, 1])).toEqual({ allowed: true });
  });

  it('bounded: past maxKeys new keys share one overflow allowance; full buckets are forgotten', () => {
    let now = 0;
    const l = new TokenBucketLimiter({
      buckets: [{ capacity: 2, refillPerS: 1 }],
      maxKeys: 3,
      now: () => now,
    });
    for (const k of ['a', 'b', 'c']) expect(l.take(k).allowed).toBe(true);
    expect(l.size).toBe(3);
    // the table is full (no bucket refilled yet): x and y share the overflow bucket
    expect(l.take('x').allowed).toBe(true);
    expect(l.take('y').allowed).toBe(true);
    expect(l.take('z')).toEqual({ allowed: false, retryAfterS: 1, dimension: 0 });
    expect(l.size).toBe(4);
    now += 2_000;
    l.prune();
    expect(l.size).toBe(0);
    expect(l.take('z').allowed).toBe(true);
  });
});
