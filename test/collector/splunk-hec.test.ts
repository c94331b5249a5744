/**
 * The Splunk HEC sink against a receiver that answers like HEC (test/helpers/hec-receiver.ts):
 * indexer acknowledgement on a channel, 413 → split, partial indexing with `invalid-event-number`
 * (a poison event in the middle: every other event indexed exactly once), codes 6/12/13 dead-letter
 * one event, and 503 with Retry-After is waited out. Through a real collector where the runner is
 * part of the behaviour, and through the sink alone where the test needs exact control of a batch.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { StoredEventRow } from '../../src/collector/collector-store.js';
import { retryAfterMs, SplunkHecSink } from '../../src/collector/forwarders/splunk-hec-sink.js';
import {
  blockedEvent,
  enrollDevice,
  heartbeatEvent,
  ndjson,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { HecReceiver, isPoisoned } from '../helpers/hec-receiver.js';
import { waitFor } from '../helpers/wait.js';

const receivers: HecReceiver[] = [];
const collectors: TestCollector[] = [];
afterAll(async () => {
  for (const c of collectors) await c.close();
  for (const r of receivers) await r.close();
});

async function receiver(options: ConstructorParameters<typeof HecReceiver>[0]): Promise<HecReceiver> {
  const r = new HecReceiver(options);
  await r.start();
  receivers.push(r);
  return r;
}

async function collectorFor(
  hec: HecReceiver,
  extra: Record<string, unknown> = {},
): Promise<{ c: TestCollector; token: string }> {
  const c = await startTestCollector({
    forwarders: {
      splunkHec: { url: hec.url, token: hec.token, timeoutMs: 30_000, ...extra },
      backoffInitialMs: 20,
      backoffMaxMs: 200,
    },
  });
  collectors.push(c);
  const token = await enrollDevice(c.url, c.enrollSecret, 'dev-hec');
  return { c, token };
}

async function post(c: TestCollector, token: string, events: Record<string, unknown>[]): Promise<void> {
  const res = await fetch(`${c.url}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(events),
  });
  expect(res.status).toBe(200);
}

const ids = (hec: HecReceiver): string[] => hec.events.map((e) => (e.event as { id: string }).id);

function rowsOf(events: readonly Record<string, unknown>[], firstRid = 1): StoredEventRow[] {
  return events.map((e, i) => ({
    rid: firstRid + i,
    device_id: String(e.device_id),
    enrollment: 1,
    received_at: new Date().toISOString(),
    body: JSON.stringify(e),
  }));
}

describe('Splunk HEC: indexer acknowledgement', () => {
  it('HEC refuses a request without a channel (code 10); the sink sends one stable channel and polls /ack', async () => {
    const hec = await receiver({ ack: true });
    const bare = await fetch(`${hec.url}/services/collector/event`, {
      method: 'POST',
      headers: { authorization: `Splunk ${hec.token}` },
      body: '{"event":"x"}',
    });
    expect(bare.status).toBe(400);
    expect(await bare.json()).toMatchObject({ code: 10 });

    const { c, token } = await collectorFor(hec, { ack: true, index: 'endpoint', source: 'tg-test' });
    const events = [blockedEvent('dev-hec', 1), heartbeatEvent('dev-hec', 2)];
    await post(c, token, events);
    await waitFor(async () => (await c.collector.store.forwarderLag('splunk-hec')) === 0, 'the cursor');
    expect(ids(hec)).toEqual(events.map((e) => e.id));
    expect(hec.events[0]).toMatchObject({
      index: 'endpoint',
      source: 'tg-test',
      sourcetype: 'toolguard:event',
    });
    // every request of the sink (the first request was the bare one above)
    const channels = new Set(hec.requests.slice(1).map((r) => r.channel));
    expect(channels.size).toBe(1);
    expect([...channels][0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(hec.requests.some((r) => r.path === '/services/collector/ack' && r.status === 200)).toBe(true);
  });

  it('events count as delivered only when acknowledged: an unacknowledged request is sent again', async () => {
    const hec = await receiver({ ack: true, ackMode: 'lost' });
    const { c, token } = await collectorFor(hec, { ack: true, ackTimeoutMs: 300, ackPollMaxMs: 50 });
    const events = Array.from({ length: 5 }, (_, i) => heartbeatEvent('dev-hec', i + 1));
    await post(c, token, events);
    // accepted (200 + ackId) twice but never indexed: the cursor must not move
    await waitFor(() => hec.eventRequests(200).length >= 2, 'two accepted but unacknowledged requests');
    // nothing acknowledged: all 5 events still wait
    expect(await c.collector.store.forwarderLag('splunk-hec')).toBe(5);
    expect(
      await c.collector.metrics.get('forward_errors_total', { sink: 'splunk-hec' }),
    ).toBeGreaterThanOrEqual(1);
    hec.ackMode = 'immediate';
    await waitFor(async () => (await c.collector.store.forwarderLag('splunk-hec')) === 0, 'the cursor');
    expect(ids(hec)).toEqual(events.map((e) => e.id));
  });
});

describe('Splunk HEC: partial indexing and refusals', () => {
  it('a poison event in the middle: the events before it are indexed once, it is dead-lettered, the rest follow once', async () => {
    const hec = await receiver({ ack: true, poison: isPoisoned });
    const { c, token } = await collectorFor(hec, { ack: true });
    const poison: Record<string, unknown> = { ...heartbeatEvent('dev-hec', 5), hostname: 'poison.test' };
    const events = [
      ...Array.from({ length: 4 }, (_, i) => heartbeatEvent('dev-hec', i + 1)),
      poison,
      ...Array.from({ length: 4 }, (_, i) => heartbeatEvent('dev-hec', i + 6)),
    ];
    await post(c, token, events);
    await waitFor(async () => (await c.collector.store.forwarderLag('splunk-hec')) === 0, 'the cursor');
    expect(ids(hec)).toEqual(events.filter((e) => e !== poison).map((e) => e.id));
    // one refused request (4 indexed), then one with only the 4 after the poison
    const refused = hec.eventRequests(400);
    expect(refused).toHaveLength(1);
    expect(hec.eventRequests(200)).toHaveLength(1);
    expect(await c.collector.metrics.get('forward_dead_letter_total', { sink: 'splunk-hec' })).toBe(1);
    const text = await (await fetch(`${c.url}/metrics`)).text();
    expect(text).toContain('toolguard_collector_forward_dead_letter_total{sink="splunk-hec"} 1');
  });

  it('codes 12 and 13 (event missing / blank) dead-letter that event only; every other event once', async () => {
    const hec = await receiver({});
    const dead: number[] = [];
    const events = Array.from({ length: 10 }, (_, i) => heartbeatEvent('dev-x', i + 1));
    const blank = new Set([events[2]?.id, events[7]?.id]);
    const sink = new SplunkHecSink({
      url: hec.url,
      token: hec.token,
      transform: (e) => (blank.has(e.id as string) ? '' : e),
      onDeadLetter: (n) => dead.push(n),
    });
    const result = await sink.deliver(rowsOf(events));
    await sink.close();
    expect(result.dropped).toBe(2);
    expect(result.droppedIds).toEqual([...blank].map((id) => `dev-x/${id}`));
    expect(dead).toEqual([1, 1]);
    expect(ids(hec)).toEqual(events.filter((e) => !blank.has(e.id as string)).map((e) => e.id));
    expect(hec.eventRequests(400).map((r) => r.status)).toEqual([400, 400]);
  });

  it('an older HEC without invalid-event-number (indexes nothing of a refused request): halving isolates the event', async () => {
    const hec = await receiver({ reportsInvalidEventNumber: false, poison: isPoisoned });
    const events = Array.from({ length: 9 }, (_, i) =>
      i === 6
        ? { ...heartbeatEvent('dev-x', i + 1), hostname: 'poison.test' }
        : heartbeatEvent('dev-x', i + 1),
    );
    const sink = new SplunkHecSink({ url: hec.url, token: hec.token });
    const result = await sink.deliver(rowsOf(events));
    await sink.close();
    expect(result.dropped).toBe(1);
    expect(ids(hec)).toEqual(events.filter((_, i) => i !== 6).map((e) => e.id));
  });

  it('413: the batch is split until each piece fits; an event too large alone is dead-lettered', async () => {
    const hec = await receiver({ maxContentLength: 4_000 });
    const { c, token } = await collectorFor(hec);
    const huge: Record<string, unknown> = {
      ...blockedEvent('dev-hec', 6),
      argv: ['claude', 'x'.repeat(8_000)],
    };
    const events = [
      ...Array.from({ length: 5 }, (_, i) => blockedEvent('dev-hec', i + 1)),
      huge,
      ...Array.from({ length: 10 }, (_, i) => heartbeatEvent('dev-hec', i + 7)),
    ];
    await post(c, token, events);
    await waitFor(async () => (await c.collector.store.forwarderLag('splunk-hec')) === 0, 'the cursor');
    expect(hec.eventRequests(413).length).toBeGreaterThanOrEqual(2);
    expect(ids(hec)).toEqual(events.filter((e) => e !== huge).map((e) => e.id));
    expect(await c.collector.metrics.get('forward_dead_letter_total', { sink: 'splunk-hec' })).toBe(1);
    // every request that was accepted fitted the limit
    for (const r of hec.eventRequests(200)) expect(r.status).toBe(200);
  });
});

describe('Splunk HEC: host', () => {
  it('is the device id ingest checked (a device naming itself like another stays under its own id); the reported hostname on request', async () => {
    const hec = await receiver({});
    const { c, token } = await collectorFor(hec);
    const spoofed = heartbeatEvent('dev-hec', 1, { hostname: 'ceo-laptop.test' });
    await post(c, token, [spoofed, heartbeatEvent('dev-hec', 2)]);
    await waitFor(() => hec.events.length >= 2, 'HEC to receive 2 events');
    expect(hec.events.map((o) => o.host)).toEqual(['dev-hec', 'dev-hec']);
    expect(hec.events[0]?.event).toMatchObject({ hostname: 'ceo-laptop.test' });

    const named = await receiver({});
    const events = [heartbeatEvent('dev-x', 1), heartbeatEvent('dev-y', 1)];
    const sink = new SplunkHecSink({ url: named.url, token: named.token, host: 'hostname' });
    expect((await sink.deliver(rowsOf(events))).dropped).toBe(0);
    await sink.close();
    expect(named.events.map((o) => o.host)).toEqual(['dev-x.test', 'dev-y.test']);
  });
});

describe('Splunk HEC: throttling', () => {
  it('503 with Retry-After: the next attempt waits the time HEC asked for', async () => {
    const hec = await receiver({});
    hec.busy(1, 1);
    const { c, token } = await collectorFor(hec);
    const events = [heartbeatEvent('dev-hec', 1), heartbeatEvent('dev-hec', 2)];
    await post(c, token, events);
    await waitFor(async () => (await c.collector.store.forwarderLag('splunk-hec')) === 0, 'the cursor');
    const [busy, ok] = [hec.eventRequests(503), hec.eventRequests(200)];
    expect(busy).toHaveLength(1);
    // the runner's own backoff is 20-200 ms here: only Retry-After explains a 1 s gap
    expect((ok[0]?.at ?? 0) - (busy[0]?.at ?? 0)).toBeGreaterThanOrEqual(990);
    expect(ids(hec)).toEqual(events.map((e) => e.id));
  });

  it('reads Retry-After as seconds or an HTTP date, capped at 5 minutes', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs(new Date(10_000 + 3_000).toUTCString(), 10_000)).toBe(3000);
    expect(retryAfterMs('86400')).toBe(300_000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });

  it('events confirmed before a failure are not sent again when the runner retries the batch', async () => {
    const hec = await receiver({ poison: isPoisoned });
    const events = Array.from({ length: 6 }, (_, i) =>
      i === 2
        ? { ...heartbeatEvent('dev-x', i + 1), hostname: 'poison.test' }
        : heartbeatEvent('dev-x', i + 1),
    );
    const sink = new SplunkHecSink({ url: hec.url, token: hec.token });
    // the first request is refused for the poison (2 indexed); the follow-up then meets a 503
    hec.poison = (o) => {
      if (isPoisoned(o)) {
        hec.down = true;
        return true;
      }
      return false;
    };
    await expect(sink.deliver(rowsOf(events))).rejects.toMatchObject({ status: 503 });
    hec.down = false;
    const result = await sink.deliver(rowsOf(events));
    // the poison set aside by the failed delivery is reported by the one that returns
    expect(result).toEqual({ dropped: 1, droppedIds: [`dev-x/${events[2]?.id}`] });
    expect(ids(hec)).toEqual(events.filter((_, i) => i !== 2).map((e) => e.id));
    // a batch handed again after a successful delivery (a cursor moved back on purpose) is sent whole
    hec.poison = undefined;
    await sink.deliver(rowsOf(events));
    await sink.close();
    expect(ids(hec)).toEqual([...events.filter((_, i) => i !== 2), ...events].map((e) => e.id));
  });
});
