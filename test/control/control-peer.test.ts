/**
 * Per-uid limits of the public control socket, with real unprivileged users (created here with the
 * `tgpu` prefix, removed after) whose clients are plain Node scripts run with their uid/gid; the
 * server runs in this root process and reads their uids with the real native addon. Also the
 * fallback when the addon is unavailable (an injected failing loader). Needs root, like CI.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuardError } from '../../src/common/errors.js';
import { createRootLogger, silentLogger } from '../../src/common/logger.js';
import { callDaemon } from '../../src/control/control-client.js';
import { type ControlLimits, ControlServer } from '../../src/control/control-server.js';
import type { ControlMethods } from '../../src/control/protocol.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, spawnAs, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgpu-');
chmodSync(dir, 0o755);
const servers: ControlServer[] = [];
afterAll(() => Promise.all(servers.map((s) => s.stop())));
let attacker: TestUser;
let other: TestUser;
const script = join(dir, 'client.mjs');

/**
 * A client run as a test user. `hold N`: N connections at once, kept open, never reading past a
 * first line. `big N`: N connections one after the other, each asking for `big` and pausing after
 * the first chunk of the answer (so a close is not seen). Reports {connected}, {answered} and
 * {closed, first} for each closed one.
 */
const CLIENT = String.raw`
import { createConnection } from 'node:net';
const [mode, path, n] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
let connected = 0;
let closed = 0;
function open(i, onFirst) {
  const s = createConnection(path);
  let buf = '';
  let done = false;
  const fin = () => { if (!done) { done = true; out({ closed: ++closed, conn: i, first: buf.split('\n')[0] }); } };
  s.setEncoding('utf8');
  s.on('data', (d) => { if (buf.length < 200) buf += d; if (onFirst) { s.pause(); out({ answered: i }); const f = onFirst; onFirst = null; f(); } });
  s.on('error', fin);
  s.on('close', fin);
  s.on('connect', () => {
    out({ connected: ++connected, conn: i });
    if (mode === 'big') s.write(JSON.stringify({ id: i, method: 'big' }) + '\n');
  });
}
if (mode === 'hold') for (let i = 0; i < Number(n); i++) open(i, null);
else { let i = 0; const next = () => { if (i < Number(n)) open(i++, next); }; next(); }
setInterval(() => {}, 1 << 30);
`;

interface Client {
  readonly child: ChildProcess;
  readonly reports: Record<string, unknown>[];
  closed(): Record<string, unknown>[];
}

function runAs(user: TestUser, args: string[]): Client {
  const child = spawnAs(user, process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const reports: Record<string, unknown>[] = [];
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      reports.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  });
  return { child, reports, closed: () => reports.filter((r) => 'closed' in r) };
}

/** A root client that stays connected and records answer lines (paused: does not read). */
function rootClient(
  path: string,
  { paused = false } = {},
): { socket: Socket; lines: string[]; isClosed(): boolean } {
  const socket = createConnection(path);
  const lines: string[] = [];
  let buf = '';
  let closed = false;
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  });
  socket.on('close', () => {
    closed = true;
  });
  socket.on('error', () => undefined);
  if (paused) socket.pause();
  return { socket, lines, isClosed: () => closed };
}

const statusMethods: ControlMethods = { status: { admin: false, summary: 's', handle: () => ({ ok: 1 }) } };

async function startServer(
  name: string,
  limits: Partial<ControlLimits>,
  methods: ControlMethods = statusMethods,
  extra: Partial<ConstructorParameters<typeof ControlServer>[0]> = {},
): Promise<{ server: ControlServer; pub: string }> {
  const pub = join(dir, `${name}.sock`);
  const server = new ControlServer({
    publicPath: pub,
    adminPath: join(dir, `${name}-a.sock`),
    logger: silentLogger(),
    methods,
    limits,
    ...extra,
  });
  await server.start();
  servers.push(server);
  return { server, pub };
}

const conns = (s: ControlServer, uid: number): number => s.stats().by_uid[String(uid)]?.connections ?? 0;

beforeAll(() => {
  attacker = createTestUser('tgpu');
  other = createTestUser('tgpu');
  writeFileSync(script, CLIENT);
  chmodSync(script, 0o644);
});

