/**
 * PolicyUpdater against a real HTTP server on 127.0.0.1 (ephemeral port): the happy path with
 * ETag / If-None-Match, and the hostile-server cases of the attack suite (slow, HTML, 500,
 * redirect loop, oversized body). Each failure keeps the policy in force.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { PolicyUpdater, policyControlMethods } from '../../src/policy/policy-updater.js';
import { tempDir } from '../helpers/tmp.js';
import { body, CTX, makeManager, newKey, proc, sign } from './policy-helpers.js';

const root = tempDir('tg-upd-');
const A = newKey();
const MAX_BYTES = 64 * 1024;

let server: Server;
let base = '';
/** What /policy serves right now. */
let served = sign(body(5), [A]);
const seen: { path: string; ifNoneMatch: string | undefined }[] = [];

const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  '/policy': (req, res) => {
    const etag = `"${createHash('sha256').update(served).digest('hex').slice(0, 16)}"`;
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag }).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', etag }).end(served);
  },
  '/hop1': (_req, res) => res.writeHead(302, { location: '/hop2' }).end(),
  '/hop2': (_req, res) => res.writeHead(307, { location: `${base}/policy` }).end(),
  '/slow': (_req, res) => {
    // Headers at once, then a trickle that never completes the body.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{');
    const t = setInterval(() => res.write(' '), 50);
    res.on('close', () => clearInterval(t));
  },
  '/html': (_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>login</html>'),
  '/500': (_req, res) => res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"boom"}'),
  '/loop': (_req, res) => res.writeHead(302, { location: '/loop' }).end(),
  '/big': (_req, res) => {
    // No Content-Length: the cap must come from counting the stream.
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(8192, 0x20);
    let sent = 0;
    const pump = (): void => {
      while (sent < MAX_BYTES * 4) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  },
  '/big-declared': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(MAX_BYTES * 10) });
    res.write('{');
  },
  '/rollback': (_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(sign(body(2), [A])),
};

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', ifNoneMatch: req.headers['if-none-match'] });
    const route = routes[req.url ?? ''];
    if (route) route(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function setup(path: string, timeoutMs = 2000) {
  const h = makeManager(mkdtempSync(join(root, 'u-')), [A]);
  h.manager.loadInitial(null);
  const updater = new PolicyUpdater({
    manager: h.manager,
    url: `${base}${path}`,
    cron: '*/5 * * * *',
    jitterS: 0,
    timeoutMs,
    maxBytes: MAX_BYTES,
    logger: silentLogger(),
  });
  return { ...h, updater };
}

describe('PolicyUpdater', () => {
  it('applies the served policy, then sends If-None-Match and gets 304, then applies N+1', async () => {
    served = sign(body(5), [A]);
    const h = setup('/policy');
    try {
      expect(await h.updater.refreshNow()).toEqual({ status: 'applied', version: 5 });
      expect(h.manager.status()).toMatchObject({ state: 'ok', version: 5, source: `${base}/policy` });
      expect(h.manager.status().last_fetch_at).not.toBeNull();

      const before = seen.length;
      expect(await h.updater.refreshNow()).toEqual({ status: 'not-modified', version: 5 });
      expect(seen[before]?.ifNoneMatch).toMatch(/^"[0-9a-f]{16}"$/);

      served = sign(body(6), [A]);
      expect(await h.updater.refreshNow()).toEqual({ status: 'applied', version: 6 });
      expect(h.events.ofType('policy.applied').map((e) => e.policy_version)).toEqual([5, 6]);
    } finally {
      h.close();
    }
  });

  it('follows up to 3 redirects', async () => {
    served = sign(body(5), [A]);
    const h = setup('/hop1');
    try {
      expect(await h.updater.refreshNow()).toEqual({ status: 'applied', version: 5 });
    } finally {
      h.close();
    }
  });

  it('concurrent refreshes share one fetch', async () => {
    served = sign(body(5), [A]);
    const h = setup('/policy');
    try {
      const before = seen.length;
      const [a, b] = await Promise.all([h.updater.refreshNow(), h.updater.refreshNow()]);
      expect(a).toEqual(b);
      expect(seen.length - before).toBe(1);
    } finally {
      h.close();
    }
  });

  it.each([
    ['slow server (time-limited)', '/slow', 'GUARD_POLICY_FETCH_FAILED', 'failed'],
    ['HTML instead of JSON', '/html', 'GUARD_POLICY_FETCH_FAILED', 'failed'],
    ['HTTP 500', '/500', 'GUARD_POLICY_FETCH_FAILED', 'failed'],
    ['redirect loop', '/loop', 'GUARD_POLICY_FETCH_FAILED', 'failed'],
    ['oversized streamed body', '/big', 'GUARD_POLICY_TOO_LARGE', 'failed'],
    ['oversized declared body', '/big-declared', 'GUARD_POLICY_TOO_LARGE', 'failed'],
    ['404', '/missing', 'GUARD_POLICY_FETCH_FAILED', 'failed'],
    ['rollback served', '/rollback', 'GUARD_POLICY_ROLLBACK', 'rejected'],
  ])('%s → %s, previous policy stays', async (_name, path, code, status) => {
    const h = setup('/policy', 400);
    try {
      served = sign(body(5), [A]);
      expect((await h.updater.refreshNow()).status).toBe('applied');
      const bad = new PolicyUpdater({
        manager: h.manager,
        url: `${base}${path}`,
        cron: '*/5 * * * *',
        jitterS: 0,
        timeoutMs: 400,
        maxBytes: MAX_BYTES,
        logger: silentLogger(),
      });
      const r = await bad.refreshNow();
      expect(r.status).toBe(status);
      expect(r.error?.code).toBe(code);
      expect(h.manager.status()).toMatchObject({ state: 'ok', version: 5, last_error: { code } });
      expect(h.manager.matcher().match(proc('claude'), CTX)?.rule.id).toBe('claude-code');
    } finally {
      h.close();
    }
  });

  it('refuses a non-http URL and a bad cron expression at construction', () => {
    const h = setup('/policy');
    try {
      const make = (url: string, cron: string) => () =>
        new PolicyUpdater({
          manager: h.manager,
          url,
          cron,
          jitterS: 0,
          timeoutMs: 100,
          maxBytes: 1024,
          logger: silentLogger(),
        });
      expect(make('file:///etc/passwd', '* * * * *')).toThrow(
        expect.objectContaining({ code: 'GUARD_CONFIG_INVALID_VALUE' }),
      );
      expect(make(`${base}/policy`, 'every minute')).toThrow(
        expect.objectContaining({ code: 'GUARD_CONFIG_INVALID_VALUE' }),
      );
    } finally {
      h.close();
    }
  });

  it('start/stop are idempotent and stop leaves no timers behind', () => {
    const h = setup('/policy');
    try {
      h.updater.start();
      h.updater.start();
      h.updater.stop();
      h.updater.stop();
    } finally {
      h.close();
    }
  });

  it('control methods: policy.reload (admin) fetches, policy.show (public) returns the body', async () => {
    served = sign(body(9), [A]);
    const h = setup('/policy');
    try {
      const methods = policyControlMethods(h.updater, h.manager);
      expect(methods['policy.reload']?.admin).toBe(true);
      expect(methods['policy.show']?.admin).toBe(false);
      expect(await methods['policy.reload']?.handle({})).toEqual({ status: 'applied', version: 9 });
      const shown = (await methods['policy.show']?.handle({})) as {
        status: { version: number };
        body: { version: number };
      };
      expect(shown.status.version).toBe(9);
      expect(shown.body.version).toBe(9);
    } finally {
      h.close();
    }
  });
});
