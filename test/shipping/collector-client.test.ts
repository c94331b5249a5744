import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { type RunningCollector, startCollector } from '../../src/collector/collector-server.js';
import { isGuardError } from '../../src/common/errors.js';
import { createRootLogger } from '../../src/common/logger.js';
import { validateEvent } from '../../src/events/event-schema.js';
import {
  CollectorClient,
  type CollectorClientOptions,
  parseRetryAfter,
  STATE_DEVICE_TOKEN,
} from '../../src/shipping/collector-client.js';
import { Shipper } from '../../src/shipping/shipper.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { OutboxStore } from '../../src/store/outbox-store.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const logger = createRootLogger('silent');
const dir = tempDir('tg-client-');
const SECRET = 'client-test-enroll-secret-012345';
let n = 0;
const running: RunningCollector[] = [];
afterAll(async () => {
  for (const c of running) await c.close();
});

async function collector(
  opts: Partial<Parameters<typeof startCollector>[0]> = {},
): Promise<RunningCollector> {
  const c = await startCollector({
    port: 0,
    dbFile: join(dir, `col${++n}.db`),
    enrollSecret: SECRET,
    adminToken: 'admin-token-for-client-tests-0123',
    ...opts,
  });
  running.push(c);
  return c;
}

function agentParts(
  url: string,
  extra: Partial<CollectorClientOptions> = {},
  device = `dev-${++n}`,
  batchMaxEvents = 500,
) {
  const { db } = openDatabase(join(dir, `agent${++n}.db`), { migrations: MIGRATIONS });
  const state = new StateStore(db);
  const outbox = new OutboxStore({ db, deviceId: device, hostname: 'h', maxBytes: 1 << 26, logger });
  const client = new CollectorClient({
    url,
    timeoutMs: 5000,
    state,
    deviceId: device,
    hostname: 'h',
    enrollSecret: SECRET,
    logger,
    ...extra,
  });
  const shipper = new Shipper({
    outbox,
    client,
    batchMaxEvents,
    batchMaxBytes: 1 << 20,
    intervalMs: 3_600_000,
    backoffMaxS: 1,
    logger,
  });
  return { db, state, outbox, client, shipper };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isGuardError(err) ? err.code : 'not a GuardError';
  }
  return undefined;
}

