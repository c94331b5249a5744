/**
 * Every failure a person can cause gets its own code, hint and exit code, in one style: a real
 * root guardd, guardctl run as a real unprivileged user created for this file (root admin socket →
 * "needs root", not "not running"), a socket dir the user may not enter, no daemon at all, a bad
 * config, commander's parse errors, and `doctor` against a real `guardd --local`.
 */
import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Guardd, ROOT, runGuardctl, startGuardd } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { checkoutReadableBy, createTestUser, spawnAs, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const dir = tempDir('tgcl-');
chmodSync(dir, 0o755); // the unprivileged user must reach the public socket below it
const spare = tempDir('tgcl-co-');
let guardd: Guardd;
let user: TestUser;
let checkout: string;

/** Runs the built guardctl as `user` (the real non-root path: kernel-checked socket modes). */
function guardctlAs(args: readonly string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [join(checkout, 'bin', 'guardctl.js'), ...args], {
    uid: user.uid,
    gid: user.gid,
    cwd: '/',
    encoding: 'utf8',
    timeout: 30_000,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: user.home },
  });
}

beforeAll(async () => {
  expect(isRoot, 'this file needs root (CI runs as root): it creates a user and a root guardd').toBe(true);
  user = createTestUser('tgcl');
  checkout = checkoutReadableBy(user, spare);
  guardd = await startGuardd(join(dir, 'd'), {});
  chmodSync(join(dir, 'd'), 0o755);
}, 60_000);

afterAll(async () => {
  await guardd?.stop();
});