describe('per-uid limits on the public control socket', () => {
  it("an unprivileged user opening 100 connections evicts only its own: root's and another user's stay served", async () => {
    const { server, pub } = await startServer('flood', {}); // the real defaults: 64 per socket, 16 per uid
    expect(server.stats().peer_uid).toBe('available');
    const root = rootClient(pub);
    await waitFor(() => conns(server, 0) === 1, "root's connection");
    const bystander = runAs(other, ['hold', pub, '1']);
    await waitFor(() => conns(server, other.uid) === 1, "the other user's connection");

    const flood = runAs(attacker, ['hold', pub, '100']);
    // every connection was accepted: 100 - 16 were closed, each one of the attacker's own
    await waitFor(() => flood.closed().length === 84, '84 of the attacker’s connections closed', {
      timeoutMs: 30_000,
    });
    expect(conns(server, attacker.uid)).toBe(16);
    expect(
      flood.closed().every((r) => JSON.parse(r.first as string).error.code === 'GUARD_CONTROL_BUSY'),
    ).toBe(true);
    expect(root.isClosed()).toBe(false);
    expect(bystander.closed()).toEqual([]);
    expect(conns(server, other.uid)).toBe(1);
    // root's held connection still answers, and so does a fresh status request (guardctl's)
    root.socket.write(`${JSON.stringify({ id: 7, method: 'status' })}\n`);
    await waitFor(() => root.lines.length === 1, "the answer on root's held connection");
    expect(JSON.parse(root.lines[0] as string)).toEqual({ id: 7, ok: true, result: { ok: 1 } });
    expect(await callDaemon(pub, 'status')).toEqual({ ok: 1 });
    root.socket.destroy();
  });

  it('a full table evicts from the uid holding the most connections, not the longest-idle root one', async () => {
    const { server, pub } = await startServer('full', {
      maxConnectionsPerSocket: 8,
      maxConnectionsPerUid: 4,
    });
    const root = rootClient(pub); // the oldest, so plain longest-idle eviction would pick it
    await waitFor(() => conns(server, 0) === 1, "root's connection");
    const a = runAs(attacker, ['hold', pub, '4']);
    await waitFor(() => conns(server, attacker.uid) === 4, "the attacker's 4");
    const b = runAs(other, ['hold', pub, '3']);
    await waitFor(() => conns(server, other.uid) === 3 && server.stats().connections === 8, 'a full table');
    const b2 = runAs(other, ['hold', pub, '1']);
    await waitFor(() => a.closed().length === 1, "one of the attacker's connections closed");
    await waitFor(() => conns(server, other.uid) === 4, "the other user's newcomer");
    expect(a.closed()[0]?.conn).toBe(0); // the attacker's longest-idle one
    expect(b.closed()).toEqual([]);
    expect(b2.closed()).toEqual([]);
    expect(root.isClosed()).toBe(false);
    root.socket.destroy();
  });

  it("one uid's unread answers are capped at its share: its own longest-waiting reader is closed, root's is not", async () => {
    const MiB = 1024 * 1024;
    const big = 'x'.repeat(2 * MiB);
    const { server, pub } = await startServer(
      'unsent',
      { perUidUnsentBytes: 5 * MiB },
      { big: { admin: false, summary: 'b', handle: () => big } },
    );
    const root = rootClient(pub, { paused: true });
    root.socket.write(`${JSON.stringify({ id: 1, method: 'big' })}\n`);
    await waitFor(() => (server.stats().by_uid['0']?.unsent_bytes ?? 0) > MiB, "root's unread answer");
    // 4 × 2 MiB answers, none read past the first chunk: over the 5 MiB share by the third
    const x = runAs(attacker, ['big', pub, '4']);
    await waitFor(() => x.reports.filter((r) => 'answered' in r).length === 4, 'all 4 answers started', {
      timeoutMs: 30_000,
    });
    // the third and fourth answers each closed the attacker's longest-waiting reader (its client is
    // paused, so it does not see the close): 2 × 2 MiB unsent stay, within the 5 MiB share
    const mine = server.stats().by_uid[String(attacker.uid)];
    expect(mine?.connections).toBe(2);
    expect(mine?.unsent_bytes).toBeLessThanOrEqual(5 * MiB);
    expect(mine?.unsent_bytes).toBeGreaterThan(2 * MiB);
    expect(root.isClosed()).toBe(false);
    root.socket.destroy();
  });
});

describe('without the peer credentials addon', () => {
  it('logs once, reports peer_uid unavailable, and keeps the per-connection limits', async () => {
    const logged: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n')) if (l) logged.push(JSON.parse(l));
        cb();
      },
    });
    let loads = 0;
    const { server, pub } = await startServer('fallback', { maxConnectionsPerSocket: 4 }, statusMethods, {
      logger: createRootLogger('info', sink),
      loadPeerCredentials: () => {
        loads++;
        throw new GuardError('GUARD_PEERCRED_UNAVAILABLE', 'injected: no addon');
      },
    });
    expect(loads).toBe(1);
    expect(server.stats().peer_uid).toBe('unavailable');
    await waitFor(
      () => logged.some((l) => String(l.msg).includes('peer credentials unavailable')),
      'the warning',
    );
    // an unprivileged user's connections are not told apart: plain longest-idle eviction, root's included
    const root = rootClient(pub);
    await waitFor(() => server.stats().connections === 1, "root's connection");
    const a = runAs(attacker, ['hold', pub, '6']);
    // 7 connections on a table of 4: root's (the oldest) and two of the user's are evicted
    await waitFor(() => a.closed().length === 2 && root.isClosed(), 'eviction by connection age');
    expect(server.stats().by_uid).toEqual({ unknown: { connections: 4, unsent_bytes: 0 } });
    expect(await callDaemon(pub, 'status')).toEqual({ ok: 1 });
    expect(logged.filter((l) => String(l.msg).includes('peer credentials unavailable'))).toHaveLength(1);
  });
});
