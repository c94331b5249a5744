/**
 * Rewinding a forwarder through the admin API, end to end: a real guard-collector process with the
 * NDJSON sink; events are ingested and forwarded, `POST /v1/admin/forwarders/ndjson/rewind` with
 * the admin token makes the running forwarder write every event received since T again (checked
 * line by line, by id), and then it goes on with new events once. Then the refusals: hostile
 * bodies, unknown sinks and missing or wrong tokens, each with its stable code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ForwarderSink } from '../../src/collector/forwarders/forwarder.js';
import type { StoredEventRow } from '../../src/collector/store/port.js';
import {
  blockedEvent,
  type CollectorProcess,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  postEvents,
  spawnCollectorProcess,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

const out = join(collectorTempDir('tg-rw-'), 'events.ndjson');
let c: CollectorProcess;
beforeAll(async () => {
  c = await spawnCollectorProcess({ args: ['--ndjson-out', out, '--log-level', 'info'] });
});
afterAll(async () => {
  await c?.stop();
});

const lineIds = (file = out): string[] =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { id: string }).id)
    : [];
const linesAtLeast = (n: number) =>
  waitFor(() => {
    const ids = lineIds();
    return ids.length >= n ? ids : undefined;
  }, `${n} lines in the NDJSON file`);

function admin(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const token = init.token === undefined ? c.adminToken : init.token;
  const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  return fetch(`${c.url}${path}`, { ...init, headers });
}
const rewind = (body: unknown, sink = 'ndjson', token?: string | null): Promise<Response> =>
  admin(`/v1/admin/forwarders/${sink}/rewind`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    token,
  });
const codeOf = async (res: Response): Promise<[number, string]> => [
  res.status,
  ((await res.json()) as { error: { code: string } }).error.code,
];

describe('POST /v1/admin/forwarders/:sink/rewind', () => {
  it('makes the running NDJSON forwarder write every event received since T again, then goes on', async () => {
    const token = await enrollDevice(c.url, c.enrollSecret, 'dev-rw');
    const a = Array.from({ length: 5 }, (_, i) => blockedEvent('dev-rw', i + 1));
    expect((await postEvents(c.url, token, a)).status).toBe(200);
    expect(await linesAtLeast(5)).toEqual(a.map((e) => e.id));
    // T: just after the last receipt of batch a (as the collector recorded it), and before b is sent
    const stored = (await (await admin('/v1/events?limit=1000')).json()) as {
      events: { received_at: string }[];
    };
    const sinceMs = Math.max(...stored.events.map((e) => Date.parse(e.received_at))) + 1;
    await waitFor(() => Date.now() > sinceMs, 'the clock to pass T');
    const b = Array.from({ length: 4 }, (_, i) => heartbeatEvent('dev-rw', i + 10));
    expect((await postEvents(c.url, token, b)).status).toBe(200);
    expect(await linesAtLeast(9)).toEqual([...a, ...b].map((e) => e.id));

    // the cursor moves just after the lines were written and synced
    const listed = await waitFor(async () => {
      const l = (await (await admin('/v1/admin/forwarders')).json()) as {
        forwarders: { name: string; updated_at: string | null; lag: number }[];
      };
      return l.forwarders[0]?.lag === 0 ? l : undefined;
    }, 'the cursor past batch b');
    expect(listed.forwarders).toEqual([
      {
        name: 'ndjson',
        updated_at: expect.any(String),
        lag: 0,
        cursor: expect.objectContaining({ txid: null }),
      },
    ]);

    // T given with an offset (+02:00), as an operator in another zone would
    const local = new Date(sinceMs + 2 * 3_600_000).toISOString().replace('Z', '+02:00');
    const res = await rewind({ since: local });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      sink: 'ndjson',
      since: new Date(sinceMs).toISOString(),
      result: 'rewound',
      reason: null,
      due_again: 4,
      due_again_exact: true,
    });
    // the forwarder picks the rewind up without a restart: b's events again, line by line
    expect(await linesAtLeast(13)).toEqual([...a, ...b, ...b].map((e) => e.id));

    // then on with new events, once
    const d = [blockedEvent('dev-rw', 20), blockedEvent('dev-rw', 21)];
    expect((await postEvents(c.url, token, d)).status).toBe(200);
    expect(await linesAtLeast(15)).toEqual([...a, ...b, ...b, ...d].map((e) => e.id));

    // a since after everything it delivered changes nothing, and says so
    const after = await rewind({ since: new Date().toISOString() });
    expect(after.status).toBe(200);
    expect(await after.json()).toMatchObject({
      result: 'unchanged',
      reason: 'nothing_delivered_since',
      due_again: 0,
    });
    expect(lineIds()).toHaveLength(15);

    // logged at info with who and what; counted
    const log = await waitFor(
      () =>
        c
          .stderr()
          .split('\n')
          .find((l) => l.includes('"msg":"forwarder rewound"')),
      'the rewind in the log',
    );
    expect(JSON.parse(log)).toMatchObject({ level: 30, by: 'admin token', sink: 'ndjson', due_again: 4 });
    expect(c.stderr()).toContain('forwarder rewind changed nothing');
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/forwarder_rewinds_total\{sink="ndjson",result="rewound"\} 1\n/);
    expect(metrics).toMatch(/forwarder_rewinds_total\{sink="ndjson",result="unchanged"\} 1\n/);
    expect(metrics).toMatch(/forwarder_rewound_events_total\{sink="ndjson"\} 4\n/);
  });

  it('refuses hostile requests with stable codes, changing nothing', async () => {
    const before = (await (await admin('/v1/admin/forwarders')).json()) as unknown;
    const past = '2026-01-01T00:00:00Z';
    const cases: [unknown, [number, string], string?][] = [
      [{ since: past }, [404, 'GUARD_COLLECTOR_UNKNOWN_FORWARDER'], 'nope'],
      // a sink this collector does not run (configured elsewhere, or not at all)
      [{ since: past }, [404, 'GUARD_COLLECTOR_UNKNOWN_FORWARDER'], 'splunk-hec'],
      [{ since: past }, [404, 'GUARD_COLLECTOR_UNKNOWN_FORWARDER'], '..%2F..%2Fetc'],
      [{}, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      ['', [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      ['null', [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [[past], [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      ['{"since":', [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: 1767225600000 }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: '2026-01-01T00:00:00' }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: '2026-01-01' }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: 'yesterday' }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: '2026-02-30T00:00:00Z' }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: '2026-01-01T24:00:00Z' }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: `${'9'.repeat(300)}-01-01T00:00:00Z` }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: new Date(Date.now() + 3_600_000).toISOString() }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: past, sink: 'splunk-hec' }, [400, 'GUARD_COLLECTOR_BAD_REQUEST']],
      [{ since: past, pad: 'x'.repeat(4096) }, [413, 'GUARD_COLLECTOR_BODY_TOO_LARGE']],
    ];
    for (const [body, want, sink] of cases)
      expect([body, await codeOf(await rewind(body, sink))]).toEqual([body, want]);
    // not JSON: refused for its type, as on every JSON route
    const text = await admin('/v1/admin/forwarders/ndjson/rewind', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: past,
    });
    expect(await codeOf(text)).toEqual([415, 'GUARD_COLLECTOR_UNSUPPORTED_MEDIA_TYPE']);
    // a query parameter is not a way in either
    const q = await admin('/v1/admin/forwarders/ndjson/rewind?since=2026-01-01T00:00:00Z', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ since: past }),
    });
    expect(await codeOf(q)).toEqual([400, 'GUARD_COLLECTOR_BAD_QUERY']);
    // no token, another token, the enroll secret, a device's token: 401, before the body is looked at
    const device = await enrollDevice(c.url, c.enrollSecret, 'dev-rw-2');
    for (const token of [null, 'wrong', c.enrollSecret, device, `${c.adminToken}x`]) {
      expect(await codeOf(await rewind({ since: past }, 'ndjson', token))).toEqual([
        401,
        'GUARD_COLLECTOR_UNAUTHORIZED',
      ]);
      expect(await codeOf(await admin('/v1/admin/forwarders', { token }))).toEqual([
        401,
        'GUARD_COLLECTOR_UNAUTHORIZED',
      ]);
    }
    expect(await (await admin('/v1/admin/forwarders')).json()).toEqual(before);
    expect(c.stderr().match(/"msg":"forwarder rewound"/g)).toHaveLength(1);
  });
});

/** A sink whose deliveries can be held open (a SIEM that has not answered yet). */
class GatedSink implements ForwarderSink {
  readonly name = 'gated';
  readonly ids: string[] = [];
  inside = false;
  private gate: Promise<void> | null = null;
  private open: () => void = () => {};
  hold(): void {
    this.gate = new Promise((r) => {
      this.open = r;
    });
  }
  release(): void {
    this.gate = null;
    this.open();
  }
  async deliver(events: readonly StoredEventRow[]) {
    this.inside = true;
    try {
      if (this.gate) await this.gate;
    } finally {
      this.inside = false;
    }
    this.ids.push(...events.map((e) => (JSON.parse(e.body) as { id: string }).id));
    return { dropped: 0 };
  }
  async close(): Promise<void> {
    this.release();
  }
}

