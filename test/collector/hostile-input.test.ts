/**
 * Hostile input against guard-collector running as a real child process (from dist/): 100 MB
 * bodies, gzip bombs, slowloris bodies and headers, unknown-token floods and replays. Each gets its
 * 4xx with a stable code, nothing is stored twice, the process stays up and its RSS stays bounded.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CollectorProcess,
  enrollDevice,
  heartbeatEvent,
  ndjson,
  rssBytes,
  spawnCollectorProcess,
} from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;
let c: CollectorProcess;
let token: string;
let baselineRss = 0;

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * POSTs to the collector writing `chunks` lazily (backpressure respected) and stops writing as
 * soon as the answer arrives: the way a hostile client is cut off early.
 */
function rawPost(
  path: string,
  headers: Record<string, string>,
  chunks: Iterable<Buffer | string>,
): Promise<RawResponse> {
  const u = new URL(c.url);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, ...headers },
      },
      (res) => {
        answered = true;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => {
          body += s;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    const it = chunks[Symbol.iterator]();
    const pump = (): void => {
      for (;;) {
        if (answered || req.destroyed) return;
        const next = it.next();
        if (next.done) {
          req.end();
          return;
        }
        if (!req.write(next.value)) {
          req.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

function* repeat(chunk: Buffer, times: number): Generator<Buffer> {
  for (let i = 0; i < times; i++) yield chunk;
}

function errorCode(r: RawResponse): string {
  return (JSON.parse(r.body) as { error: { code: string } }).error.code;
}

function count(sql: string, ...params: unknown[]): number {
  const db = new Database(c.dbFile, { readonly: true });
  try {
    return (db.prepare(sql).get(...params) as { n: number }).n;
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  c = await spawnCollectorProcess({
    args: [
      '--body-timeout-ms',
      '1500',
      '--headers-timeout-ms',
      '1500',
      '--max-inflight-bytes',
      String(32 * MiB),
    ],
  });
  token = await enrollDevice(c.url, c.enrollSecret, 'dev-hostile');
  const warm = await fetch(`${c.url}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    body: ndjson(Array.from({ length: 200 }, (_, i) => heartbeatEvent('dev-hostile', i + 1))),
  });
  expect(warm.status).toBe(200);
  baselineRss = rssBytes(c.pid) ?? 0;
});

afterAll(async () => {
  // graceful shutdown still works after all of it
  expect(await c.stop()).toBe(0);
});

describe('oversized bodies', () => {
  it('refuses a declared 100 MB body at once with 413 GUARD_COLLECTOR_BODY_TOO_LARGE', async () => {
    const r = await rawPost(
      '/v1/events',
      { 'content-type': 'application/x-ndjson', 'content-length': String(100 * MiB) },
      repeat(Buffer.alloc(MiB, 0x20), 100),
    );
    expect(r.status).toBe(413);
    expect(errorCode(r)).toBe('GUARD_COLLECTOR_BODY_TOO_LARGE');
  });

  it('cuts off chunked 100 MB bodies (no length) at the cap; several at once stay within the memory budget', async () => {
    const chunk = Buffer.alloc(MiB, 0x7b);
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        rawPost(
          '/v1/events',
          { 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' },
          repeat(chunk, 100),
        ),
      ),
    );
    for (const r of results) {
      expect([413, 503]).toContain(r.status);
      expect(['GUARD_COLLECTOR_BODY_TOO_LARGE', 'GUARD_COLLECTOR_BUSY']).toContain(errorCode(r));
      if (r.status === 503) expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
  });

  it('refuses gzip bombs (64 MiB of zeros in ~64 KiB) by ratio before inflating them', async () => {
    const bomb = gzipSync(Buffer.alloc(64 * MiB));
    expect(bomb.length).toBeLessThan(MiB);
    const results = await Promise.all(
      Array.from({ length: 4 }, () =>
        rawPost('/v1/events', { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' }, [bomb]),
      ),
    );
    for (const r of results) {
      expect(r.status).toBe(413);
      expect(errorCode(r)).toBe('GUARD_COLLECTOR_GZIP_BOMB');
    }
  });

  it('refuses a gzip body that inflates past the size cap even at a plausible ratio', async () => {
    // hex of random bytes compresses ~2x: far under the ratio limit, over the 8 MiB cap once inflated
    const text = Buffer.from(randomBytes(6 * MiB).toString('hex'));
    const gz = gzipSync(text);
    const r = await rawPost(
      '/v1/events',
      { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' },
      [gz],
    );
    expect(r.status).toBe(413);
    expect(errorCode(r)).toBe('GUARD_COLLECTOR_BODY_TOO_LARGE');
  });
});

describe('slow clients (slowloris)', () => {
  it('answers a body that trickles in with 408 GUARD_COLLECTOR_BODY_TIMEOUT', async () => {
    const u = new URL(c.url);
    let timer: NodeJS.Timeout | undefined;
    const res = await new Promise<RawResponse>((resolve, reject) => {
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          path: '/v1/events',
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/x-ndjson',
            'content-length': '100000',
          },
        },
        (r) => {
          let body = '';
          r.setEncoding('utf8');
          r.on('data', (s: string) => {
            body += s;
          });
          r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body }));
        },
      );
      req.on('error', reject);
      req.write('{');
      // the attack itself: one byte every 200 ms, forever (bounded by the test's own timeout)
      timer = setInterval(() => req.write(' '), 200);
    });
    clearInterval(timer);
    expect(res.status).toBe(408);
    expect(errorCode(res)).toBe('GUARD_COLLECTOR_BODY_TIMEOUT');
  });

  it('closes 100 connections that trickle their headers, and keeps serving others meanwhile', async () => {
    const u = new URL(c.url);
    const answers: string[] = [];
    const sockets = Array.from({ length: 100 }, (_, i) => {
      const s = connect(Number(u.port), u.hostname);
      s.on('error', () => {});
      s.on('data', (d) => {
        answers[i] = (answers[i] ?? '') + d.toString('utf8');
      });
      s.write('POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      return s;
    });
    const timer = setInterval(() => {
      for (const s of sockets) if (!s.destroyed) s.write('a');
    }, 200);
    try {
      const health = await fetch(`${c.url}/healthz`);
      expect(health.status).toBe(200);
      await waitFor(
        () => sockets.every((s) => s.destroyed || s.readableEnded),
        'slow-header sockets to be closed',
        {
          timeoutMs: 20_000,
          intervalMs: 100,
        },
      );
      expect(answers.filter((a) => a?.includes('"GUARD_COLLECTOR_BODY_TIMEOUT"')).length).toBeGreaterThan(0);
    } finally {
      clearInterval(timer);
      for (const s of sockets) s.destroy();
    }
  });
});

describe('broken HTTP', () => {
  it.each([
    ['garbage instead of HTTP', 'GARBAGE\r\n\r\n', 400, 'GUARD_COLLECTOR_BAD_REQUEST'],
    [
      'a header line without a colon',
      'GET /healthz HTTP/1.1\r\nHost: x\r\nbroken\r\n\r\n',
      400,
      'GUARD_COLLECTOR_BAD_REQUEST',
    ],
    [
      '64 KiB of headers',
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(65_536)}\r\n\r\n`,
      431,
      'GUARD_COLLECTOR_BAD_REQUEST',
    ],
  ])('answers %s with a JSON error code', async (_name, raw, status, code) => {
    const u = new URL(c.url);
    const text = await new Promise<string>((resolve) => {
      const s = connect(Number(u.port), u.hostname);
      let got = '';
      s.on('data', (d) => {
        got += d.toString('utf8');
      });
      s.on('error', () => {});
      s.on('close', () => resolve(got));
      s.write(raw);
    });
    expect(text).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error.code).toBe(code);
  });
});

describe('tokens and replays', () => {
  it('answers a flood of unknown tokens with 401 and stores nothing', async () => {
    const before = count('SELECT count(*) AS n FROM events');
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        fetch(`${c.url}/v1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer forged-token-${i}`, 'content-type': 'application/x-ndjson' },
          body: ndjson([heartbeatEvent('dev-hostile', 10_000 + i)]),
        }).then(async (r) => [r.status, ((await r.json()) as { error: { code: string } }).error.code]),
      ),
    );
    for (const r of results) expect(r).toEqual([401, 'GUARD_COLLECTOR_UNAUTHORIZED']);
    expect(count('SELECT count(*) AS n FROM events')).toBe(before);
  });

  it('stores a batch replayed 5 times concurrently exactly once', async () => {
    const events = Array.from({ length: 300 }, (_, i) => heartbeatEvent('dev-hostile', 20_000 + i));
    const body = ndjson(events);
    const results = (await Promise.all(
      Array.from({ length: 5 }, () =>
        fetch(`${c.url}/v1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
          body,
        }).then((r) => r.json()),
      ),
    )) as { accepted: number; duplicates: number }[];
    expect(results.reduce((n, r) => n + r.accepted, 0)).toBe(300);
    expect(results.reduce((n, r) => n + r.duplicates, 0)).toBe(4 * 300);
    expect(count('SELECT count(*) AS n FROM events WHERE seq >= 20000 AND seq < 20300')).toBe(300);
  });

  it('survives garbage: binary bodies, huge lines, deep JSON, wrong types', async () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const hugeLine = `{"id":"${'x'.repeat(300_000)}"}`;
    const binary = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 131) % 256));
    for (const body of [deep, hugeLine, binary, '{"__proto__":{"admin":true},"type":"agent.heartbeat"}']) {
      const r = await rawPost('/v1/events', { 'content-type': 'application/x-ndjson' }, [body]);
      expect(r.status).toBe(400);
      expect(errorCode(r)).toBe('GUARD_COLLECTOR_INVALID_EVENTS');
    }
  });
});

describe('after the attacks', () => {
  it('is still up, answers normally, and its RSS stayed bounded', async () => {
    const health = await fetch(`${c.url}/healthz`);
    expect(health.status).toBe(200);
    const ok = await fetch(`${c.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
      body: ndjson([heartbeatEvent('dev-hostile', 50_000)]),
    });
    expect(await ok.json()).toEqual({ accepted: 1, duplicates: 0 });
    const rss = rssBytes(c.pid);
    if (rss !== undefined) {
      // generous sanity bound: ~32 MiB in-flight budget + one 8 MiB request + V8 slack; a collector
      // that buffered the 100 MB bodies or inflated the bombs would be far above it
      expect(rss - baselineRss).toBeLessThan(200 * MiB);
    }
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/toolguard_collector_unauthorized_total [1-9]/);
  });
});
