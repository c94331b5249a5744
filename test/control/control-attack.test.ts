/**
 * The public control socket under attack by a real unprivileged user (created here, removed after):
 * a real root guardd with a full events page to serve, an attacker script run with the user's
 * uid/gid. guardd's memory is read from /proc (VmHWM: the peak RSS, so no sampling is needed).
 * Needs root (to start guardd as root and to create the user), like CI.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import { DEFAULT_CONTROL_LIMITS } from '../../src/control/control-server.js';
import { MAX_REQUEST_BYTES } from '../../src/control/protocol.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { OutboxStore } from '../../src/store/outbox-store.js';
import { type Guardd, ROOT, startGuardd } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;
/**
 * What the attack may add to guardd's peak RSS (docs/security.md). The control sockets retain at
 * most ~50 MiB by construction, but each 8 MiB events page costs ~50 MiB of short-lived heap that
 * V8 collects lazily: measured growth under this attack was 94–233 MiB over six runs, and a
 * legitimate client reading the same 12 pages in a row adds ~110 MiB. Against the previous server
 * (an unbounded write queue per connection) this test fails.
 */
const ATTACK_PEAK_GROWTH_BYTES = 320 * MiB;
/** The systemd unit's MemoryMax (service/linux/toolguard.service). */
const UNIT_MEMORY_MAX_BYTES = 512 * MiB;

const dir = tempDir('tgca-');
const user = `tgctl${randomBytes(3).toString('hex')}`;
let uid = 0;
let gid = 0;
let guardd: Guardd;
let publicSocket: string;
const attackers = new Set<ChildProcess>();

/** The attacker: plain Node, no toolguard code, run as the unprivileged user. */
const ATTACKER = String.raw`
import { createConnection } from 'node:net';
const [mode, path, a, b] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
if (mode === 'pipeline') {
  // a connections, each pipelining b events.list requests and never reading past a first chunk
  let seen = 0;
  const page = JSON.stringify({ method: 'events.list', params: { limit: 5000 } });
  for (let c = 0; c < Number(a); c++) {
    const s = createConnection(path);
    let done = false;
    const report = (how) => { if (!done) { done = true; out({ conn: c, how, seen: ++seen }); } };
    s.on('error', () => report('closed'));
    s.on('close', () => report('closed'));
    s.once('data', () => { s.pause(); report('answered'); });
    s.on('connect', () => {
      for (let i = 0; i < Number(b); i++) s.write(JSON.stringify({ id: i + 1, method: 'events.list', params: { limit: 5000 } }) + '\n');
    });
  }
} else if (mode === 'idle') {
  let open = 0;
  for (let c = 0; c < Number(a); c++) {
    const s = createConnection(path);
    s.on('error', () => {});
    s.on('connect', () => { if (++open === Number(a)) out({ connected: open }); });
  }
} else if (mode === 'hostile') {
  const s = createConnection(path);
  let buf = '';
  s.on('data', (d) => { buf += d; });
  s.on('error', () => {});
  s.on('close', () => { out({ answer: buf }); process.exit(0); });
  s.on('connect', () => s.write(Buffer.from(b, 'base64')));
}
setInterval(() => {}, 1 << 30); // stay until killed
`;

function startAttacker(args: string[]): { child: ChildProcess; lines: () => Record<string, unknown>[] } {
  const child = spawn(process.execPath, [join(dir, 'attacker.mjs'), ...args], {
    uid,
    gid,
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  attackers.add(child);
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  return {
    child,
    lines: () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function stopAttacker(child: ChildProcess): Promise<void> {
  attackers.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** guardctl status run as the unprivileged user, as any developer would. */
function statusAsUser(): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'bin', 'guardctl.js'), '--socket-dir', guardd.socketDir, 'status', '--json'],
    { uid, gid, encoding: 'utf8', timeout: 30_000, cwd: dir },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function memory(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1]) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('control-attack.test.ts needs root (as CI runs it)');
  const add = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', user], {
    encoding: 'utf8',
  });
  if (add.status !== 0) throw new Error(`useradd ${user}: ${add.stderr}`);
  uid = Number(spawnSync('id', ['-u', user], { encoding: 'utf8' }).stdout.trim());
  gid = Number(spawnSync('id', ['-g', user], { encoding: 'utf8' }).stdout.trim());
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'attacker.mjs'), ATTACKER, { mode: 0o644 });

  // a history worth listing: events.list with limit 5000 answers a full 8 MiB page
  const stateDir = join(dir, 'agent', 'state');
  mkdirSync(join(dir, 'agent'), { mode: 0o755 }); // the socket dir below it must be reachable
  mkdirSync(stateDir, { mode: 0o700 });
  const { db } = openDatabase(join(stateDir, 'guardd.db'), { migrations: MIGRATIONS });
  const outbox = new OutboxStore({
    db,
    deviceId: 'attack-test',
    hostname: 'attack-test',
    maxBytes: 64 * MiB,
    logger: silentLogger(),
  });
  db.transaction(() => {
    for (let i = 0; i < 5000; i++) outbox.emit('agent.stopped', { reason: 'r'.repeat(1600) });
  })();
  db.close();

  guardd = await startGuardd(join(dir, 'agent'), {});
  publicSocket = join(guardd.socketDir, 'guardd.sock');
}, 60_000);