describe('guardctl failures a person can cause', () => {
  it('a non-root root command says "needs root" (exit 4), not "guardd is not running"', () => {
    // the daemon answers this user on the public socket…
    const status = guardctlAs(['--socket-dir', guardd.socketDir, 'status', '--json']);
    expect(status.status, status.stderr).toBe(0);
    // …and the kernel refuses the root-only admin socket to the same user
    const reload = guardctlAs(['--socket-dir', guardd.socketDir, 'policy', 'reload']);
    expect(reload.status).toBe(4);
    expect(reload.stderr).toContain('[GUARD_CLI_NEEDS_ROOT]');
    expect(reload.stderr).toContain('sudo guardctl policy reload');
    expect(reload.stderr).not.toMatch(/not running/);
    const restore = guardctlAs(['--socket-dir', guardd.socketDir, '--json', 'quarantine', 'restore', 'q-1']);
    expect(restore.status).toBe(4);
    expect(JSON.parse(restore.stdout).error.code).toBe('GUARD_CLI_NEEDS_ROOT');
    // root gets past the socket (and on to the daemon's own answer)
    const asRoot = runGuardctl(['--socket-dir', guardd.socketDir, '--json', 'quarantine', 'restore', 'q-1']);
    expect(asRoot.code).toBe(7);
    expect(asRoot.json<{ error: { code: string } }>().error.code).toBe('GUARD_QUARANTINE_NOT_FOUND');
  });

  it('a socket dir the user may not enter is "permission denied" (exit 4) with its own hint', () => {
    chmodSync(guardd.socketDir, 0o700);
    try {
      const r = guardctlAs(['--socket-dir', guardd.socketDir, 'status']);
      expect(r.status).toBe(4);
      expect(r.stderr).toContain('[GUARD_CONTROL_PERMISSION_DENIED]');
      expect(r.stderr).toContain(`permission denied opening ${join(guardd.socketDir, 'guardd.sock')}`);
      expect(r.stderr).toContain('guardctl doctor');
    } finally {
      chmodSync(guardd.socketDir, 0o755);
    }
  });

  it('no daemon: exit 3 with how to start it, for root and non-root commands alike', () => {
    const empty = join(dir, 'no-daemon');
    for (const args of [['status'], ['policy', 'reload']]) {
      const r = runGuardctl(['--socket-dir', empty, ...args]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('[GUARD_CONTROL_DAEMON_NOT_RUNNING]');
      expect(r.stderr).toContain('systemctl start toolguard');
    }
    const u = guardctlAs(['--socket-dir', empty, 'policy', 'reload']);
    expect(u.status).toBe(3);
  });

  it('a bad config: exit 6, the key and the file named, and how to check it', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ 'paths.socket_dir': 42 }));
    const r = runGuardctl(['--config', bad, 'status']);
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/\[GUARD_CONFIG_INVALID_VALUE\]/);
    expect(r.stderr).toContain(`Fix ${bad}`);
    writeFileSync(bad, '{ not json');
    const j = runGuardctl(['--config', bad, '--json', 'status']);
    expect(j.code).toBe(6);
    expect(j.json<{ error: { code: string } }>().error.code).toBe('GUARD_CONFIG_UNREADABLE');
  });

  it("commander's parse errors come out in guardctl's style and exit 2", () => {
    const opt = runGuardctl(['status', '--bogus']);
    expect(opt.code).toBe(2);
    expect(opt.stderr).toBe(
      "guardctl: unknown option '--bogus' [GUARD_CLI_USAGE]\nSee `guardctl status --help`.\n",
    );
    const cmd = runGuardctl(['--json', 'frobnicate']);
    expect(cmd.code).toBe(2);
    expect(cmd.json<{ error: { code: string } }>().error.code).toBe('GUARD_CLI_USAGE');
    expect(cmd.stderr).not.toMatch(/^error:/m);
    const missing = runGuardctl(['quarantine', 'restore']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^guardctl: missing required argument 'id' \[GUARD_CLI_USAGE\]$/m);
    expect(missing.stderr).toContain('guardctl quarantine restore --help');
  });

  it('doctor in local mode checks no system service and never suggests systemctl', async () => {
    const local = join(dir, 'local');
    const { child } = await startLocalGuardd(local);
    // the policy check passes once the embedded collector has served the signed policy
    const doctor = await waitFor(
      () => {
        const r = runGuardctl(['--config', join(local, 'config.json'), '--json', 'doctor']);
        const checks = r.json<{ checks: { id: string; status: string }[] }>().checks;
        return checks.find((c) => c.id === 'enrollment')?.status === 'OK' ? r : undefined;
      },
      'doctor to see the local daemon enrolled',
      { timeoutMs: 30_000 },
    );
    const report = doctor.json<{
      ok: boolean;
      checks: { id: string; status: string; fix: string | null }[];
    }>();
    expect(report.checks.find((c) => c.id === 'service')?.status).toBe('SKIP');
    expect(report.checks.filter((c) => c.status === 'FAIL')).toEqual([]);
    expect(doctor.code).toBe(0);
    expect(doctor.stdout).not.toMatch(/systemctl/);
    child.kill('SIGINT');
    // with the daemon gone the fixes still speak of `npm start`
    await waitFor(() => (child.exitCode !== null ? true : undefined), 'guardd --local to stop');
    const after = runGuardctl(['--config', join(local, 'config.json'), 'doctor']);
    expect(after.code).toBe(8);
    expect(after.stdout).toContain('npm start');
    expect(after.stdout).not.toMatch(/systemctl/);
    const status = runGuardctl(['--config', join(local, 'config.json'), 'status']);
    expect(status.code).toBe(3);
    expect(status.stderr).toContain('`npm start` in the checkout (local mode)');
    expect(status.stderr).not.toMatch(/systemctl/);
  }, 90_000);
});

/**
 * The example ban list with every rule renamed to a `tgcl-local-*` program name and no package or
 * path rules, for the local-mode daemons here: they must not act on anything else on the machine.
 */
function localPolicy(): string {
  const policy = join(dir, 'local-policy.json');
  if (existsSync(policy)) return policy;
  const example = JSON.parse(readFileSync(join(ROOT, 'policy/example-policy.json'), 'utf8'));
  example.rules = example.rules.map((r: { id: string }) => ({
    ...r,
    process: { names: [`tgcl-local-${r.id}`] },
    packages: [],
    paths: [],
  }));
  writeFileSync(policy, JSON.stringify(example));
  return policy;
}

