import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { createRootLogger } from '../../src/common/logger.js';
import { CollectorClient, STATE_DEVICE_TOKEN } from '../../src/shipping/collector-client.js';
import { Shipper, type ShipperOptions } from '../../src/shipping/shipper.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { OutboxStore } from '../../src/store/outbox-store.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { FakeCollector } from './fake-collector.js';

const logger = createRootLogger('silent');
const dir = tempDir('tg-ship-');
let n = 0;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: Partial<ShipperOptions> & { timeoutMs?: number; urgent?: boolean } = {}) {
  const fake = await new FakeCollector().start();
  cleanups.push(() => fake.stop());
  const { db } = openDatabase(join(dir, `a${++n}.db`), { migrations: MIGRATIONS });
  cleanups.push(() => {
    db.close();
  });
  const state = new StateStore(db);
  let shipper: Shipper | null = null;
  const outbox = new OutboxStore({
    db,
    deviceId: 'dev-1',
    hostname: 'h',
    maxBytes: 64 * 1024 * 1024,
    logger,
    onUrgent: opts.urgent ? () => void shipper?.flushNow() : undefined,
  });
  const client = new CollectorClient({
    url: fake.url,
    timeoutMs: opts.timeoutMs ?? 5000,
    state,
    deviceId: 'dev-1',
    hostname: 'h',
    os: 'linux test',
    enrollSecret: () => 'sekret',
    logger,
  });
  cleanups.push(() => client.close());
  shipper = new Shipper({
    outbox,
    client,
    batchMaxEvents: 100,
    batchMaxBytes: 1024 * 1024,
    intervalMs: 3_600_000,
    backoffMaxS: 1,
    logger,
    ...opts,
  });
  const s = shipper;
  cleanups.push(() => s.stop());
  const emit = (k: number) => {
    const ids: string[] = [];
    for (let i = 0; i < k; i++)
      ids.push((outbox.emit('agent.stopped', { reason: `r${i}` }) as { id: string }).id);
    return ids;
  };
  return { fake, outbox, client, shipper: s, state, emit };
}

