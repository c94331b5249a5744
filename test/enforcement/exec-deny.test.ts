/**
 * Pre-exec deny end to end, as root on Linux, with real processes: guardd (dist/) with the execperm
 * addon marks the local file systems; banned programs (by name, by exe path, by sha256) are exec'd
 * every way a user would and must fail before they run (exit 126 / EPERM) with exactly one
 * `process.denied` event per attempt, while an unrelated program still runs. Then the safety
 * properties: a stalled event loop (test hook) never holds an exec past the deadline, SIGKILL of
 * guardd while execs run holds none, and monitor mode never denies.
 */
import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/control-client.js';
import { DENY_BURST } from '../../src/enforcement/denial-fold.js';
import { EXECPERM_ADDON_PATH, type ExecPermCounters } from '../../src/enforcement/exec-deny.js';
import { validateEvent } from '../../src/events/event-schema.js';
import type { PolicyRule } from '../../src/policy/policy-types.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  runGuardctl,
  type SigningKey,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { compileC } from '../sensors/hostile-fs.js';

const TRUE = realpathSync('/bin/true');
const SLEEP = realpathSync('/bin/sleep');
const dir = tempDir('tgdn-');
const TAG = randomBytes(4).toString('hex');
/** Names unique to this run: another test's guardd never bans them, and ours bans nothing else. */
const NAME = `tgdn-name-${TAG}`;
const PATH_DIR = join(dir, 'pathban');
/** A copy of `true` with bytes appended (an ELF runs with trailing data): its hash is unique. */
const HASHED = join(dir, `hashed-${TAG}`);
const SHM = `/dev/shm/tgdn-${TAG}`;
/** Content markers (a set: both must occur) unique to this run, and a copy of `true` carrying them. */
const MARKERS = [`tgdn-marker-one-${TAG}`, `tgdn-marker-two-${TAG}`];
const MARKED = join(dir, `marked-${TAG}`);
const DEADLINE_MS = 200;
/** Scheduling slack on a busy 2-core machine on top of the deadline (ms). */
const SLACK_MS = 1000;

let key: SigningKey;
let hash: string;

/** Refused execs in one loop: well past the burst recorded one by one. */
const FLOOD = DENY_BURST * 3;

function repeatsOf(e: Record<string, unknown>): number | undefined {
  return (e.outcome as { details: { repeats?: number } }).details.repeats;
}

function copyTrue(path: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  copyFileSync(TRUE, path);
  chmodSync(path, 0o755);
  return path;
}

function rules(): PolicyRule[] {
  return [
    {
      id: `tgdn-block-${TAG}`,
      name: 'tgdn banned tool',
      action: 'block',
      message: 'tgdn: not approved.',
      url: 'https://intranet.example/tgdn',
      process: { names: [NAME], exe_globs: [`${PATH_DIR}/**`], sha256: [hash], markers: [MARKERS] },
    },
  ];
}

function signedPolicy(file: string, mode: 'enforce' | 'monitor'): string {
  return writeSignedPolicy(file, policyBody(rules(), { version: 3, mode }), key);
}

async function startDeny(
  name: string,
  policyFile: string,
  extra: Record<string, unknown> = {},
): Promise<Guardd> {
  const g = await startGuardd(
    join(dir, name),
    {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
      'enforcement.exec_deny': 'auto',
      'enforcement.exec_deny_deadline_ms': DEADLINE_MS,
      ...extra,
    },
    { env: { TOOLGUARD_TEST_HOOKS: '1' } },
  );
  return g;
}

interface Status {
  enforcement: { denied: number; blocked: number };
  exec_deny: {
    state: string;
    reason?: string;
    marked: string[];
    counters: ExecPermCounters;
    file_reads: { sha256: Record<string, number>; markers: Record<string, number> };
  };
}

function status(g: Guardd): Promise<Status> {
  return callDaemon<Status>(join(g.socketDir, 'guardd.sock'), 'status');
}

async function events(g: Guardd, type: string): Promise<Record<string, unknown>[]> {
  const r = await callDaemon<{ events: { event: Record<string, unknown> }[] }>(
    join(g.socketDir, 'guardd.sock'),
    'events.list',
    { type, limit: 5000 },
  );
  return r.events.map((e) => e.event);
}

function run(cmd: string, args: readonly string[]): SpawnSyncReturns<string> & { ms: number } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  return Object.assign(r, { ms: performance.now() - t0 });
}

