import { statSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuardError, isGuardError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { callDaemon } from '../../src/control/control-client.js';
import {
  type ControlLimits,
  ControlServer,
  DEFAULT_CONTROL_LIMITS,
} from '../../src/control/control-server.js';
import type { ControlMethods } from '../../src/control/protocol.js';
import { MAX_REQUEST_BYTES } from '../../src/control/protocol.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgc-');
const pub = join(dir, 'guardd.sock');
const admin = join(dir, 'admin.sock');
let server: ControlServer;
const extraServers: ControlServer[] = [];
afterAll(() => Promise.all(extraServers.map((s) => s.stop())));

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return isGuardError(err) ? err.code : `not a GuardError: ${err}`;
  }
  return 'resolved';
}

interface RawClient {
  readonly socket: Socket;
  /** Complete answer lines received so far. */
  readonly lines: string[];
  /** Bytes received so far. */
  received(): number;
  /** Resolves when the server closed (or reset) the connection. */
  readonly closed: Promise<void>;
  isClosed(): boolean;
}

/** A raw client that records what it receives; `paused` ones do not read (the attack). */
function connect(path: string, { paused = false } = {}): RawClient {
  const socket = createConnection(path);
  const lines: string[] = [];
  let buf = '';
  let bytes = 0;
  let isClosed = false;
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    bytes += Buffer.byteLength(d);
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  });
  if (paused) socket.pause();
  const closed = new Promise<void>((resolve) => {
    socket.on('close', () => {
      isClosed = true;
      resolve();
    });
    socket.on('error', () => undefined); // a reset is a close too
  });
  return { socket, lines, received: () => bytes, closed, isClosed: () => isClosed };
}

/** A server on fresh socket paths with the given limits and methods (stopped after the file). */
async function startServer(
  name: string,
  limits: Partial<ControlLimits>,
  methods: ControlMethods,
): Promise<{ server: ControlServer; pub: string; admin: string }> {
  const p = join(dir, `${name}.sock`);
  const a = join(dir, `${name}-a.sock`);
  const s = new ControlServer({ publicPath: p, adminPath: a, logger: silentLogger(), methods, limits });
  await s.start();
  extraServers.push(s);
  return { server: s, pub: p, admin: a };
}

beforeAll(async () => {
  server = new ControlServer({
    publicPath: pub,
    adminPath: admin,
    logger: silentLogger(),
    methods: {
      status: { admin: false, summary: 's', handle: () => ({ ok: 1 }) },
      echo: { admin: false, summary: 'e', handle: (p) => p },
      reload: { admin: true, summary: 'r', handle: () => 'reloaded' },
      fail: {
        admin: false,
        summary: 'f',
        handle: () => {
          throw new GuardError('GUARD_QUARANTINE_NOT_FOUND', 'no such id');
        },
      },
    },
  });
  await server.start();
});
afterAll(() => server.stop());