describe('Shipper', () => {
  test('enrolls on first use, ships everything once, acks only after the answer', async () => {
    const { fake, outbox, shipper, emit, client } = await setup();
    const ids = emit(250);
    expect(client.enrolled()).toBe(false);
    await shipper.flushNow();
    expect(fake.enrollCount).toBe(1);
    expect([...fake.stored.keys()].sort()).toEqual([...ids].sort());
    expect(fake.duplicateCount).toBe(0);
    expect(outbox.depth()).toBe(0);
    expect(outbox.status().history_depth).toBe(250);
    const eventReqs = fake.requests.filter((r) => r.path === '/v1/events' && r.auth);
    expect(eventReqs.map((r) => r.events.length)).toEqual([100, 100, 50]);
    expect(shipper.status()).toMatchObject({ enrolled: true, shipped_total: 250, last_error: null });
  });

  test('batches are bounded by bytes too', async () => {
    const { fake, shipper, emit } = await setup({ batchMaxBytes: 2000 });
    emit(30);
    await shipper.flushNow();
    const sizes = fake.requests.filter((r) => r.path === '/v1/events').map((r) => r.events.length);
    expect(Math.max(...sizes)).toBeLessThan(30);
    expect(sizes.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(30);
    expect(fake.storeCount).toBe(30);
  });

  test('429 with Retry-After: waits at least that long (capped by backoff_max_s), then delivers', async () => {
    let t = 1_000_000;
    const { fake, shipper, emit, outbox } = await setup({ now: () => t, random: () => 0, backoffMaxS: 2 });
    let refusals = 1;
    fake.hook = (req, res) => {
      if (req.path !== '/v1/events' || refusals === 0) return false;
      refusals--;
      res.writeHead(429, { 'retry-after': '2' });
      res.end('{"error":"slow down"}');
      return true;
    };
    emit(5);
    await shipper.flushNow();
    const st = shipper.status();
    expect(st.last_error).toContain('429');
    expect(Date.parse(st.retry_at as string) - t).toBe(2000);
    expect(outbox.depth()).toBe(5);
    // flushNow does not hammer a collector that asked for a pause
    await shipper.flushNow();
    expect(fake.requests.filter((r) => r.path === '/v1/events' && r.auth).length).toBe(1);
    t += 2001;
    await waitFor(() => outbox.depth() === 0, 'delivery after Retry-After', { timeoutMs: 10_000 });
    expect(fake.storeCount).toBe(5);
  });

  test('503 with an HTTP-date Retry-After is honoured the same way', async () => {
    const t = Date.now();
    const { fake, shipper, emit, outbox } = await setup({ now: () => t, random: () => 0, backoffMaxS: 1 });
    let refusals = 1;
    fake.hook = (req, res) => {
      if (req.path !== '/v1/events' || refusals === 0) return false;
      refusals--;
      res.writeHead(503, { 'retry-after': new Date(t + 60_000).toUTCString() });
      res.end();
      return true;
    };
    emit(3);
    await shipper.flushNow();
    // Retry-After of 60 s is capped by backoff_max_s = 1 s
    expect(Date.parse(shipper.status().retry_at as string) - t).toBe(1000);
    await waitFor(() => outbox.depth() === 0, 'delivery after 503');
  });

  test('413 halves the batch until it fits; a single event that never fits is set aside', async () => {
    const { fake, shipper, emit, outbox } = await setup();
    const ids = emit(40);
    const huge = ids[17] as string;
    fake.hook = (req, res) => {
      if (req.path !== '/v1/events') return false;
      if (req.events.length > 8 || req.events.some((e) => e.id === huge)) {
        res.writeHead(413);
        res.end('{"error":{"code":"GUARD_COLLECTOR_BODY_TOO_LARGE"}}');
        return true;
      }
      return false;
    };
    await shipper.flushNow();
    await waitFor(() => outbox.depth() === 0, 'queue drained');
    expect(fake.stored.size).toBe(39);
    expect(fake.stored.has(huge)).toBe(false);
    expect(outbox.status().set_aside_total).toBe(1);
    expect(outbox.list({ limit: 100 }).find((l) => l.event.id === huge)).toMatchObject({
      state: 'set_aside',
    });
  });

  test('a poison event the collector rejects is set aside and counted; the rest is delivered', async () => {
    const { fake, shipper, emit, outbox } = await setup();
    const ids = emit(20);
    fake.poison.add(ids[5] as string);
    await shipper.flushNow();
    expect(outbox.depth()).toBe(0);
    expect(fake.stored.size).toBe(19);
    expect(shipper.status().set_aside).toBe(1);
    const aside = outbox.list({ limit: 100 }).find((l) => l.state === 'set_aside');
    expect(aside?.event.id).toBe(ids[5]);
    expect(aside?.reason).toContain('collector rejected');
    // the queue keeps moving
    emit(3);
    await shipper.flushNow();
    expect(fake.stored.size).toBe(22);
  });

  test('a rejection the collector does not name (id null, list cut) is never acked as shipped', async () => {
    const { fake, shipper, emit, outbox } = await setup();
    const ids = emit(10);
    const named = ids[2] as string;
    const anonymous = ids[6] as string;
    // like guard-collector for a line over its size limit: rejected with id null
    fake.hook = (req, res) => {
      if (req.path !== '/v1/events') return false;
      let accepted = 0;
      let duplicates = 0;
      const rejected: { id: string | null; reason: string }[] = [];
      for (const e of req.events) {
        const id = e.id as string;
        if (id === named) rejected.push({ id, reason: 'schema: /x: bad' });
        else if (id === anonymous) rejected.push({ id: null, reason: 'too_large' });
        else if (fake.stored.has(id)) duplicates++;
        else {
          accepted++;
          fake.stored.set(id, e);
        }
      }
      res.writeHead(rejected.length ? 400 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ accepted, duplicates, rejected, rejected_total: rejected.length }));
      return true;
    };
    await shipper.flushNow();
    expect(outbox.depth()).toBe(0);
    expect(fake.stored.size).toBe(8);
    const states = new Map(outbox.list({ limit: 100 }).map((l) => [l.event.id, l.state]));
    expect(states.get(named)).toBe('set_aside');
    expect(states.get(anonymous)).toBe('set_aside');
    expect(outbox.status().set_aside_total).toBe(2);
    expect(shipper.status().shipped_total).toBe(8);
  });

  test('401: re-enrolls once and carries on; a token refused again backs off', async () => {
    const { fake, shipper, emit, outbox, state } = await setup();
    emit(2);
    await shipper.flushNow();
    expect(fake.enrollCount).toBe(1);
    fake.tokens.clear(); // the collector forgot the device (e.g. revoked)
    emit(2);
    await shipper.flushNow();
    expect(fake.enrollCount).toBe(2);
    expect(outbox.depth()).toBe(0);
    expect(state.get(STATE_DEVICE_TOKEN)).toBe('tok-2');
    // now the collector refuses every token
    fake.hook = (req, res) => {
      if (req.path !== '/v1/events') return false;
      res.writeHead(401);
      res.end('{"error":{"code":"GUARD_COLLECTOR_UNAUTHORIZED","message":"unknown token"}}');
      return true;
    };
    emit(1);
    await shipper.flushNow();
    expect(fake.enrollCount).toBe(3); // exactly one re-enroll in that cycle
    expect(shipper.status().last_error).toContain('device token');
    expect(shipper.status().consecutive_failures).toBe(1);
    expect(outbox.depth()).toBe(1);
  });

  test('a wrong enroll secret is reported and backed off, nothing is lost', async () => {
    const { fake, shipper, emit, outbox, client } = await setup();
    (client as unknown as { options: { enrollSecret: () => string } }).options.enrollSecret = () => 'wrong';
    emit(2);
    await shipper.flushNow();
    expect(shipper.status().last_error).toContain('enroll failed');
    expect(outbox.depth()).toBe(2);
    expect(fake.stored.size).toBe(0);
  });

  test('5xx and a refused connection back off; once the collector is back everything arrives once', async () => {
    const { fake, shipper, emit, outbox } = await setup({ random: () => 0.5 });
    let failing = true;
    fake.hook = (req, res) => {
      if (!failing || req.path !== '/v1/events') return false;
      res.writeHead(500);
      res.end('boom');
      return true;
    };
    emit(10);
    shipper.start();
    await waitFor(() => shipper.status().consecutive_failures >= 2, 'two failures');
    expect(shipper.status().last_error).toContain('server_error (HTTP 500)');
    failing = false;
    await waitFor(() => outbox.depth() === 0, 'delivery after recovery');
    expect(fake.storeCount).toBe(10);
    expect(shipper.status().consecutive_failures).toBe(0);
  });

  test('a 200 that is not an acknowledgement (captive portal, short count) deletes nothing', async () => {
    let t = Date.now();
    const { fake, shipper, emit, outbox } = await setup({ now: () => t });
    const answers = [
      { type: 'text/html', body: '<html>Please log in to the hotel Wi-Fi</html>' },
      { type: 'application/json', body: '{"accepted":1,"duplicates":0}' },
    ];
    emit(3);
    await shipper.flushNow(); // enrolls and delivers normally
    expect(outbox.depth()).toBe(0);
    for (const a of answers) {
      fake.hook = (req, res) => {
        if (req.path !== '/v1/events') return false;
        res.writeHead(200, { 'content-type': a.type });
        res.end(a.body);
        return true;
      };
      emit(3);
      const before = shipper.status().consecutive_failures;
      t += 60_000; // past any backoff, so flushNow sends at once
      await shipper.flushNow();
      expect(outbox.depth()).toBeGreaterThanOrEqual(3);
      expect(shipper.status().consecutive_failures).toBe(before + 1);
    }
    expect(shipper.status().last_error).toContain('accounted for 1 of');
    fake.hook = null;
    await waitFor(() => outbox.depth() === 0, 'delivery once the real collector answers');
  });

  test('a refusal that names no event and is not a 400 (404, 405, 415, 3xx) sets nothing aside: it backs off', async () => {
    let t = Date.now();
    const { fake, shipper, emit, outbox } = await setup({ now: () => t });
    emit(1);
    await shipper.flushNow(); // enrolled, delivering normally
    for (const [status, body] of [
      [404, '{"error":{"code":"GUARD_COLLECTOR_NOT_FOUND"}}'],
      [405, 'method not allowed'],
      [415, '{"error":{"code":"GUARD_COLLECTOR_UNSUPPORTED_MEDIA_TYPE"}}'],
      [301, ''],
    ] as const) {
      fake.hook = (req, res) => {
        if (req.path !== '/v1/events') return false;
        res.writeHead(status, status === 301 ? { location: 'https://elsewhere.example/' } : {});
        res.end(body);
        return true;
      };
      emit(5);
      const before = shipper.status().consecutive_failures;
      t += 60_000; // past any backoff
      await shipper.flushNow();
      expect(outbox.status().set_aside_total).toBe(0);
      expect(shipper.status().set_aside).toBe(0);
      expect(shipper.status().consecutive_failures).toBe(before + 1);
      expect(shipper.status().last_error).toContain(`HTTP ${status}`);
    }
    expect(outbox.depth()).toBe(20);
    fake.hook = null;
    t += 60_000;
    await waitFor(() => outbox.depth() === 0, 'delivery once the collector answers again');
    expect(fake.stored.size).toBe(21);
  });

  test('a 400 that names no event (corrupt body on the way, a proxy) splits the batch but sets nothing aside', async () => {
    let t = Date.now();
    const { fake, shipper, emit, outbox } = await setup({ now: () => t });
    emit(1);
    await shipper.flushNow(); // enrolled, delivering normally
    let refusing = true;
    fake.hook = (req, res) => {
      if (req.path !== '/v1/events' || !refusing) return false;
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"GUARD_COLLECTOR_BAD_ENCODING","message":"corrupt gzip body"}}');
      return true;
    };
    emit(6);
    t += 60_000;
    await shipper.flushNow();
    expect(outbox.status().set_aside_total).toBe(0);
    expect(outbox.depth()).toBe(6);
    expect(shipper.status().consecutive_failures).toBe(1);
    expect(shipper.status().last_error).toContain('HTTP 400');
    refusing = false;
    t += 60_000;
    await waitFor(() => outbox.depth() === 0, 'delivery once the refusals stop');
    expect(fake.stored.size).toBe(7);
  });

  test('network errors: a collector that is down is a typed failure, not a crash', async () => {
    const { fake, shipper, emit, outbox } = await setup();
    await fake.stop();
    emit(3);
    await shipper.flushNow();
    expect(shipper.status().last_error).toMatch(/network: ECONNREFUSED/);
    expect(outbox.depth()).toBe(3);
  });

  test('a collector that never answers times out; the batch is resent later and stored once', async () => {
    const { fake, shipper, emit, outbox } = await setup({ timeoutMs: 300 });
    let hang = 1;
    fake.hook = (req) => {
      if (req.path !== '/v1/events' || hang === 0) return false;
      hang--;
      // store it (the answer is "lost") but never reply
      for (const e of req.events) fake.stored.set(e.id as string, e);
      return true;
    };
    emit(4);
    shipper.start();
    await waitFor(() => outbox.depth() === 0, 'delivery after a timeout', { timeoutMs: 10_000 });
    expect(fake.requests.filter((r) => r.path === '/v1/events' && r.auth).length).toBe(2);
    expect(fake.stored.size).toBe(4);
    expect(fake.duplicateCount).toBe(4); // resent, and the idempotent collector kept one copy
  });

  test('urgent events are sent at once, not at the next interval', async () => {
    const { fake, outbox } = await setup({ urgent: true });
    outbox.emit('agent.tamper', { reason: 'state_db_corrupt', detail: 'x' });
    await waitFor(() => fake.stored.size === 1, 'urgent delivery');
  });

  test('stop() waits for the request in flight and applies its answer', async () => {
    const { fake, shipper, emit, outbox } = await setup();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let seen = false;
    fake.hook = (req, res) => {
      if (req.path !== '/v1/events' || seen) return false;
      seen = true;
      for (const e of req.events) fake.stored.set(e.id as string, e);
      void gate.then(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ accepted: req.events.length, duplicates: 0 }));
      });
      return true;
    };
    emit(3);
    shipper.start();
    await waitFor(() => seen, 'request in flight');
    const stopping = shipper.stop();
    release();
    await stopping;
    expect(outbox.depth()).toBe(0);
    await shipper.stop(); // idempotent
    emit(1);
    await shipper.flushNow();
    expect(outbox.depth()).toBe(1); // stopped: nothing more is sent
  });
});