beforeAll(() => {
  key = makeKey();
  mkdirSync(PATH_DIR, { recursive: true });
  writeFileSync(HASHED, Buffer.concat([readFileSync(TRUE), randomBytes(64)]));
  chmodSync(HASHED, 0o755);
  hash = createHash('sha256').update(readFileSync(HASHED)).digest('hex');
  writeFileSync(MARKED, Buffer.concat([readFileSync(TRUE), Buffer.from(`\n${MARKERS.join('\n')}\n`)]));
  chmodSync(MARKED, 0o755);
});

afterAll(() => {
  rmSync(SHM, { force: true });
  rmSync(`/tmp/tgdn-renamed-${TAG}`, { force: true });
  rmSync(`/tmp/tgdn-marked-${TAG}`, { force: true });
  rmSync(`/tmp/tgdn-marked-padded-${TAG}`, { force: true });
});

describe('pre-exec deny (root, Linux, fanotify)', () => {
  let g: Guardd;

  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    g = await startDeny('enforce', signedPolicy(join(dir, 'enforce.dsse.json'), 'enforce'), {
      'shipper.heartbeat_cron': '* * * * * *', // node-cron with seconds: a heartbeat every second
    });
    const s = await status(g);
    expect(s.exec_deny, `exec_deny off: ${s.exec_deny.reason} (addon ${EXECPERM_ADDON_PATH})`).toMatchObject({
      state: 'on',
    });
    expect(s.exec_deny.marked).toContain('/');
  });

  afterAll(async () => {
    await g?.stop('SIGTERM');
  });

  // Each case execs a file at its own path, so the events can be counted per attempt.
  const cases: { what: string; setup: () => { exe: string; cmd: string; args: string[] } }[] = [
    {
      what: 'by name, exec’d directly',
      setup: () => {
        const exe = copyTrue(join(dir, 'direct', NAME));
        return { exe, cmd: 'sh', args: ['-c', `"${exe}"`] };
      },
    },
    {
      what: 'by name, through a symlink (the target is what runs)',
      setup: () => {
        const exe = copyTrue(join(dir, 'symtarget', NAME));
        const link = join(dir, `link-${TAG}`);
        symlinkSync(exe, link);
        return { exe, cmd: 'sh', args: ['-c', `"${link}"`] };
      },
    },
    {
      what: 'by name, a hard link named like the tool',
      setup: () => {
        const other = copyTrue(join(dir, 'hlsrc', `innocent-${TAG}`));
        mkdirSync(join(dir, 'hl'), { recursive: true });
        const exe = join(dir, 'hl', NAME);
        linkSync(other, exe);
        return { exe, cmd: 'sh', args: ['-c', `"${exe}"`] };
      },
    },
    {
      what: 'by name, exec -a another-name',
      setup: () => {
        const exe = copyTrue(join(dir, 'execa', NAME));
        return { exe, cmd: 'bash', args: ['-c', `exec -a innocent "${exe}"`] };
      },
    },
    {
      what: 'by name, through env',
      setup: () => {
        const exe = copyTrue(join(dir, 'env', NAME));
        return { exe, cmd: 'env', args: [exe] };
      },
    },
    {
      what: 'by name, through nohup',
      setup: () => {
        const exe = copyTrue(join(dir, 'nohup', NAME));
        return { exe, cmd: 'nohup', args: [exe] };
      },
    },
    {
      what: 'by name, through setsid',
      setup: () => {
        const exe = copyTrue(join(dir, 'setsid', NAME));
        return { exe, cmd: 'setsid', args: ['-w', exe] };
      },
    },
    {
      what: 'by name, Python os.execv',
      setup: () => {
        const exe = copyTrue(join(dir, 'py', NAME));
        return {
          exe,
          cmd: 'python3',
          args: ['-c', 'import os,sys; os.execv(sys.argv[1], [sys.argv[1]])', exe],
        };
      },
    },
    {
      what: 'by exe path glob',
      setup: () => {
        const exe = copyTrue(join(PATH_DIR, `tool-${TAG}`));
        return { exe, cmd: 'sh', args: ['-c', `"${exe}"`] };
      },
    },
    {
      what: 'by sha256, the file itself',
      setup: () => ({ exe: HASHED, cmd: 'sh', args: ['-c', `"${HASHED}"`] }),
    },
    {
      what: 'by sha256, a hard link under another name',
      setup: () => {
        const exe = join(dir, `hl-hash-${TAG}`);
        linkSync(HASHED, exe);
        return { exe, cmd: 'sh', args: ['-c', `"${exe}"`] };
      },
    },
    {
      what: 'by sha256, a renamed copy in /tmp',
      setup: () => {
        const exe = `/tmp/tgdn-renamed-${TAG}`;
        copyFileSync(HASHED, exe);
        chmodSync(exe, 0o755);
        return { exe, cmd: 'sh', args: ['-c', `"${exe}"`] };
      },
    },
    {
      what: 'by sha256, a renamed copy in /dev/shm',
      setup: () => {
        copyFileSync(HASHED, SHM);
        chmodSync(SHM, 0o755);
        return { exe: SHM, cmd: 'sh', args: ['-c', `"${SHM}"`] };
      },
    },
    {
      what: 'by content markers, a renamed copy in /tmp',
      setup: () => {
        const exe = `/tmp/tgdn-marked-${TAG}`;
        copyFileSync(MARKED, exe);
        chmodSync(exe, 0o755);
        return { exe, cmd: 'sh', args: ['-c', `"${exe}"`] };
      },
    },
    {
      what: 'by content markers, a copy with one byte appended (another hash)',
      setup: () => {
        const exe = `/tmp/tgdn-marked-padded-${TAG}`;
        writeFileSync(exe, Buffer.concat([readFileSync(MARKED), Buffer.from([0x2a])]));
        chmodSync(exe, 0o755);
        return { exe, cmd: 'sh', args: ['-c', `"${exe}"`] };
      },
    },
  ];

  for (const c of cases) {
    it(`denies a banned program ${c.what}: 126/EPERM, one process.denied event`, async () => {
      const { exe, cmd, args } = c.setup();
      const r = run(cmd, args);
      const failed = r.status === 126 || /Operation not permitted|PermissionError/.test(r.stderr);
      expect(failed, `status ${r.status}, stderr ${r.stderr}`).toBe(true);
      const mine = await waitFor(async () => {
        const evs = (await events(g, 'process.denied')).filter((e) => e.exe === exe);
        return evs.length > 0 ? evs : undefined;
      }, `process.denied for ${exe}`);
      // An unrelated program runs afterwards, and is a point after which no late duplicate can hide.
      expect(run(TRUE, []).status).toBe(0);
      const after = (await events(g, 'process.denied')).filter((e) => e.exe === exe);
      expect(after).toHaveLength(1);
      expect(mine[0]).toMatchObject({
        type: 'process.denied',
        rule: { id: `tgdn-block-${TAG}`, action: 'block' },
        mode: 'enforce',
        argv: [],
        outcome: { action_taken: 'denied', error: null },
      });
      expect(validateEvent(mine[0] as Record<string, unknown>)).toEqual({ ok: true });
    });
  }

  it('denies a banned single-file executable over 400 MB by its content markers (no whole-file hash)', async () => {
    // `true` at the start, a 400 MB hole, the markers at the end (where a Bun executable carries
    // its bundle): an ELF runs with any trailing bytes. Sparse, so the test writes ~100 KiB.
    const exe = `/tmp/tgdn-huge-${TAG}`;
    const fd = openSync(exe, 'w', 0o755);
    try {
      writeSync(fd, readFileSync(TRUE));
      writeSync(fd, Buffer.from(`\n${MARKERS.join('\n')}\n`), 0, undefined, 400 * 1024 * 1024);
    } finally {
      closeSync(fd);
    }
    chmodSync(exe, 0o755);
    const before = (await status(g)).exec_deny.counters.deadline_misses;
    let r = run('sh', ['-c', `"${exe}"`]);
    if (r.status !== 126) {
      // Only a missed deadline may let the first exec through (a busy machine): then it was
      // counted, the late verdict is cached and the next exec is refused.
      expect(r.status, r.stderr).toBe(0);
      expect((await status(g)).exec_deny.counters.deadline_misses).toBeGreaterThan(before);
      r = run('sh', ['-c', `"${exe}"`]);
    }
    expect(r.status, r.stderr).toBe(126);
    const [ev] = await waitFor(async () => {
      const evs = (await events(g, 'process.denied')).filter((e) => e.exe === exe);
      return evs.length > 0 ? evs : undefined;
    }, `process.denied for ${exe}`);
    expect(ev).toMatchObject({ reason: 'content', outcome: { action_taken: 'denied' } });
    rmSync(exe, { force: true });
  });

  it('denies every repeated attempt from the verdict cache, one event each, and counts them', async () => {
    const exe = copyTrue(join(dir, 'repeat', NAME));
    const before = await status(g);
    for (let i = 0; i < 3; i++) expect(run('sh', ['-c', `"${exe}"`]).status).toBe(126);
    const evs = await waitFor(async () => {
      const e = (await events(g, 'process.denied')).filter((x) => x.exe === exe);
      return e.length >= 3 ? e : undefined;
    }, 'three process.denied events');
    expect(evs).toHaveLength(3);
    const cached = evs.map(
      (e) => (e.outcome as { details: { verdict_cached: boolean } }).details.verdict_cached,
    );
    expect(cached.filter(Boolean).length).toBe(2);
    const s = await status(g);
    expect(s.exec_deny.counters.denied - before.exec_deny.counters.denied).toBe(3);
    expect(s.exec_deny.counters.cache_hits).toBeGreaterThan(before.exec_deny.counters.cache_hits);
    expect(s.enforcement.denied - before.enforcement.denied).toBe(3);
  });

  it('folds a loop of refused execs past the burst into one counted event: every attempt accounted for', async () => {
    const exe = copyTrue(join(dir, 'flood', NAME));
    const before = await status(g);
    const loop = run('sh', [
      '-c',
      `i=0; while [ $i -lt ${FLOOD} ]; do "${exe}" 2>/dev/null; i=$((i+1)); done; echo done`,
    ]);
    expect(loop.stdout.trim()).toBe('done');
    // the first DENY_BURST are events at once; the rest of the window come as one when it ends
    const evs = await waitFor(
      async () => {
        const e = (await events(g, 'process.denied')).filter((x) => x.exe === exe);
        const stood = e.reduce((n, x) => n + (repeatsOf(x) ?? 1), 0);
        return stood >= FLOOD ? e : undefined;
      },
      `process.denied events standing for ${FLOOD} refusals`,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(evs.reduce((n, x) => n + (repeatsOf(x) ?? 1), 0)).toBe(FLOOD);
    const folded = evs.filter((x) => repeatsOf(x) !== undefined);
    expect(folded.length).toBeGreaterThanOrEqual(1);
    expect(evs.length).toBeLessThan(FLOOD);
    expect(evs.length).toBeGreaterThanOrEqual(DENY_BURST + 1);
    const s = await status(g);
    expect(s.enforcement.denied - before.enforcement.denied).toBe(FLOOD);
  });

  it('marks a file system mounted after start (re-reads the mount table when it changes)', async () => {
    const mnt = join(dir, 'newmount');
    mkdirSync(mnt, { recursive: true });
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', `tgdn-${TAG}`, mnt]).status).toBe(0);
    try {
      await waitFor(async () => (await status(g)).exec_deny.marked.includes(mnt), 'the new mount marked');
      const exe = copyTrue(join(mnt, NAME));
      expect(run('sh', ['-c', `"${exe}"`]).status).toBe(126);
      await waitFor(
        async () => (await events(g, 'process.denied')).find((e) => e.exe === exe),
        'process.denied on the new mount',
      );
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('folds the mount changes made while the event loop is stalled into one pass, which marks what is mounted then', async () => {
    const admin = join(g.socketDir, 'admin.sock');
    const before = (await status(g)).exec_deny.counters;
    const stall = callDaemon(admin, 'test.stall_loop', { ms: 2000 }, 20_000);
    // the first exec of a new file that waits for the deadline proves the loop is stalled
    let n = 0;
    await waitFor(
      () => run(copyTrue(join(dir, 'fold', `f${n++}-${TAG}`)), []).ms >= DEADLINE_MS * 0.9,
      'an exec that waited for the deadline',
      { timeoutMs: 20_000, intervalMs: 1 },
    );
    const mnt = join(dir, 'foldmount');
    mkdirSync(mnt, { recursive: true });
    for (let i = 0; i < 10; i++) {
      expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', `tgdn-fold-${TAG}`, mnt]).status).toBe(0);
      expect(spawnSync('umount', [mnt]).status).toBe(0);
    }
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', `tgdn-fold-${TAG}`, mnt]).status).toBe(0);
    try {
      await stall;
      await waitFor(async () => (await status(g)).exec_deny.marked.includes(mnt), 'the last mount marked');
      const after = (await status(g)).exec_deny.counters;
      // the first change posted a notice JS could not take while stalled; later ones were folded
      expect(after.mount_changes - before.mount_changes).toBeGreaterThanOrEqual(2);
      expect(after.mount_notices_folded - before.mount_notices_folded).toBeGreaterThanOrEqual(1);
      const exe = copyTrue(join(mnt, NAME));
      expect(run('sh', ['-c', `"${exe}"`]).status).toBe(126);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('tells the user on their terminal why: rule, message and URL', async () => {
    const exe = copyTrue(join(dir, 'tty', NAME));
    // script(1) gives the shell a pty; the shell stays a few seconds so guardd's write can land.
    const child = spawn('script', ['-qec', `"${exe}"; echo "rc=$?"; sleep 10`, '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    try {
      await waitFor(
        () => out.includes('tgdn: not approved.') && out.includes('rc=126'),
        'the message on the terminal',
      );
      expect(out).toContain('https://intranet.example/tgdn');
      expect(out).toContain('tgdn banned tool');
    } finally {
      child.kill('SIGKILL');
    }
    const [ev] = (await events(g, 'process.denied')).filter((e) => e.exe === exe);
    expect(ev?.tty).toMatch(/^\/dev\/pts\/\d+$/);
    expect(ev?.outcome).toMatchObject({ details: { notified: { terminal: true } } });
  });

  it('reports coverage in guardctl status and in the heartbeat (schema-valid)', async () => {
    // marks are only added (no policy change here): seen before, they are in the text after
    const kernelCached = (await status(g)).exec_deny.counters.ignore_marks > 0;
    const r = runGuardctl(['--socket-dir', g.socketDir, 'status']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /pre-exec +on · \d+ file systems? · answers within 200 ms · \d+ execs checked, [1-9]\d* denied\n/,
    );
    if (kernelCached) expect(r.stdout).toMatch(/denied\n +[1-9]\d* root-only programs left to the kernel\n/);
    const hb = await waitFor(
      async () =>
        (await events(g, 'agent.heartbeat')).find((e) => (e.exec_deny as { denied?: number })?.denied),
      'a heartbeat with pre-exec deny counters',
    );
    expect(hb.exec_deny).toMatchObject({ state: 'on', deadline_misses: expect.any(Number) });
    // The watchdog's view: the native thread goes round its loop at least once a second.
    const st = await status(g);
    expect(st.exec_deny.counters.loop_age_ms).toBeLessThan(2000);
    // The exec'd files were hashed and scanned for this policy's sha256 and markers rules.
    expect(st.exec_deny.file_reads.sha256.hashed).toBeGreaterThan(0);
    expect(st.exec_deny.file_reads.markers.scanned).toBeGreaterThan(0);
    expect(validateEvent(hb)).toEqual({ ok: true });
  });

  it('lets an unrelated program run, even a renamed copy of a banned one’s base binary', async () => {
    const ok = copyTrue(join(dir, 'ok', `fine-${TAG}`));
    expect(run(ok, []).status).toBe(0);
    expect(run(TRUE, []).status).toBe(0);
  });

  it('answers every exec within the deadline while the event loop is stalled, and counts the misses', async () => {
    const admin = join(g.socketDir, 'admin.sock');
    const before = (await status(g)).exec_deny.counters.deadline_misses;
    const stall = callDaemon(admin, 'test.stall_loop', { ms: 2000 }, 20_000);
    // New files need JS: the first one that waits for the deadline proves the loop is stalled.
    let n = 0;
    const fresh = (): string => copyTrue(join(dir, 'stall', `f${n++}-${TAG}`));
    await waitFor(() => run(fresh(), []).ms >= DEADLINE_MS * 0.9, 'an exec that waited for the deadline', {
      timeoutMs: 20_000,
      intervalMs: 1,
    });
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = run(fresh(), []);
      expect(r.status).toBe(0);
      times.push(r.ms);
    }
    await stall;
    for (const t of times) expect(t).toBeLessThan(DEADLINE_MS + SLACK_MS);
    const after = (await status(g)).exec_deny.counters.deadline_misses;
    expect(after - before).toBeGreaterThanOrEqual(times.filter((t) => t >= DEADLINE_MS * 0.9).length + 1);
  });
});

describe('guardd killed while execs run', () => {
  it('holds no exec past the deadline when SIGKILLed, and denies again after a restart', async () => {
    const policy = signedPolicy(join(dir, 'kill.dsse.json'), 'enforce');
    let g = await startDeny('killed', policy);
    const loopDir = join(dir, 'loop');
    mkdirSync(loopDir, { recursive: true });
    const doneFile = join(dir, 'loop-done');
    // A loop of execs of new files (each needs a decision), measuring the slowest fork+exec+wait.
    const script = `
import os, shutil, sys, time
d, true, done = sys.argv[1], sys.argv[2], sys.argv[3]
worst, n = 0.0, 0
while not os.path.exists(done):
    p = os.path.join(d, "t%d" % n)
    shutil.copy(true, p); os.chmod(p, 0o755)
    t = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try: os.execv(p, [p])
        finally: os._exit(127)
    os.waitpid(pid, 0)
    worst = max(worst, time.monotonic() - t)
    os.unlink(p); n += 1
print("%.1f %d" % (worst * 1000, n))
`;
    const loop = spawn('python3', ['-c', script, loopDir, TRUE, doneFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    loop.stdout.on('data', (d) => {
      out += d;
    });
    // 'close', not 'exit': the child may exit before its last stdout chunk is read
    const exited = new Promise<number | null>((res) => loop.once('close', (code) => res(code)));
    // Beside it, the exec load of a busy machine: two C loops of fork + exec + wait of `true` (its
    // verdict cached after the first), as fast as the machine allows (~1,000 execs/s and more on
    // two idle cores; bench/exec-deny.bench.js prints the rate reached).
    const execloop = compileC(
      dir,
      'execloop',
      readFileSync(join(import.meta.dirname, '..', 'fixtures', 'native', 'execloop.c'), 'utf8'),
    );
    const loads = [0, 1].map(() => {
      const p = spawn(execloop, [TRUE, doneFile], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      p.stdout.on('data', (d) => {
        text += d;
      });
      return new Promise<number[]>((res) => p.once('close', () => res(text.trim().split(' ').map(Number))));
    });
    // guardd is deciding the loop's execs…
    const start = (await status(g)).exec_deny.counters.posted;
    await waitFor(
      async () => (await status(g)).exec_deny.counters.posted >= start + 20,
      'loop execs seen by guardd',
    );
    await g.stop('SIGKILL');
    // …and keeps running with guardd gone, then with a new guardd starting up.
    g = await startDeny('killed', policy);
    await waitFor(
      async () => (await status(g)).exec_deny.counters.posted >= 20,
      'loop execs seen by the new guardd',
    );
    writeFileSync(doneFile, '');
    expect(await exited).toBe(0);
    const [worst, count] = out.trim().split(' ').map(Number);
    expect(count).toBeGreaterThan(40);
    expect(worst).toBeLessThan(DEADLINE_MS + SLACK_MS);
    for (const [execs, , slowest, failed] of await Promise.all(loads)) {
      expect(execs).toBeGreaterThan(100);
      expect(slowest).toBeLessThan(DEADLINE_MS + SLACK_MS);
      // `true` is never banned: not one of its execs was refused, with guardd there or not.
      expect(failed).toBe(0);
    }
    // Deny resumed.
    const exe = copyTrue(join(dir, 'after-restart', NAME));
    expect(run('sh', ['-c', `"${exe}"`]).status).toBe(126);
    await waitFor(
      async () => (await events(g, 'process.denied')).find((e) => e.exe === exe),
      'process.denied after the restart',
    );
    await g.stop('SIGTERM');
  });
});

describe('monitor mode', () => {
  it('never denies: the banned program runs and is recorded as would_block', async () => {
    const g = await startDeny('monitor', signedPolicy(join(dir, 'monitor.dsse.json'), 'monitor'), {
      'sensors.process.enabled': true,
    });
    try {
      const exe = join(dir, 'mon', NAME);
      mkdirSync(join(dir, 'mon'), { recursive: true });
      copyFileSync(SLEEP, exe);
      chmodSync(exe, 0o755);
      const child = spawn(exe, ['30'], { stdio: 'ignore' });
      try {
        const ev = await waitFor(
          async () => (await events(g, 'process.warned')).find((e) => e.pid === child.pid),
          'process.warned would_block',
        );
        expect(ev).toMatchObject({ mode: 'monitor', outcome: { action_taken: 'would_block' } });
        expect(child.exitCode).toBeNull();
      } finally {
        child.kill('SIGKILL');
      }
      const s = await status(g);
      expect(s.exec_deny.state).toBe('on');
      expect(s.exec_deny.counters.denied).toBe(0);
      expect(await events(g, 'process.denied')).toHaveLength(0);
    } finally {
      await g.stop('SIGTERM');
    }
  });
});
