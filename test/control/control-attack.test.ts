/**
 * The public control socket under attack by a real unprivileged user (created here, removed after):
 * a real root guardd with a full events page to serve, an attacker script run with the user's
 * uid/gid (test/helpers/control-attacker.ts). guardd's memory is read from /proc (VmHWM: the peak
 * RSS, so no sampling is needed).
 * Needs root (to start guardd as root and to create the user), like CI.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONTROL_LIMITS } from '../../src/control/control-server.js';
import { MAX_REQUEST_BYTES } from '../../src/control/protocol.js';
import { ControlAttacker, memoryOf, seedFullEventsPage } from '../helpers/control-attacker.js';
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
let attacker: ControlAttacker;

/** guardctl status run as the unprivileged user, as any developer would. */
function statusAsUser(): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'bin', 'guardctl.js'), '--socket-dir', guardd.socketDir, 'status', '--json'],
    { uid, gid, encoding: 'utf8', timeout: 30_000, cwd: dir },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
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
  attacker = new ControlAttacker(dir, uid, gid);

  // a history worth listing: events.list with limit 5000 answers a full 8 MiB page
  const stateDir = join(dir, 'agent', 'state');
  mkdirSync(join(dir, 'agent'), { mode: 0o755 }); // the socket dir below it must be reachable
  mkdirSync(stateDir, { mode: 0o700 });
  seedFullEventsPage(stateDir);

  guardd = await startGuardd(join(dir, 'agent'), {});
  publicSocket = join(guardd.socketDir, 'guardd.sock');
}, 60_000);

afterAll(async () => {
  await attacker?.stopAll();
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
    const before = memoryOf(pid);
    const CONNS = 12; // 12 × 8 MiB unread pages: six times the total unsent budget
    const REQUESTS = 200;
    const attack = attacker.start(['pipeline', publicSocket, String(CONNS), String(REQUESTS)]);
    // every connection was answered once (or cut to stay in budget)
    await waitFor(() => attack.lines().length === CONNS, 'every attacking connection served or cut', {
      timeoutMs: 60_000,
    });
    const during = statusAsUser();
    expect(during.stderr).toBe('');
    expect(during.code).toBe(0);
    expect(JSON.parse(during.stdout).running).toBe(true);
    const after = memoryOf(pid);
    expect(after.hwm - before.hwm).toBeLessThan(ATTACK_PEAK_GROWTH_BYTES);
    expect(after.hwm).toBeLessThan(UNIT_MEMORY_MAX_BYTES);
    expect(guardd.child.exitCode).toBeNull();
    await attacker.stop(attack.child);
  }, 90_000);

  it('more idle connections than the cap: a fresh guardctl status still answers', async () => {
    const N = DEFAULT_CONTROL_LIMITS.maxConnectionsPerSocket + 40;
    const attack = attacker.start(['idle', publicSocket, String(N)]);
    await waitFor(() => attack.lines().some((l) => l.connected === N), `${N} idle connections`);
    for (let i = 0; i < 3; i++) {
      const r = statusAsUser();
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    expect(guardd.child.exitCode).toBeNull();
    await attacker.stop(attack.child);
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
      const attack = attacker.start(['hostile', publicSocket, '', payload.toString('base64')]);
      const answer = await waitFor(() => attack.lines()[0], 'the connection closed by guardd');
      const line = String(answer.answer).split('\n')[0] as string;
      expect(JSON.parse(line)).toMatchObject({ ok: false, error: { code: 'GUARD_CONTROL_BAD_REQUEST' } });
      expect(statusAsUser().code).toBe(0);
      await attacker.stop(attack.child);
    },
  );
});
