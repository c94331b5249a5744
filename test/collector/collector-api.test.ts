/** The collector's HTTP API v1 end to end over real HTTP on 127.0.0.1 with a real SQLite file. */
import { renameSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateEvent } from '../../src/events/event-schema.js';
import {
  blockedEvent,
  enrollDevice,
  heartbeatEvent,
  ndjson,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tg-colapi-');
const policyFile = join(dir, 'policy.dsse.json');
let c: TestCollector;

beforeAll(async () => {
  c = await startTestCollector({ policyFile, silentAfterS: 60 });
});
afterAll(async () => {
  await c.close();
});

async function postEvents(
  token: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${c.url}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson', ...headers },
    body,
  });
}

async function admin(path: string, token = c.adminToken): Promise<Response> {
  return fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
}

function dbCount(sql: string, ...params: unknown[]): number {
  const db = new Database(c.dbFile, { readonly: true });
  try {
    return (db.prepare(sql).get(...params) as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('test fixtures', () => {
  it('builds schema-valid events', () => {
    expect(validateEvent(heartbeatEvent('d', 1))).toEqual({ ok: true });
    expect(validateEvent(blockedEvent('d', 2))).toEqual({ ok: true });
  });
});

describe('POST /v1/enroll', () => {
  it('returns a device token that is stored only as its SHA-256 hash', async () => {
    const token = await enrollDevice(c.url, c.enrollSecret, 'dev-enroll-1');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(dbCount('SELECT count(*) AS n FROM devices WHERE token_hash = ?', token)).toBe(0);
    const { createHash } = await import('node:crypto');
    const hash = createHash('sha256').update(token).digest('hex');
    expect(dbCount('SELECT count(*) AS n FROM devices WHERE token_hash = ?', hash)).toBe(1);
  });

  it('refuses a wrong secret with 403 GUARD_COLLECTOR_ENROLL_DENIED', async () => {
    const res = await fetch(`${c.url}/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        enroll_secret: `${c.enrollSecret}x`,
        device: { id: 'dev-x', hostname: 'h', os: 'linux', agent_version: '1' },
      }),
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      'GUARD_COLLECTOR_ENROLL_DENIED',
    );
  });

  it.each([
    ['not JSON', '{nope', 'application/json', 400, 'GUARD_COLLECTOR_BAD_REQUEST'],
    ['an array', '[]', 'application/json', 400, 'GUARD_COLLECTOR_BAD_REQUEST'],
    [
      'no device',
      JSON.stringify({ enroll_secret: 's' }),
      'application/json',
      400,
      'GUARD_COLLECTOR_BAD_REQUEST',
    ],
    [
      'device id with a slash',
      JSON.stringify({
        enroll_secret: 's',
        device: { id: 'a/b', hostname: 'h', os: 'l', agent_version: '1' },
      }),
      'application/json',
      400,
      'GUARD_COLLECTOR_BAD_REQUEST',
    ],
    [
      'hostname of the wrong type',
      JSON.stringify({ enroll_secret: 's', device: { id: 'a', hostname: 5, os: 'l', agent_version: '1' } }),
      'application/json',
      400,
      'GUARD_COLLECTOR_BAD_REQUEST',
    ],
    ['text/xml', '<a/>', 'text/xml', 415, 'GUARD_COLLECTOR_UNSUPPORTED_MEDIA_TYPE'],
    // fastify parses text/plain by default: it once reached the shape check (400)
    ['text/plain', '{}', 'text/plain', 415, 'GUARD_COLLECTOR_UNSUPPORTED_MEDIA_TYPE'],
    [
      'a 100 KiB body',
      JSON.stringify({ enroll_secret: 'x'.repeat(100_000) }),
      'application/json',
      413,
      'GUARD_COLLECTOR_BODY_TOO_LARGE',
    ],
  ])('refuses %s', async (_name, body, ctype, status, code) => {
    const res = await fetch(`${c.url}/v1/enroll`, {
      method: 'POST',
      headers: { 'content-type': ctype },
      body,
    });
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it('re-enrolling a device rotates its token (the old one gets 401)', async () => {
    const t1 = await enrollDevice(c.url, c.enrollSecret, 'dev-rotate');
    const t2 = await enrollDevice(c.url, c.enrollSecret, 'dev-rotate');
    expect(t2).not.toBe(t1);
    const old = await postEvents(t1, ndjson([heartbeatEvent('dev-rotate', 1)]));
    expect(old.status).toBe(401);
    expect(((await old.json()) as { error: { code: string } }).error.code).toBe(
      'GUARD_COLLECTOR_UNAUTHORIZED',
    );
    const fresh = await postEvents(t2, ndjson([heartbeatEvent('dev-rotate', 1)]));
    expect(fresh.status).toBe(200);
  });
});

describe('POST /v1/events', () => {
  let token: string;
  beforeAll(async () => {
    token = await enrollDevice(c.url, c.enrollSecret, 'dev-ev');
  });

  it('stores a batch and answers {accepted, duplicates}; a replay is all duplicates, stored once', async () => {
    const events = [
      heartbeatEvent('dev-ev', 1),
      blockedEvent('dev-ev', 2),
      blockedEvent('dev-ev', 3, 'codex'),
    ];
    const body = ndjson(events);
    const r1 = await postEvents(token, body);
    expect(r1.status).toBe(200);
    expect(await r1.json()).toEqual({ accepted: 3, duplicates: 0 });
    const r2 = await postEvents(token, body);
    expect(await r2.json()).toEqual({ accepted: 0, duplicates: 3 });
    for (const e of events) expect(dbCount('SELECT count(*) AS n FROM events WHERE id = ?', e.id)).toBe(1);
  });

  it('stores what it validated, not the raw line: a duplicate key cannot smuggle another device into the SIEM', async () => {
    const e = blockedEvent('dev-ev', 30);
    // JSON.parse keeps the last duplicate (checked: the token's device); a downstream parser that
    // keeps the first would read the victim's device id, host and user from the raw line
    const line = JSON.stringify(e).replace(
      '{',
      '{"device_id":"dev-victim","hostname":"victim.example","user":"ceo",',
    );
    const res = await postEvents(token, `${line}\n`);
    expect(res.status).toBe(200);
    const db = new Database(c.dbFile, { readonly: true });
    try {
      const { body } = db.prepare('SELECT body FROM events WHERE id = ?').get(e.id) as { body: string };
      expect(body).not.toContain('dev-victim');
      expect(body).not.toContain('ceo');
      expect(JSON.parse(body)).toEqual(e);
    } finally {
      db.close();
    }
  });

  it('refuses integers SQLite cannot store (seq 1e300) as invalid events, without failing the batches committed with them', async () => {
    const other = await enrollDevice(c.url, c.enrollSecret, 'dev-bystander');
    const hostile: Record<string, unknown>[] = [
      { ...heartbeatEvent('dev-ev', 1), seq: 1e300 },
      { ...heartbeatEvent('dev-ev', 2), policy_version: 2 ** 64 },
    ];
    const good = heartbeatEvent('dev-bystander', 1);
    const [h, g] = await Promise.all([postEvents(token, ndjson(hostile)), postEvents(other, ndjson([good]))]);
    expect(g.status).toBe(200);
    expect(h.status).toBe(400);
    const body = (await h.json()) as { error: { code: string }; rejected: { id: string }[] };
    expect(body.error.code).toBe('GUARD_COLLECTOR_INVALID_EVENTS');
    expect(body.rejected.map((r) => r.id).sort()).toEqual(hostile.map((e) => e.id as string).sort());
  });

  it('accepts gzip bodies and CRLF line ends', async () => {
    const events = [heartbeatEvent('dev-ev', 10), heartbeatEvent('dev-ev', 11)];
    const res = await postEvents(token, gzipSync(events.map((e) => JSON.stringify(e)).join('\r\n')), {
      'content-encoding': 'gzip',
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ accepted: 2, duplicates: 0 });
  });

  it('stores the valid events of a mixed batch and lists the rejected ones by id with 400', async () => {
    const good = heartbeatEvent('dev-ev', 20);
    const wrongType: Record<string, unknown> = { ...heartbeatEvent('dev-ev', 21), seq: 'twenty-one' };
    const otherDevice = heartbeatEvent('someone-else', 22);
    const extraField: Record<string, unknown> = { ...heartbeatEvent('dev-ev', 23), secret_stuff: 1 };
    const body = `${JSON.stringify(good)}\n{"broken json\n[1,2]\n${JSON.stringify(wrongType)}\n${JSON.stringify(otherDevice)}\n${JSON.stringify(extraField)}\n`;
    const res = await postEvents(token, body);
    expect(res.status).toBe(400);
    const out = (await res.json()) as {
      error: { code: string };
      accepted: number;
      duplicates: number;
      rejected: { id: string | null; reason: string }[];
      rejected_total: number;
    };
    expect(out.error.code).toBe('GUARD_COLLECTOR_INVALID_EVENTS');
    expect(out.accepted).toBe(1);
    expect(out.rejected_total).toBe(5);
    expect(out.rejected.map((r) => r.reason.split(':')[0])).toEqual([
      'invalid_json',
      'not_an_object',
      'schema',
      'device_mismatch',
      'schema',
    ]);
    expect(out.rejected[2]?.id).toBe(wrongType.id);
    expect(out.rejected[3]?.id).toBe(otherDevice.id);
    expect(dbCount('SELECT count(*) AS n FROM events WHERE id = ?', good.id)).toBe(1);
    expect(
      dbCount(
        'SELECT count(*) AS n FROM events WHERE id IN (?, ?, ?)',
        wrongType.id,
        otherDevice.id,
        extraField.id,
      ),
    ).toBe(0);
  });

  it.each([
    ['no token', undefined, 401, 'GUARD_COLLECTOR_UNAUTHORIZED'],
    [
      'an unknown token',
      'Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      401,
      'GUARD_COLLECTOR_UNAUTHORIZED',
    ],
    ['a malformed header', 'Basic dXNlcjpwYXNz', 401, 'GUARD_COLLECTOR_UNAUTHORIZED'],
  ])('refuses %s with 401', async (_n, auth, status, code) => {
    const res = await fetch(`${c.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', ...(auth ? { authorization: auth } : {}) },
      body: ndjson([heartbeatEvent('dev-ev', 99)]),
    });
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it.each([
    [
      'a wrong content type',
      { 'content-type': 'text/plain' },
      'x',
      415,
      'GUARD_COLLECTOR_UNSUPPORTED_MEDIA_TYPE',
    ],
    ['an unknown encoding', { 'content-encoding': 'br' }, 'x', 415, 'GUARD_COLLECTOR_BAD_ENCODING'],
    ['corrupt gzip', { 'content-encoding': 'gzip' }, 'not gzip at all', 400, 'GUARD_COLLECTOR_BAD_ENCODING'],
    ['an empty body', {}, '\n\n', 400, 'GUARD_COLLECTOR_BAD_REQUEST'],
  ])('refuses %s', async (_n, headers, body, status, code) => {
    const res = await postEvents(token, body, headers as Record<string, string>);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it('updates the device: last seen, agent version, policy version from heartbeats', async () => {
    const t = await enrollDevice(c.url, c.enrollSecret, 'dev-pv');
    await postEvents(
      t,
      ndjson([heartbeatEvent('dev-pv', 5, { policy_version: 12, agent_version: '0.2.0' })]),
    );
    // an older heartbeat arriving late does not move the policy version back
    await postEvents(t, ndjson([heartbeatEvent('dev-pv', 4, { policy_version: 11 })]));
    const res = await admin('/v1/devices?limit=1000');
    const { devices } = (await res.json()) as { devices: Record<string, unknown>[] };
    const d = devices.find((x) => x.id === 'dev-pv');
    expect(d).toMatchObject({ policy_version: 12, hostname: 'dev-pv.test', os: 'linux', silent: false });
  });

  it('a re-enrolled device (reinstalled agent: seq starts again at 1) reports its policy version again', async () => {
    const t1 = await enrollDevice(c.url, c.enrollSecret, 'dev-reinstall');
    await postEvents(t1, ndjson([heartbeatEvent('dev-reinstall', 5000, { policy_version: 12 })]));
    // the agent's state was wiped: same device id (from MDM config), a new token, seq from 1
    const t2 = await enrollDevice(c.url, c.enrollSecret, 'dev-reinstall');
    const res = await postEvents(t2, ndjson([heartbeatEvent('dev-reinstall', 2, { policy_version: 13 })]));
    expect(res.status).toBe(200);
    const { devices } = (await (await admin('/v1/devices?limit=1000')).json()) as {
      devices: Record<string, unknown>[];
    };
    expect(devices.find((x) => x.id === 'dev-reinstall')).toMatchObject({ policy_version: 13 });
  });
});

describe('GET /v1/policy', () => {
  it('answers 503 GUARD_COLLECTOR_NO_POLICY while the file is missing', async () => {
    const res = await fetch(`${c.url}/v1/policy`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('GUARD_COLLECTOR_NO_POLICY');
  });

  it('serves the envelope with an ETag, 304 on If-None-Match, and a new version once the file is replaced', async () => {
    const v1 = JSON.stringify({
      payload: 'djE=',
      payloadType: 'application/vnd.toolguard.policy.v1+json',
      signatures: [],
    });
    writeFileSync(policyFile, v1);
    const r1 = await fetch(`${c.url}/v1/policy`);
    expect(r1.status).toBe(200);
    expect(r1.headers.get('content-type')).toMatch(/^application\/json/);
    const etag = r1.headers.get('etag');
    const { createHash } = await import('node:crypto');
    expect(etag).toBe(`"${createHash('sha256').update(v1).digest('hex')}"`);
    expect(await r1.text()).toBe(v1);
    const r2 = await fetch(`${c.url}/v1/policy`, { headers: { 'if-none-match': etag as string } });
    expect(r2.status).toBe(304);
    // publish: write elsewhere, rename over ("sign, copy, done")
    const v2 = v1.replace('djE=', 'djI=');
    writeFileSync(`${policyFile}.tmp`, v2);
    renameSync(`${policyFile}.tmp`, policyFile);
    const r3 = await fetch(`${c.url}/v1/policy`, { headers: { 'if-none-match': etag as string } });
    expect(r3.status).toBe(200);
    expect(await r3.text()).toBe(v2);
    expect(r3.headers.get('etag')).not.toBe(etag);
  });

  it('does not serve a half-written (non-JSON) file', async () => {
    writeFileSync(policyFile, '{"payload": "tru');
    const res = await fetch(`${c.url}/v1/policy`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('GUARD_COLLECTOR_NO_POLICY');
  });
});

describe('admin API', () => {
  let token: string;
  const ids: string[] = [];
  beforeAll(async () => {
    token = await enrollDevice(c.url, c.enrollSecret, 'dev-admin');
    const events = [];
    for (let i = 1; i <= 25; i++) {
      const e =
        i % 5 === 0
          ? blockedEvent('dev-admin', i, i % 10 === 0 ? 'gemini' : 'claude-code')
          : heartbeatEvent('dev-admin', i);
      events.push(e);
      ids.push(e.id as string);
    }
    const res = await postEvents(token, ndjson(events));
    expect(res.status).toBe(200);
  });

  it.each([
    ['no token', undefined],
    ['a device token', 'device'],
    ['a wrong token', 'nope-nope-nope-nope-nope'],
  ])('refuses %s with 401', async (_n, which) => {
    const t = which === 'device' ? token : which;
    for (const path of ['/v1/devices', '/v1/events']) {
      const res = await fetch(`${c.url}${path}`, t ? { headers: { authorization: `Bearer ${t}` } } : {});
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
        'GUARD_COLLECTOR_UNAUTHORIZED',
      );
    }
  });

  it('filters events by device, type and rule, and pages with a cursor', async () => {
    const all: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res = await admin(`/v1/events?device_id=dev-admin&limit=10${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        events: { id: string; received_at: string }[];
        next_cursor: string | null;
      };
      all.push(...body.events.map((e) => e.id));
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    expect(all).toEqual(ids);
    const blocked = (await (await admin('/v1/events?device_id=dev-admin&type=process.blocked')).json()) as {
      events: { rule: { id: string } }[];
    };
    expect(blocked.events).toHaveLength(5);
    const gemini = (await (await admin('/v1/events?rule=gemini')).json()) as {
      events: { rule: { id: string } }[];
    };
    expect(gemini.events.map((e) => e.rule.id)).toEqual(['gemini', 'gemini']);
  });

  it('caps a page of large events by bytes and continues with the cursor', async () => {
    const t = await enrollDevice(c.url, c.enrollSecret, 'dev-big');
    const big = (seq: number): Record<string, unknown> => ({
      ...blockedEvent('dev-big', seq),
      argv: Array.from({ length: 30 }, () => 'x'.repeat(8000)),
    });
    const ids: string[] = [];
    for (let b = 0; b < 2; b++) {
      const events = Array.from({ length: 20 }, (_, i) => big(b * 20 + i + 1));
      ids.push(...events.map((e) => e.id as string));
      const r = await postEvents(t, ndjson(events));
      expect(r.status).toBe(200);
    }
    const p1 = (await (await admin('/v1/events?device_id=dev-big&limit=1000')).json()) as {
      events: { id: string }[];
      next_cursor: string | null;
    };
    expect(p1.events.length).toBeGreaterThan(0);
    expect(p1.events.length).toBeLessThan(40);
    expect(p1.next_cursor).not.toBeNull();
    const p2 = (await (
      await admin(`/v1/events?device_id=dev-big&limit=1000&cursor=${p1.next_cursor}`)
    ).json()) as {
      events: { id: string }[];
      next_cursor: string | null;
    };
    expect([...p1.events, ...p2.events].map((e) => e.id)).toEqual(ids);
    expect(p2.next_cursor).toBeNull();
  });

  it('filters by time with since/until', async () => {
    const future = (await (await admin('/v1/events?since=2100-01-01T00:00:00Z')).json()) as {
      events: unknown[];
    };
    expect(future.events).toHaveLength(0);
    const past = (await (await admin('/v1/events?until=2000-01-01T00:00:00Z')).json()) as {
      events: unknown[];
    };
    expect(past.events).toHaveLength(0);
    const now = (await (
      await admin('/v1/events?device_id=dev-admin&since=2000-01-01T00:00:00%2B02:00')
    ).json()) as {
      events: unknown[];
    };
    expect(now.events).toHaveLength(25);
  });

  it.each([
    ['/v1/events?limit=0'],
    ['/v1/events?limit=100000'],
    ['/v1/events?cursor=abc'],
    ['/v1/events?since=yesterday'],
    ['/v1/events?devcie_id=typo'],
    ['/v1/events?type=a&type=b'],
    ['/v1/devices?silent=maybe'],
  ])('refuses %s with 400 GUARD_COLLECTOR_BAD_QUERY', async (path) => {
    const res = await admin(path);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('GUARD_COLLECTOR_BAD_QUERY');
  });

  it('flags devices not seen for silent_after_s as silent', async () => {
    await enrollDevice(c.url, c.enrollSecret, 'dev-quiet');
    const db = new Database(c.dbFile);
    db.prepare("UPDATE devices SET last_seen_at = '2020-01-01T00:00:00.000Z' WHERE id = 'dev-quiet'").run();
    db.close();
    const silent = (await (await admin('/v1/devices?silent=true')).json()) as {
      devices: { id: string; silent: boolean }[];
    };
    expect(silent.devices.map((d) => d.id)).toEqual(['dev-quiet']);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/toolguard_collector_devices\{state="silent"\} 1/);
  });
});

describe('health and metrics', () => {
  it('GET /healthz answers ok', async () => {
    const res = await fetch(`${c.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });

  it('GET /metrics exposes ingest counters, rejections, latency histogram and device states', async () => {
    const res = await fetch(`${c.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/toolguard_collector_events_accepted_total \d+/);
    expect(text).toMatch(/toolguard_collector_events_duplicate_total [1-9]\d*/);
    expect(text).toMatch(/toolguard_collector_events_rejected_total\{reason="schema"\} [1-9]/);
    expect(text).toMatch(
      /toolguard_collector_request_duration_seconds_bucket\{le="\+Inf",route="\/v1\/events",method="POST"\} [1-9]/,
    );
    expect(text).toMatch(/toolguard_collector_devices\{state="active"\} [1-9]/);
  });

  it('unknown routes get 404 GUARD_COLLECTOR_NOT_FOUND', async () => {
    const res = await fetch(`${c.url}/v2/nothing`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('GUARD_COLLECTOR_NOT_FOUND');
  });
});

describe('shutdown', () => {
  it('finishes a request in flight, answers a pipelined one with 503 GUARD_COLLECTOR_BUSY, then stops', async () => {
    const own = await startTestCollector();
    const token = await enrollDevice(own.url, own.enrollSecret, 'dev-shut');
    const body = ndjson([heartbeatEvent('dev-shut', 1)]);
    const u = new URL(own.url);
    const socket = connect(Number(u.port), u.hostname);
    let text = '';
    socket.on('data', (d) => {
      text += d.toString('utf8');
    });
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    const head = `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
    socket.write(head + body.slice(0, 10));
    // the collector is reading this body (10 bytes buffered): close() must wait for it
    await waitFor(
      async () => /toolguard_collector_inflight_body_bytes 10\n/.test(await own.collector.metrics.render()),
      'the first body bytes to be read',
    );
    const closing = own.close();
    socket.write(`${body.slice(10)}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
    await closing;
    socket.end();
    await closed;
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    expect(statuses).toEqual(['200', '503']);
    expect(text).toContain('GUARD_COLLECTOR_BUSY');
    expect(text).toMatch(/retry-after: 5/i);
  });
});

describe('ingest_workers', () => {
  it('answers and stores the same with 0 (main thread) and 2 worker threads, under concurrent posts', async () => {
    const outcomes: unknown[] = [];
    for (const ingestWorkers of [0, 2]) {
      const col = await startTestCollector({ ingestWorkers });
      try {
        const tokens = await Promise.all(
          ['w1', 'w2', 'w3', 'w4'].map((d) => enrollDevice(col.url, col.enrollSecret, d)),
        );
        const post = (token: string, body: string) =>
          fetch(`${col.url}/v1/events`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
            body,
          }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));
        // 4 devices × 5 batches of 100 events at once, one batch repeated, one mixed with junk
        const batches = tokens.flatMap((token, d) =>
          Array.from({ length: 5 }, (_, b) => ({
            token,
            body: ndjson(Array.from({ length: 100 }, (_, i) => blockedEvent(`w${d + 1}`, b * 100 + i + 1))),
          })),
        );
        const first = batches[0] as { token: string; body: string };
        const answers = await Promise.all([
          ...batches.map((b) => post(b.token, b.body)),
          post(first.token, first.body),
          post(tokens[1] as string, `${JSON.stringify(heartbeatEvent('w2', 900))}\n{"junk"\n`),
        ]);
        const accepted = answers.reduce((n, a) => n + Number(a.body.accepted ?? 0), 0);
        const duplicates = answers.reduce((n, a) => n + Number(a.body.duplicates ?? 0), 0);
        const stored = new Database(col.dbFile, { readonly: true });
        const rows = (stored.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
        stored.close();
        outcomes.push({
          statuses: answers.map((a) => a.status).sort(),
          accepted,
          duplicates,
          rows,
          rejected: answers.at(-1)?.body.rejected_total,
        });
      } finally {
        await col.close();
      }
    }
    expect(outcomes[0]).toEqual({
      statuses: [...Array.from({ length: 21 }, () => 200), 400].sort(),
      accepted: 2001,
      duplicates: 100,
      rows: 2001,
      rejected: 1,
    });
    expect(outcomes[1]).toEqual(outcomes[0]);
  });
});