describe('control socket', () => {
  it('answers read-only methods on the public socket, every method on the admin socket', async () => {
    expect(await callDaemon(pub, 'status')).toEqual({ ok: 1 });
    expect(await callDaemon(pub, 'echo', { a: [1, 'x'] })).toEqual({ a: [1, 'x'] });
    expect(await callDaemon(admin, 'reload')).toBe('reloaded');
    expect(await codeOf(callDaemon(pub, 'reload'))).toBe('GUARD_CONTROL_FORBIDDEN');
  });

  it('creates the public socket world-connectable and the admin socket owner-only', () => {
    expect(statSync(pub).mode & 0o777).toBe(0o666);
    expect(statSync(admin).mode & 0o777).toBe(0o600);
  });

  it('passes method errors through with their code', async () => {
    expect(await codeOf(callDaemon(pub, 'fail'))).toBe('GUARD_QUARANTINE_NOT_FOUND');
    expect(await codeOf(callDaemon(pub, 'nope'))).toBe('GUARD_CONTROL_UNKNOWN_METHOD');
    expect(await codeOf(callDaemon(pub, '__proto__'))).toBe('GUARD_CONTROL_UNKNOWN_METHOD');
  });

  const hostile: [string, string | Buffer][] = [
    ['not JSON', 'hello\n'],
    ['an array', '[1,2]\n'],
    ['method not a string', '{"id":1,"method":5}\n'],
    ['params not an object', '{"id":1,"method":"echo","params":[1]}\n'],
    ['oversized line', `${'x'.repeat(MAX_REQUEST_BYTES + 10)}\n`],
    ['oversized, no newline yet', 'x'.repeat(MAX_REQUEST_BYTES + 10)],
    ['binary (not UTF-8)', Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x0a])],
    ['NUL bytes inside JSON', '{"id":1,"method":"st\u0000atus"}\n'],
    ['a valid request pipelined after garbage', 'garbage\n{"id":2,"method":"status"}\n'],
  ];
  it.each(hostile)(
    'refuses %s with GUARD_CONTROL_BAD_REQUEST, closes the connection and keeps serving',
    async (_n, payload) => {
      const c = connect(pub);
      c.socket.write(payload);
      await c.closed;
      expect(c.lines).toHaveLength(1);
      const res = JSON.parse(c.lines[0] as string);
      expect(res.ok).toBe(false);
      expect(res.error.code).toBe('GUARD_CONTROL_BAD_REQUEST');
      expect(await callDaemon(pub, 'status')).toEqual({ ok: 1 });
    },
  );

  it('refuses the same hostile input on the admin socket', async () => {
    const c = connect(admin);
    c.socket.write(Buffer.from([0xc3, 0x28, 0x0a]));
    await c.closed;
    expect(JSON.parse(c.lines[0] as string).error.code).toBe('GUARD_CONTROL_BAD_REQUEST');
    expect(await callDaemon(admin, 'reload')).toBe('reloaded');
  });

  it('keeps a connection open across method errors and answers pipelined requests in order', async () => {
    const c = connect(pub);
    c.socket.write('{"id":1,"method":"fail"}\n{"id":2,"method":"nope"}\n{"id":3,"method":"status"}\n');
    await waitFor(() => c.lines.length === 3, 'three answers');
    expect(c.lines.map((l) => JSON.parse(l).id)).toEqual([1, 2, 3]);
    expect(JSON.parse(c.lines[2] as string).result).toEqual({ ok: 1 });
    c.socket.destroy();
  });

  it('reports a missing daemon as GUARD_CONTROL_DAEMON_NOT_RUNNING', async () => {
    expect(await codeOf(callDaemon(join(dir, 'absent.sock'), 'status'))).toBe(
      'GUARD_CONTROL_DAEMON_NOT_RUNNING',
    );
  });

  it('refuses to start a second server on a socket that answers', async () => {
    const second = new ControlServer({
      publicPath: pub,
      adminPath: join(dir, 'a2.sock'),
      logger: silentLogger(),
      methods: {},
    });
    expect(await codeOf(second.start())).toBe('GUARD_CONTROL_SOCKET_IN_USE');
  });
});

/** A method whose answer is `bytes` long, counting how often it ran. */
function bigMethod(bytes: number): { calls: () => number; methods: ControlMethods } {
  let calls = 0;
  const blob = 'b'.repeat(bytes);
  return {
    calls: () => calls,
    methods: {
      status: { admin: false, summary: 's', handle: () => ({ ok: 1 }) },
      big: {
        admin: false,
        summary: 'b',
        handle: () => {
          calls++;
          return blob;
        },
      },
    },
  };
}

