/**
 * HTTPS with a self-signed certificate made by openssl in the test (the client pins it as its CA),
 * and the per-token rate limit (429 + Retry-After, per device, not global).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TokenBucketLimiter } from '../../src/collector/rate-limit.js';
import {
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  ndjson,
  startTestCollector,
} from '../helpers/collector.js';

function httpsGet(url: string, ca?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => {
        body += s;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS', () => {
  it('serves HTTPS with the given cert and key; a client pinning the CA connects, one without it is refused', async () => {
    const dir = collectorTempDir('tg-tls-');
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const ca = readFileSync(cert);
    const c = await startTestCollector({ tls: { cert: readFileSync(cert), key: readFileSync(key) } });
    try {
      expect(c.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const ok = await httpsGet(`${c.url}/healthz`, ca);
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toMatchObject({ status: 'ok' });
      await expect(httpsGet(`${c.url}/healthz`)).rejects.toMatchObject({
        code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
      });
    } finally {
      await c.close();
    }
  });
});

describe('rate limit', () => {
  it('answers 429 GUARD_COLLECTOR_RATE_LIMITED with Retry-After past the burst, per device token', async () => {
    const c = await startTestCollector({ limits: { ratePerS: 0.01, rateBurst: 3 } }); // refill: 1 per 100 s;
    try {
      const a = await enrollDevice(c.url, c.enrollSecret, 'dev-rl-a');
      const b = await enrollDevice(c.url, c.enrollSecret, 'dev-rl-b');
      const send = (token: string, device: string, seq: number): Promise<Response> =>
        fetch(`${c.url}/v1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
          body: ndjson([heartbeatEvent(device, seq)]),
        });
      const statuses: number[] = [];
      let limited: Response | undefined;
      for (let i = 1; i <= 6; i++) {
        const r = await send(a, 'dev-rl-a', i);
        statuses.push(r.status);
        if (r.status === 429) limited = r;
        else await r.body?.cancel();
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
      if (!limited) throw new Error('no 429 answer');
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(90);
      expect(((await limited.json()) as { error: { code: string } }).error.code).toBe(
        'GUARD_COLLECTOR_RATE_LIMITED',
      );
      // another device is not affected
      expect((await send(b, 'dev-rl-b', 1)).status).toBe(200);
    } finally {
      await c.close();
    }
  });

  it('token bucket: refills at the rate, caps at the burst, forgets idle keys', () => {
    let now = 0;
    const rl = new TokenBucketLimiter({ buckets: [{ capacity: 2, refillPerS: 2 }], now: () => now });
    expect(rl.take('k')).toEqual({ allowed: true });
    expect(rl.take('k')).toEqual({ allowed: true });
    expect(rl.take('k')).toEqual({ allowed: false, retryAfterS: 1, dimension: 0 });
    now += 500; // one token back
    expect(rl.take('k')).toEqual({ allowed: true });
    expect(rl.take('k').allowed).toBe(false);
    now += 60_000;
    rl.prune();
    expect(rl.size).toBe(0);
  });
});