afterAll(async () => {
  await Promise.all([...attackers].map(stopAttacker));
  spawnSync('userdel', [user]); // before anything that could time out and skip it
  await guardd?.stop();
});

describe('public socket under attack by an unprivileged user', () => {
  it('serves the attacker a full events page (the attack below is the real one)', () => {
    const r = spawnSync(
      process.execPath,
      [
        '-e',
        `import('${join(ROOT, 'dist/control/control-client.js')}').then(async (m) => {
          const r = await m.callDaemon(process.argv[1], 'events.list', { limit: 5000 });
          process.stdout.write(String(JSON.stringify(r).length));
        })`,
        publicSocket,
      ],
      { uid, gid, encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.stderr).toBe('');
    expect(Number(r.stdout)).toBeGreaterThan(7 * MiB);
  });

  it('pipelined events.list without reading: memory stays in budget and others are answered', async () => {
    const pid = guardd.child.pid as number;
    const before = memory(pid);
    const CONNS = 12; // 12 × 8 MiB unread pages: six times the total unsent budget
    const REQUESTS = 200;
    const attack = startAttacker(['pipeline', publicSocket, String(CONNS), String(REQUESTS)]);
    // every connection was answered once (or cut to stay in budget)
    await waitFor(() => attack.lines().length === CONNS, 'every attacking connection served or cut', {
      timeoutMs: 60_000,
    });
    const during = statusAsUser();
    expect(during.stderr).toBe('');
    expect(during.code).toBe(0);
    expect(JSON.parse(during.stdout).running).toBe(true);
    const after = memory(pid);
    expect(after.hwm - before.hwm).toBeLessThan(ATTACK_PEAK_GROWTH_BYTES);
    expect(after.hwm).toBeLessThan(UNIT_MEMORY_MAX_BYTES);
    expect(guardd.child.exitCode).toBeNull();
    await stopAttacker(attack.child);
  }, 90_000);

  it('more idle connections than the cap: a fresh guardctl status still answers', async () => {
    const N = DEFAULT_CONTROL_LIMITS.maxConnectionsPerSocket + 40;
    const attack = startAttacker(['idle', publicSocket, String(N)]);
    await waitFor(() => attack.lines().some((l) => l.connected === N), `${N} idle connections`);
    for (let i = 0; i < 3; i++) {
      const r = statusAsUser();
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    expect(guardd.child.exitCode).toBeNull();
    await stopAttacker(attack.child);
  });

  const hostile: [string, Buffer][] = [
    ['oversized', Buffer.from(`${'x'.repeat(MAX_REQUEST_BYTES + 1)}\n`)],
    ['oversized without a newline', Buffer.from('{'.repeat(MAX_REQUEST_BYTES + 1))],
    ['malformed JSON', Buffer.from('{"id":1,"method":\n')],
    ['binary (not UTF-8)', Buffer.from([...Array.from({ length: 4096 }, (_, i) => 0x80 + (i % 128)), 0x0a])],
  ];
  it.each(hostile)(
    '%s request: GUARD_CONTROL_BAD_REQUEST, connection closed, guardd runs on',
    async (_n, payload) => {
      const attack = startAttacker(['hostile', publicSocket, '', payload.toString('base64')]);
      const answer = await waitFor(() => attack.lines()[0], 'the connection closed by guardd');
      const line = String(answer.answer).split('\n')[0] as string;
      expect(JSON.parse(line)).toMatchObject({ ok: false, error: { code: 'GUARD_CONTROL_BAD_REQUEST' } });
      expect(statusAsUser().code).toBe(0);
      await stopAttacker(attack.child);
    },
  );
});