describe('bounded cost per client', () => {
  it('does not read pipelined requests while a client leaves its answers unread, and loses none', async () => {
    const ANSWER = 512 * 1024;
    const REQUESTS = 200;
    const big = bigMethod(ANSWER);
    const { server: s, pub: p } = await startServer('pipe', {}, big.methods);
    const attacker = connect(p, { paused: true });
    attacker.socket.write(
      Array.from({ length: REQUESTS }, (_, i) => `{"id":${i + 1},"method":"big"}\n`).join(''),
    );
    await waitFor(() => s.stats().unsent_bytes > 0, 'an answer left unread');
    // another client is answered meanwhile (and the pipeline had every chance to run)
    expect(await callDaemon(p, 'status')).toEqual({ ok: 1 });
    expect(await callDaemon(p, 'status')).toEqual({ ok: 1 });
    expect(big.calls()).toBeLessThanOrEqual(4);
    expect(s.stats().unsent_bytes).toBeLessThanOrEqual(
      DEFAULT_CONTROL_LIMITS.perConnectionUnsentBytes + ANSWER + 1024,
    );
    // once the client reads, every request is answered, in order
    attacker.socket.resume();
    await waitFor(() => attacker.lines.length === REQUESTS, `${REQUESTS} answers`, { timeoutMs: 60_000 });
    expect(attacker.lines.map((l) => JSON.parse(l).id)).toEqual(
      Array.from({ length: REQUESTS }, (_, i) => i + 1),
    );
    expect(big.calls()).toBe(REQUESTS);
    attacker.socket.destroy();
  });

  it('keeps all unsent answers under the total budget by closing the client that waited longest', async () => {
    const ANSWER = 2 * 1024 * 1024;
    const TOTAL = 4 * 1024 * 1024; // two answers: the kernel takes only a few hundred KiB of each
    const big = bigMethod(ANSWER);
    const { server: s, pub: p } = await startServer('total', { totalUnsentBytes: TOTAL }, big.methods);
    const readers: RawClient[] = [];
    for (let i = 0; i < 6; i++) {
      const c = connect(p, { paused: true });
      readers.push(c);
      c.socket.write('{"id":1,"method":"big"}\n');
      await waitFor(() => big.calls() === i + 1, `answer ${i + 1} produced`);
      expect(s.stats().unsent_bytes).toBeLessThanOrEqual(TOTAL + ANSWER);
    }
    expect(s.stats().connections).toBeLessThan(6);
    expect(await callDaemon(p, 'status')).toEqual({ ok: 1 });
    // a paused client sees the close only once it reads: the first one was cut mid-answer ...
    const first = readers[0] as RawClient;
    first.socket.resume();
    await first.closed;
    expect(first.lines).toEqual([]);
    expect(first.received()).toBeLessThan(ANSWER);
    // ... the last one still gets its whole answer
    const last = readers[5] as RawClient;
    last.socket.resume();
    await waitFor(() => last.lines.length === 1, 'the last answer');
    expect(JSON.parse(last.lines[0] as string).result).toHaveLength(ANSWER);
    for (const c of readers) c.socket.destroy();
  });

  it('evicts the longest-idle connection when full, so a newcomer is always answered', async () => {
    const MAX = 8;
    const {
      server: s,
      pub: p,
      admin: a,
    } = await startServer(
      'evict',
      { maxConnectionsPerSocket: MAX },
      { status: { admin: false, summary: 's', handle: () => ({ ok: 1 }) } },
    );
    const idle: RawClient[] = [];
    for (let i = 0; i < MAX * 3; i++) {
      idle.push(connect(p));
      await waitFor(() => s.stats().connections === Math.min(i + 1, MAX), `${i + 1} connections`);
    }
    expect(await callDaemon(p, 'status')).toEqual({ ok: 1 });
    // the oldest were told why before being closed; the newest are still open
    await idle[0]?.closed;
    expect(JSON.parse(idle[0]?.lines[0] as string).error.code).toBe('GUARD_CONTROL_BUSY');
    expect(idle.at(-1)?.isClosed()).toBe(false);
    // the admin socket has its own table: a full public socket does not touch it
    expect(await codeOf(callDaemon(a, 'nope'))).toBe('GUARD_CONTROL_UNKNOWN_METHOD');
    for (const c of idle) c.socket.destroy();
  });

  it('answers GUARD_CONTROL_BUSY (not silence) when every slot is answering a request', async () => {
    const MAX = 4;
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let started = 0;
    const { pub: p } = await startServer(
      'busy',
      { maxConnectionsPerSocket: MAX },
      {
        status: { admin: false, summary: 's', handle: () => ({ ok: 1 }) },
        hold: {
          admin: false,
          summary: 'h',
          handle: async () => {
            started++;
            await held;
            return 'done';
          },
        },
      },
    );
    const holders = Array.from({ length: MAX }, () => callDaemon(p, 'hold'));
    await waitFor(() => started === MAX, 'every slot answering');
    expect(await codeOf(callDaemon(p, 'status'))).toBe('GUARD_CONTROL_BUSY');
    release();
    expect(await Promise.all(holders)).toEqual(Array(MAX).fill('done'));
    expect(await callDaemon(p, 'status')).toEqual({ ok: 1 });
  });

  /**
   * Sends `bytes` one per chunk, `intervalMs` apart (the pace is the attack, not synchronisation),
   * until the server closes the connection; returns how many chunks went out before the close.
   */
  async function trickle(c: RawClient, bytes: string, intervalMs: number): Promise<number> {
    let sent = 0;
    for (const b of bytes) {
      if (c.isClosed()) break;
      c.socket.write(b);
      sent++;
      await Promise.race([c.closed, new Promise((r) => setTimeout(r, intervalMs))]);
    }
    return sent;
  }

  it('counts the request deadline from its first byte: a trickle of chunks does not extend it', async () => {
    // chunks arrive 4 times per deadline, so a deadline re-armed by each chunk would never fire
    // and the whole request (28 chunks = 7 deadlines) would be answered
    const deadlineMs = 400;
    const { server: s, pub: p } = await startServer(
      'trickle',
      { requestDeadlineMs: deadlineMs },
      {
        status: { admin: false, summary: 's', handle: () => ({ ok: 1 }) },
      },
    );
    const request = '{"id":1,"method":"status"}\n';
    const c = connect(p);
    const sent = await trickle(c, request, deadlineMs / 4);
    await c.closed;
    expect(c.lines).toEqual([]); // closed without an answer (docs/security.md: "Slow and idle clients are cut")
    expect(sent).toBeLessThan(request.length);
    await waitFor(() => s.stats().connections === 0, 'connection dropped from the table', { intervalMs: 20 });
    expect(await callDaemon(p, 'status')).toEqual({ ok: 1 });
  });

  it('counts the idle timeout from the last request: trickled blank lines do not extend it', async () => {
    const idleMs = 400;
    const { pub: p } = await startServer(
      'blank',
      { idleTimeoutMs: idleMs },
      {
        status: { admin: false, summary: 's', handle: () => ({ ok: 1 }) },
      },
    );
    const c = connect(p);
    const blanks = '\n'.repeat(28);
    const sent = await trickle(c, blanks, idleMs / 4);
    await c.closed;
    expect(c.lines).toEqual([]);
    expect(sent).toBeLessThan(blanks.length);
  });

  it('closes idle connections, trickled requests and unread answers after their deadlines', async () => {
    const big = bigMethod(1024 * 1024);
    const { server: s, pub: p } = await startServer(
      'deadline',
      { idleTimeoutMs: 300, requestDeadlineMs: 300, deliveryDeadlineMs: 300 },
      big.methods,
    );
    const idle = connect(p);
    const trickle = connect(p);
    trickle.socket.write('{"id":1,"meth');
    const reader = connect(p, { paused: true });
    reader.socket.write('{"id":1,"method":"big"}\n');
    await Promise.all([idle.closed, trickle.closed]);
    expect(trickle.lines).toEqual([]);
    await waitFor(() => s.stats().connections === 0, 'no connection left', { intervalMs: 50 });
    expect(s.stats().unsent_bytes).toBe(0);
    reader.socket.resume(); // the non-reader sees its connection cut once it reads
    await reader.closed;
    expect(reader.lines).toEqual([]);
    expect(await callDaemon(p, 'status')).toEqual({ ok: 1 });
  });
});
