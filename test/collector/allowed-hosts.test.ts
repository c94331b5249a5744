/**
 * The collector's Host check (src/collector/allowed-hosts.ts, config `allowed_hosts`) against a
 * real collector over loopback: a request naming a host the operator did not list — what a
 * browser sends when a web page reaches the collector by DNS rebinding — is refused with 421
 * before any route runs, on every route (health, metrics, agent API, console); listed names (any
 * case, with a port, with a trailing dot) and IP addresses pass; a request without Host is
 * refused. Raw node:http and net requests: fetch does not let a caller set Host.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostAllowed, hostOf, parseAllowedHosts } from '../../src/collector/allowed-hosts.js';
import { isGuardError } from '../../src/common/errors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

/** GET `path` from the collector at `url` saying `host` in Host: status and parsed body. */
function get(url: string, path: string, host: string): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: 'GET', headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An HTTP/1.0 request with no Host header at all: the status line's code. */
function getWithoutHost(url: string, path: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(`GET ${path} HTTP/1.0\r\n\r\n`));
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      got += c;
    });
    s.on('end', () => resolve(got.split(' ')[1] ?? ''));
    s.on('error', reject);
  });
}

const code = (body: string): unknown => (JSON.parse(body) as { error?: { code?: string } }).error?.code;

describe('allowed_hosts parsing', () => {
  it('takes names and IPs, comma-separated, any case; empty means any host', () => {
    expect(parseAllowedHosts('')).toBeNull();
    expect(parseAllowedHosts(' , ')).toBeNull();
    expect([...(parseAllowedHosts('Collector.Example.com, 10.0.0.5,[::1]') ?? [])]).toEqual([
      'collector.example.com',
      '10.0.0.5',
      '[::1]',
    ]);
  });

  it.each(['https://collector.test', 'collector.test:8443', 'a b', '*.example.com', 'x'.repeat(254)])(
    'refuses %s as an entry (GUARD_CONFIG_INVALID_VALUE, key allowed_hosts)',
    (entry) => {
      let err: unknown;
      try {
        parseAllowedHosts(`ok.test,${entry}`);
      } catch (e) {
        err = e;
      }
      expect(isGuardError(err) && err.code).toBe('GUARD_CONFIG_INVALID_VALUE');
      expect((err as { details?: { key?: string } }).details?.key).toBe('allowed_hosts');
    },
  );

  it('reads the host of a Host header; malformed ones are null', () => {
    expect(hostOf('Collector.Test:8443')).toBe('collector.test');
    expect(hostOf('collector.test.')).toBe('collector.test');
    expect(hostOf('[::1]:8443')).toBe('::1');
    expect(hostOf('[::1]')).toBe('::1');
    expect(hostOf('[::1]x')).toBeNull();
    expect(hostOf('a:b:c')).toBeNull();
    expect(hostOf('')).toBeNull();
    const allowed = parseAllowedHosts('collector.test');
    expect(hostAllowed(undefined, null)).toBe(true);
    expect(hostAllowed(undefined, allowed)).toBe(false);
    expect(hostAllowed('evil.test', allowed)).toBe(false);
    expect(hostAllowed('collector.test.evil.test', allowed)).toBe(false);
    expect(hostAllowed('192.0.2.7:80', allowed)).toBe(true);
    expect(hostAllowed('[2001:db8::1]:443', allowed)).toBe(true);
  });
});

describe('a collector with allowed_hosts (real collector over loopback)', () => {
  let c: TestCollector;
  let open: TestCollector;
  let port: string;
  beforeAll(async () => {
    c = await startTestCollector({ allowedHosts: parseAllowedHosts('collector.test') });
    open = await startTestCollector();
    port = new URL(c.url).port;
  });
  afterAll(async () => {
    await c?.close();
    await open?.close();
  });

  it.each(['/healthz', '/metrics', '/v1/policy', '/console/', '/no-such-route'])(
    'refuses %s for a name it was not given (421 GUARD_COLLECTOR_HOST_NOT_ALLOWED)',
    async (path) => {
      const r = await get(c.url, path, `rebind.evil.test:${port}`);
      expect(r.status).toBe(421);
      expect(code(r.body)).toBe('GUARD_COLLECTOR_HOST_NOT_ALLOWED');
    },
  );

  it('answers its own name (any case, a port, a trailing dot) and IP addresses', async () => {
    for (const host of [
      `collector.test:${port}`,
      'COLLECTOR.test',
      `collector.test.:${port}`,
      `127.0.0.1:${port}`,
    ])
      expect((await get(c.url, '/healthz', host)).status, host).toBe(200);
  });

  it('refuses a request without Host, and counts the refusals by route', async () => {
    expect(await getWithoutHost(c.url, '/healthz')).toBe('421');
    const metrics = await get(c.url, '/metrics', '127.0.0.1');
    expect(metrics.body).toMatch(/toolguard_collector_http_requests_total\{[^}]*status="421"[^}]*\} [1-9]/);
  });

  it('without allowed_hosts, any name is answered (the default)', async () => {
    expect((await get(open.url, '/healthz', 'rebind.evil.test')).status).toBe(200);
  });
});