describe('CollectorClient', () => {
  test('refuses a bad URL or an unreadable CA file with GUARD_CONFIG_INVALID_VALUE', () => {
    const state = new StateStore(openDatabase(join(dir, 'x.db'), { migrations: MIGRATIONS }).db);
    const base = { timeoutMs: 1000, state, deviceId: 'd', hostname: 'h', logger };
    expect(codeOf(() => new CollectorClient({ ...base, url: 'not a url' }))).toBe(
      'GUARD_CONFIG_INVALID_VALUE',
    );
    expect(codeOf(() => new CollectorClient({ ...base, url: 'ftp://x' }))).toBe('GUARD_CONFIG_INVALID_VALUE');
    expect(
      codeOf(() => new CollectorClient({ ...base, url: 'https://x', caFile: join(dir, 'nope.pem') })),
    ).toBe('GUARD_CONFIG_INVALID_VALUE');
    // a pinned CA with a plain-http URL would send the token and events unencrypted, unpinned
    writeFileSync(join(dir, 'pin.pem'), 'not used');
    expect(
      codeOf(() => new CollectorClient({ ...base, url: 'http://x', caFile: join(dir, 'pin.pem') })),
    ).toBe('GUARD_CONFIG_INVALID_VALUE');
  });

  test('parseRetryAfter: seconds, HTTP dates, garbage, and a cap', () => {
    const now = Date.parse('2026-11-24T10:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7);
    expect(parseRetryAfter(new Date(now + 30_000).toUTCString(), now)).toBe(30);
    expect(parseRetryAfter(new Date(now - 30_000).toUTCString(), now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
    expect(parseRetryAfter('99999999', now)).toBe(86_400);
  });

  test('enrolls with the real collector (secret from a file) and posts gzip NDJSON it accepts once', async () => {
    const c = await collector();
    writeFileSync(join(dir, 'secret'), `${SECRET}\n`, { mode: 0o600 });
    const { client, outbox, state } = agentParts(c.url, {
      enrollSecret: undefined,
      enrollSecretFile: join(dir, 'secret'),
    });
    expect(await client.postEvents([])).toMatchObject({ kind: 'unauthorized', status: 0 });
    expect(await client.enroll()).toEqual({ kind: 'enrolled' });
    expect(typeof state.get(STATE_DEVICE_TOKEN)).toBe('string');
    for (let i = 0; i < 3; i++) outbox.emit('agent.stopped', { reason: `r${i}` });
    const batch = outbox.pending(10, 1e9);
    expect(await client.postEvents(batch)).toMatchObject({
      kind: 'ok',
      status: 200,
      accepted: 3,
      duplicates: 0,
    });
    expect(await client.postEvents(batch)).toMatchObject({ kind: 'ok', accepted: 0, duplicates: 3 });
    client.close();
  });

  test('a wrong enroll secret and an unknown token are typed results, not exceptions', async () => {
    const c = await collector();
    const { client, state } = agentParts(c.url, { enrollSecret: 'wrong-secret-wrong-secret' });
    const r = await client.enroll();
    expect(r.kind === 'unauthorized' || r.kind === 'invalid').toBe(true);
    state.set(STATE_DEVICE_TOKEN, 'forged-token');
    expect(await client.postEvents([])).toMatchObject({ kind: 'unauthorized', status: 401 });
    client.close();
  });

  test('network failure and timeout are typed', async () => {
    const c = await collector();
    const url = c.url;
    await c.close();
    const { client, state } = agentParts(url);
    state.set(STATE_DEVICE_TOKEN, 't');
    expect(await client.postEvents([])).toMatchObject({ kind: 'network' });
    const { createServer } = await import('node:http');
    const hang = createServer(() => {}); // accepts, never answers
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    const { client: slow, state: s2 } = agentParts(
      `http://127.0.0.1:${(hang.address() as { port: number }).port}`,
      {
        timeoutMs: 200,
      },
    );
    s2.set(STATE_DEVICE_TOKEN, 't');
    expect(await slow.postEvents([])).toMatchObject({ kind: 'timeout' });
    hang.closeAllConnections();
    hang.close();
  });

  test('HTTPS with a pinned CA: trusted when pinned, refused with another CA or the system CAs', async () => {
    const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=test-ca',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    ]);
    ssl([
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      'srv.key',
      '-out',
      'srv.csr',
    ]);
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    ssl([
      'x509',
      '-req',
      '-in',
      'srv.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      'san.ext',
      '-out',
      'srv.pem',
    ]);
    ssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=other-ca',
      '-keyout',
      'other.key',
      '-out',
      'other.pem',
    ]);
    const c = await collector({
      tls: { cert: readFileSync(join(dir, 'srv.pem')), key: readFileSync(join(dir, 'srv.key')) },
    });
    expect(c.url.startsWith('https://')).toBe(true);
    const pinned = agentParts(c.url, { caFile: join(dir, 'ca.pem') });
    expect(await pinned.client.enroll()).toEqual({ kind: 'enrolled' });
    pinned.outbox.emit('agent.stopped', { reason: 'tls' });
    await pinned.shipper.flushNow();
    expect(pinned.outbox.depth()).toBe(0);
    for (const extra of [{ caFile: join(dir, 'other.pem') }, {}]) {
      const other = agentParts(c.url, extra);
      const r = await other.client.enroll();
      expect(r.kind).toBe('network');
      other.client.close();
    }
    pinned.client.close();
  });
});

describe('Shipper against the real collector (in process)', () => {
  test('413 from the body limit splits batches; an event that never fits is set aside', async () => {
    const c = await collector({ limits: { maxBodyBytes: 16 * 1024 } });
    const device = 'dev-413';
    const { outbox, shipper, client } = agentParts(c.url, {}, device);
    for (let i = 0; i < 200; i++) outbox.emit('agent.stopped', { reason: `r${i}-${'x'.repeat(200)}` });
    // a process event whose (redacted, capped) command line alone exceeds the collector's body limit
    const huge = outbox.emit('process.audited', {
      uid: 1000,
      user: 'alice',
      pid: 1,
      ppid: 0,
      name: 'node',
      exe: '/usr/bin/node',
      argv: Array.from({ length: 6 }, () => 'a'.repeat(4000)),
      start_time: 1,
      tty: null,
      rule: { id: 'r', name: 'R', action: 'audit' },
      reason: 'name',
      policy_version: 1,
      mode: 'enforce',
      outcome: { action_taken: 'audited', latency_ms: 0, error: null },
    });
    expect(huge).not.toBeNull();
    outbox.emit('agent.stopped', { reason: 'after the huge one' });
    await shipper.flushNow();
    await waitFor(() => outbox.depth() === 0, 'queue drained');
    const got = await c.store.queryEvents({ deviceId: device, limit: 1000 });
    expect(got.length).toBe(201);
    expect(got.some((r) => (JSON.parse(r.body) as { id: string }).id === huge?.id)).toBe(false);
    expect(outbox.status().set_aside_total).toBe(1);
    expect(outbox.list({ limit: 1000 }).find((l) => l.event.id === huge?.id)?.reason).toContain('413');
    client.close();
  });

  test('a block whose command line was padded to the redaction limits still reaches the collector', async () => {
    const c = await collector();
    const device = 'dev-padded';
    const { outbox, shipper, client } = agentParts(c.url, {}, device);
    // what redaction lets through at most: 256 arguments of 4 KiB (plus its own summary item);
    // a developer can pad a banned tool's command line like this to hide the block from the SIEM
    const argv = ['claude', ...Array.from({ length: 255 }, () => 'é'.repeat(4096)), '[+9 more arguments]'];
    const blocked = outbox.emit('process.blocked', {
      uid: 1000,
      user: 'alice',
      pid: 7,
      ppid: 1,
      name: 'claude',
      exe: '/usr/local/bin/claude',
      argv,
      start_time: 1,
      tty: null,
      rule: { id: 'claude-code', name: 'Claude Code', action: 'block' },
      reason: 'name',
      policy_version: 1,
      mode: 'enforce',
      outcome: { action_taken: 'killed', latency_ms: 1, error: null },
    });
    expect(blocked).not.toBeNull();
    expect(validateEvent(blocked)).toEqual({ ok: true });
    await shipper.flushNow();
    expect(outbox.status().set_aside_total).toBe(0);
    const got = await c.store.queryEvents({ deviceId: device, limit: 10 });
    expect(got).toHaveLength(1);
    const stored = JSON.parse((got[0] as { body: string }).body) as { argv: string[] };
    expect(stored).toEqual(blocked);
    expect(stored.argv[0]).toBe('claude');
    expect(stored.argv.at(-1)).toMatch(/^\[\+\d+ more arguments\]$/);
    client.close();
  });

  test('an event the collector rejects as invalid is set aside; the rest of the batch is stored', async () => {
    const c = await collector();
    const { db, outbox, shipper, client } = agentParts(c.url);
    for (let i = 0; i < 10; i++) outbox.emit('agent.stopped', { reason: i === 4 ? 'poison' : `ok${i}` });
    // A stored event the collector refuses (as one written by another agent version would be):
    // the reason becomes a number, the row keeps its byte length.
    const changed = db
      .prepare(
        `UPDATE outbox SET body = replace(body, '"reason":"poison"', '"reason":12345678')
         WHERE instr(body, '"reason":"poison"') > 0`,
      )
      .run().changes;
    expect(changed).toBe(1);
    await shipper.flushNow();
    expect(outbox.depth()).toBe(0);
    expect(outbox.status().set_aside_total).toBe(1);
    expect(shipper.status()).toMatchObject({ shipped_total: 9, set_aside: 1 });
    expect(outbox.list({ limit: 20 }).find((l) => l.state === 'set_aside')?.reason).toContain(
      '/reason: must be string',
    );
    expect(await c.store.queryEvents({ limit: 20 })).toHaveLength(9);
    client.close();
  });

  test('a token enrolled for another device id (device.id changed by config) is replaced, not used', async () => {
    const c = await collector();
    const first = agentParts(c.url, {}, 'dev-before');
    expect(await first.client.enroll()).toEqual({ kind: 'enrolled' });
    first.client.close();
    // same state DB, the device id now comes from config (e.g. MDM set device.id)
    const outbox = new OutboxStore({
      db: first.db,
      deviceId: 'dev-after',
      hostname: 'h',
      maxBytes: 1 << 26,
      logger,
    });
    const client = new CollectorClient({
      url: c.url,
      timeoutMs: 5000,
      state: first.state,
      deviceId: 'dev-after',
      hostname: 'h',
      enrollSecret: SECRET,
      logger,
    });
    const shipper = new Shipper({
      outbox,
      client,
      batchMaxEvents: 100,
      batchMaxBytes: 1 << 20,
      intervalMs: 3_600_000,
      backoffMaxS: 1,
      logger,
    });
    for (let i = 0; i < 3; i++) outbox.emit('agent.stopped', { reason: `moved${i}` });
    await shipper.flushNow();
    expect(outbox.status().set_aside_total).toBe(0);
    expect(outbox.depth()).toBe(0);
    expect(await c.store.queryEvents({ deviceId: 'dev-after', limit: 10 })).toHaveLength(3);
    client.close();
  });

  test('the per-token rate limit (429 + Retry-After) is honoured and everything arrives', async () => {
    const c = await collector({ limits: { ratePerS: 2, rateBurst: 1 } });
    const { outbox, shipper, client } = agentParts(c.url, {}, 'dev-429', 10);
    for (let i = 0; i < 30; i++) outbox.emit('agent.stopped', { reason: `r${i}` });
    shipper.start();
    await waitFor(() => shipper.status().last_error?.includes('HTTP 429'), 'a 429 from the rate limit', {
      timeoutMs: 20_000,
    });
    await waitFor(() => outbox.depth() === 0, 'all delivered under the rate limit', { timeoutMs: 20_000 });
    expect(await c.store.queryEvents({ deviceId: 'dev-429', limit: 100 })).toHaveLength(30);
    await shipper.stop();
    client.close();
  });
});