/** Starts `guardd --local` (as root) in `local` with localPolicy(); resolves once its banner is out. */
async function startLocalGuardd(local: string): Promise<{ child: ChildProcess; exited: Promise<unknown> }> {
  const child = spawnAs(
    null,
    process.execPath,
    [join(ROOT, 'bin/guardd.js'), '--local', '--local-dir', local, '--local-policy', localPolicy()],
    { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir },
  );
  const exited = new Promise((res) => child.once('exit', res));
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  await waitFor(() => out.includes('Ctrl-C stops everything'), `the local-mode banner (output: ${out})`, {
    timeoutMs: 30_000,
  });
  return { child, exited };
}

/** Runs one of the three built programs as `user` (or as root when `asUser` is false). */
function programAs(
  program: 'guardd' | 'guard-collector' | 'guardctl',
  args: readonly string[],
  env: Record<string, string> = {},
  asUser = true,
): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [join(asUser ? checkout : ROOT, 'bin', `${program}.js`), ...args], {
    ...(asUser ? { uid: user.uid, gid: user.gid } : {}),
    cwd: '/',
    encoding: 'utf8',
    timeout: 30_000,
    // SIGKILL: a program that hangs past the timeout may ignore SIGTERM (guardd holds it while starting)
    killSignal: 'SIGKILL',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: asUser ? user.home : '/root', ...env },
  });
}

const COLLECTOR_ENV = {
  TOOLGUARD_COLLECTOR_ENROLL_SECRET: 'enroll-secret-0123456789',
  TOOLGUARD_COLLECTOR_ADMIN_TOKEN: 'admin-token-0123456789',
};