describe('Shipper.stop with a final send (guardd clean stop)', () => {
  test('sends what is queued once more, backoff or not, then stops', async () => {
    const { fake, shipper, emit, outbox } = await setup({ backoffMaxS: 3600 });
    let refuse = true;
    fake.hook = (req, res) => {
      if (req.path !== '/v1/events' || !refuse) return false;
      res.writeHead(503, { 'retry-after': '3600' });
      res.end('{"error":"busy"}');
      return true;
    };
    shipper.start();
    emit(3);
    await waitFor(() => shipper.status().retry_at !== null, 'backing off after the 503');
    refuse = false;
    await shipper.stop(5000);
    expect(outbox.depth()).toBe(0);
    expect(fake.storeCount).toBe(3);
  });

  test('a collector that never answers: stop returns after the budget and the events stay queued', async () => {
    // the client's own timeout (60 s) is far beyond the budget and the test's limit
    const { fake, shipper, emit, outbox } = await setup({ timeoutMs: 60_000 });
    let hung = false;
    fake.hook = (req) => {
      if (req.path !== '/v1/events') return false;
      hung = true;
      return true; // taken, never answered
    };
    await shipper.flushNow(); // enrolls; nothing queued yet
    shipper.start();
    emit(2);
    await shipper.stop(300);
    expect(hung).toBe(true);
    expect(outbox.depth()).toBe(2);
  }, 20_000);
});