describe('the running forwarder and a rewind', () => {
  const file = join(collectorTempDir('tg-rw2-'), 'events.ndjson');
  const gated = new GatedSink();
  let t: TestCollector;
  beforeAll(async () => {
    // no safety poll within the test's time: only a wake-up can make the runner deliver
    t = await startTestCollector({
      forwarders: { ndjson: { file }, extra: [gated], pollMs: 3_600_000, rewindWaitMs: 200 },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('is woken by the rewind (no restart, no poll)', async () => {
    const token = await enrollDevice(t.url, t.enrollSecret, 'dev-wake');
    const evs = Array.from({ length: 3 }, (_, i) => blockedEvent('dev-wake', i + 1));
    expect((await postEvents(t.url, token, evs)).status).toBe(200);
    const ids = evs.map((e) => e.id);
    await waitFor(() => lineIds(file).length === 3, 'the events in the file');
    // the runner is idle now, waiting for a wake-up (its poll is an hour away)
    await waitFor(
      async () => (await t.collector.store.forwarderLag('ndjson')) === 0,
      'the cursor past the events',
    );
    const res = await fetch(`${t.url}/v1/admin/forwarders/ndjson/rewind`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ since: '2000-01-01T00:00:00Z' }),
    });
    expect(await res.json()).toMatchObject({ result: 'rewound', due_again: 3 });
    expect(
      await waitFor(() => (lineIds(file).length === 6 ? lineIds(file) : undefined), 'the events again'),
    ).toEqual([...ids, ...ids]);
  });

  it('answers 503 GUARD_COLLECTOR_FORWARDER_BUSY while a delivery holds the sink past the wait, changing nothing; then rewinds', async () => {
    const token = await enrollDevice(t.url, t.enrollSecret, 'dev-busy');
    // whatever an earlier test stored is delivered first (this test does not depend on it)
    await waitFor(
      async () => !gated.inside && (await t.collector.store.forwarderLag('gated')) === 0,
      'the gated sink to be idle',
    );
    const n = gated.ids.length + 2;
    gated.hold();
    const evs = [blockedEvent('dev-busy', 1), blockedEvent('dev-busy', 2)];
    expect((await postEvents(t.url, token, evs)).status).toBe(200);
    await waitFor(() => gated.inside, 'the delivery to be held');
    const before = await t.collector.store.forwarderCursor('gated');
    const post = () =>
      fetch(`${t.url}/v1/admin/forwarders/gated/rewind`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ since: '2000-01-01T00:00:00Z' }),
      });
    const busy = await post();
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('5');
    expect(((await busy.json()) as { error: { code: string } }).error.code).toBe(
      'GUARD_COLLECTOR_FORWARDER_BUSY',
    );
    expect(await t.collector.store.forwarderCursor('gated')).toEqual(before);
    gated.release();
    await waitFor(() => gated.ids.length === n, 'the held delivery to finish');
    await waitFor(
      async () => (await t.collector.store.forwarderLag('gated')) === 0,
      'the cursor past the held delivery',
    );
    const again = await post();
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ result: 'rewound', due_again: n });
    await waitFor(() => gated.ids.length === 2 * n, 'every event again');
    expect(gated.ids.slice(n)).toEqual(gated.ids.slice(0, n));
    expect(gated.ids.slice(n - 2, n)).toEqual(evs.map((e) => e.id));
  });
});