describe('guardd and guard-collector: the same error style, exit codes and hints', () => {
  it('--version prints "<program> <version>" for all three', () => {
    const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
    for (const program of ['guardctl', 'guardd', 'guard-collector'] as const) {
      for (const flag of ['--version', '-V']) {
        const r = programAs(program, [flag], {}, false);
        expect(r.status).toBe(0);
        expect(r.stdout).toBe(`${program} ${version}\n`);
      }
    }
  });

  it('--help shows examples and the exit codes for all three', () => {
    for (const program of ['guardctl', 'guardd', 'guard-collector'] as const) {
      const r = programAs(program, ['--help'], {}, false);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: ${program} `));
      expect(r.stdout).toMatch(new RegExp(`\\nExamples:\\n {2}\\$ .*${program} `));
      expect(r.stdout).toMatch(/\nExit codes:\n {3}0 {2}ok/);
    }
  });

  it('a usage error is GUARD_CLI_USAGE, exit 2, with the --help hint, for all three', () => {
    for (const program of ['guardctl', 'guardd', 'guard-collector'] as const) {
      const r = programAs(program, ['--bogus'], {}, false);
      expect(r.status).toBe(2);
      expect(r.stderr).toBe(
        `${program}: unknown option '--bogus' [GUARD_CLI_USAGE]\nSee \`${program} --help\`.\n`,
      );
    }
    const missing = programAs('guard-collector', ['--listen'], COLLECTOR_ENV, false);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(
      /^guard-collector: option '--listen <value>' argument missing \[GUARD_CLI_USAGE\]$/m,
    );
  });

  it('guardd without root: exit 4 with how to run it (root, or --local), nothing created', () => {
    const state = join(dir, 'not-root-state');
    const cfg = join(dir, 'not-root.json');
    writeFileSync(
      cfg,
      JSON.stringify({ 'paths.state_dir': state, 'paths.socket_dir': join(dir, 'not-root-run') }),
    );
    for (const args of [[], ['--config', cfg]]) {
      const r = programAs('guardd', args);
      expect(r.status).toBe(4);
      expect(r.stderr).toMatch(/^guardd: needs root: .* \[GUARD_CLI_PERMISSION_DENIED\]$/m);
      expect(r.stderr).toContain('sudo systemctl start toolguard');
      expect(r.stderr).toContain('guardd --local');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(existsSync(state)).toBe(false);
  });

  it('guardd as root with a bad config: exit 6, the file to fix, no stack', () => {
    const bad = join(dir, 'guardd-bad.json');
    writeFileSync(bad, JSON.stringify({ 'paths.state_dir': join(dir, 'gb-state'), 'log.level': 'loud' }));
    const r = programAs('guardd', ['--config', bad], {}, false);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/^guardd: .*"log\.level".* \[GUARD_CONFIG_INVALID_VALUE\]$/m);
    expect(r.stderr).toContain(`Fix ${bad}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('a second guardd on a running one’s sockets: its own code and hint, the first untouched', () => {
    const cfg = join(dir, 'second.json');
    writeFileSync(
      cfg,
      JSON.stringify({ 'paths.state_dir': join(dir, 'second-state'), 'paths.socket_dir': guardd.socketDir }),
    );
    const r = programAs('guardd', ['--config', cfg], {}, false);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('[GUARD_CONTROL_SOCKET_IN_USE]');
    expect(r.stderr).toContain('Another guardd already runs');
    expect(runGuardctl(['--socket-dir', guardd.socketDir, 'status']).code).toBe(0);

    // the running one's own config (its state database too): refused before that is opened — it
    // once wrote agent.started and agent.stopped into the live database first
    const lifecycle = (): string[] =>
      ['agent.started', 'agent.stopped'].flatMap((type) =>
        runGuardctl(['--socket-dir', guardd.socketDir, '--json', 'events', '--type', type])
          .json<{ events: { event: { id: string } }[] }>()
          .events.map((e) => e.event.id),
      );
    const before = lifecycle();
    const same = programAs('guardd', ['--config', guardd.configFile], {}, false);
    expect(same.status, same.stderr).toBe(1);
    expect(same.stderr).toContain('[GUARD_CONTROL_SOCKET_IN_USE]');
    expect(lifecycle()).toEqual(before);
  });

  it('a second guardd --local on a running one’s directory: refused before it rewrites the config, the policy or the key', async () => {
    const local = join(dir, 'twice-local');
    const { child, exited } = await startLocalGuardd(local);
    try {
      const files = ['config.json', 'policy.dsse.json', 'dev-signing-key.pub.pem'].map((f) => join(local, f));
      const before = files.map((f) => readFileSync(f, 'utf8'));
      const r = programAs(
        'guardd',
        ['--local', '--local-dir', local, '--local-policy', localPolicy()],
        {},
        false,
      );
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain('[GUARD_CONTROL_SOCKET_IN_USE]');
      expect(files.map((f) => readFileSync(f, 'utf8'))).toEqual(before);
      expect(runGuardctl(['--config', join(local, 'config.json'), 'status']).code).toBe(0);
    } finally {
      child.kill('SIGINT');
      await exited;
    }
  });

  it('guardd --local whose own state database is of a newer schema: exits with its error (it once hung, its embedded collector left open)', () => {
    const local = join(dir, 'newer-state-local');
    mkdirSync(join(local, 'state'), { recursive: true, mode: 0o700 });
    const db = new Database(join(local, 'state', 'guardd.db'));
    db.pragma('user_version = 99');
    db.close();
    const r = programAs(
      'guardd',
      ['--local', '--local-dir', local, '--local-policy', localPolicy()],
      {},
      false,
    );
    expect(r.signal, 'guardd --local did not exit (killed at the 30 s timeout)').toBeNull();
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^guardd: cannot start: .*schema version 99 is newer.*\[GUARD_STORE_IO\]$/m);
  });

  it('a second guardd on a state directory a running guardd holds (its sockets gone, as while it starts): refused before it opens the database', async () => {
    // A guardd still starting does not answer on its sockets yet; one whose sockets were removed
    // (a /run clean-up) does not either. Only the state directory's lock still says it runs.
    const held = await startGuardd(join(dir, 'held'), {});
    try {
      for (const sock of ['guardd.sock', 'admin.sock']) rmSync(join(held.socketDir, sock), { force: true });
      const r = programAs('guardd', ['--config', held.configFile], {}, false);
      expect(r.signal, 'the second guardd did not exit (killed at the 30 s timeout)').toBeNull();
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `^guardd: cannot start: another guardd .*holds ${held.stateDir}/guardd\\.lock \\[GUARD_CONTROL_INSTANCE_LOCKED\\]$`,
          'm',
        ),
      );
      expect(r.stderr).toContain('give this one another paths.state_dir');
      // it bound nothing in the first one's place
      expect(existsSync(join(held.socketDir, 'guardd.sock'))).toBe(false);
    } finally {
      expect(await held.stop()).toBe(0);
    }
  });

  it('two guardds started at the same instant on one config: exactly one runs, the other exits 1 with its code and writes nothing', async () => {
    const d = join(dir, 'same-instant');
    mkdirSync(d, { mode: 0o700 });
    const cfg = join(d, 'config.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        'paths.state_dir': join(d, 'state'),
        'paths.socket_dir': join(d, 'run'),
        'sensors.install.enabled': false,
        'sensors.process.enabled': false,
      }),
    );
    for (let round = 0; round < 3; round++) {
      const runs = [0, 1].map(() => {
        const child = spawn(process.execPath, [join(ROOT, 'bin', 'guardd.js'), '--config', cfg], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (b) => {
          stderr += b;
        });
        const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
        return { child, exited, stderr: () => stderr };
      });
      try {
        // one of them exits on its own, refused; the other answers
        const loser = await Promise.race(runs.map((r) => r.exited.then(() => r)));
        const winner = runs.find((r) => r !== loser) as (typeof runs)[number];
        expect(await loser.exited, loser.stderr()).toBe(1);
        expect(loser.stderr()).toMatch(/\[GUARD_CONTROL_(INSTANCE_LOCKED|SOCKET_IN_USE)\]$/m);
        await waitFor(
          () => (runGuardctl(['--socket-dir', join(d, 'run'), 'status']).code === 0 ? true : undefined),
          `the other guardd to answer (round ${round}; its stderr: ${winner.stderr()})`,
          { timeoutMs: 30_000 },
        );
        expect(winner.child.exitCode).toBeNull();
        // the one refused wrote nothing into the shared state database: one start per round
        const started = runGuardctl([
          '--socket-dir',
          join(d, 'run'),
          '--json',
          'events',
          '--type',
          'agent.started',
        ]);
        expect(started.json<{ events: unknown[] }>().events).toHaveLength(round + 1);
        winner.child.kill('SIGTERM');
        expect(await winner.exited, winner.stderr()).toBe(0);
      } finally {
        // a failed round leaves no guardd behind (SIGKILL: a stop may not come while it starts)
        for (const r of runs)
          if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
      }
    }
  }, 120_000);

  it('guardd with its state directory under /proc or inside a user’s home: exit 6 naming paths.state_dir, nothing made there', () => {
    // Node's recursive mkdir never returned for a path under /proc: guardd hung at start
    const procCfg = join(dir, 'proc-state.json');
    writeFileSync(
      procCfg,
      JSON.stringify({
        'paths.state_dir': '/proc/tgcl-no-such/state',
        'paths.socket_dir': join(dir, 'proc-run'),
      }),
    );
    const proc = programAs('guardd', ['--config', procCfg], {}, false);
    expect(proc.signal, 'guardd did not exit (killed at the 30 s timeout)').toBeNull();
    expect(proc.status, proc.stderr).toBe(6);
    expect(proc.stderr).toMatch(
      /^guardd: paths\.state_dir \/proc\/tgcl-no-such\/state: cannot create it: ENOENT .*\[GUARD_CONFIG_INVALID_VALUE\]$/m,
    );

    // a directory the user owns above it: the user could swap what root creates there for a link
    const homeState = join(user.home, 'tg-state', 'state');
    const homeCfg = join(dir, 'home-state.json');
    writeFileSync(
      homeCfg,
      JSON.stringify({ 'paths.state_dir': homeState, 'paths.socket_dir': join(dir, 'home-run') }),
    );
    const home = programAs('guardd', ['--config', homeCfg], {}, false);
    expect(home.status, home.stderr).toBe(6);
    expect(home.stderr).toMatch(
      new RegExp(
        `^guardd: paths\\.state_dir ${homeState}: ${user.home} belongs to uid ${user.uid}; .*\\[GUARD_CONFIG_UNSAFE_DIR\\]$`,
        'm',
      ),
    );
    expect(existsSync(join(user.home, 'tg-state'))).toBe(false);
  });

  it('guard-collector without the rights for its port or its directory: exit 4 with the fix', () => {
    // Ports below ip_unprivileged_port_start need root or CAP_NET_BIND_SERVICE.
    const sysctl = '/proc/sys/net/ipv4/ip_unprivileged_port_start';
    const before = readFileSync(sysctl, 'utf8');
    if (Number(before) <= 443) writeFileSync(sysctl, '1024');
    try {
      const port = programAs(
        'guard-collector',
        ['--listen', '127.0.0.1:443', '--db', join(user.home, 'port.db')],
        COLLECTOR_ENV,
      );
      expect(port.status, port.stderr).toBe(4);
      expect(port.stderr).toMatch(
        /^guard-collector: cannot start: .*EACCES.* \[GUARD_CLI_PERMISSION_DENIED\]$/m,
      );
      expect(port.stderr).toContain('CAP_NET_BIND_SERVICE');
    } finally {
      writeFileSync(sysctl, before);
    }
    // the DB's directory missing under a root-owned one (mkdir refused), or there but not writable
    const rootOnly = join(dir, 'root-only');
    mkdirSync(rootOnly, { mode: 0o755 });
    for (const file of [join(rootOnly, 'sub', 'c.db'), join(rootOnly, 'c.db')]) {
      const db = programAs('guard-collector', ['--listen', '127.0.0.1:0', '--db', file], COLLECTOR_ENV);
      expect(db.status, db.stderr).toBe(4);
      expect(db.stderr).toContain('[GUARD_CLI_PERMISSION_DENIED]');
      expect(db.stderr).toContain('--db FILE in a directory you may write');
      expect(db.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("guardd --local on its embedded collector's database of a newer schema: the exit code its --help lists for that, the database untouched", () => {
    // guardd's help once listed only 0, 1, 2, 4 and 6, though --local opens a collector database
    const local = join(dir, 'newer-local');
    mkdirSync(local, { mode: 0o700 });
    const db = new Database(join(local, 'collector.db'));
    db.pragma('user_version = 99');
    db.close();
    const policy = join(ROOT, 'policy', 'example-policy.json');
    const r = programAs('guardd', ['--local', '--local-dir', local, '--local-policy', policy], {}, false);
    expect(r.status, r.stderr).toBe(11);
    expect(r.stderr).toMatch(
      /^guardd: cannot start: .*schema version 99, newer than this collector.*\[GUARD_STORE_SCHEMA_NEWER\]$/m,
    );
    const help = programAs('guardd', ['--help'], {}, false).stdout;
    expect(help).toMatch(
      new RegExp(
        `\\nExit codes:\\n(?: +\\d+ {2}.*\\n)* +${r.status} {2}[^\\n]*guardd --local's embedded one[^\\n]*schema is newer`,
      ),
    );
    const after = new Database(join(local, 'collector.db'), { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(99);
    after.close();
  });

  it('guard-collector with a bad config: exit 6 with the setting named and where the settings are listed', () => {
    const r = programAs('guard-collector', ['--rate-limit', '0'], COLLECTOR_ENV);
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/^guard-collector: .*"rate_limit".* \[GUARD_CONFIG_INVALID_VALUE\]$/m);
    expect(r.stderr).toContain('`guard-collector --help` lists every setting');
  });
});
