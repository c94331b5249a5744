/**
 * `guardd --local` is safe to run anywhere, as anyone, root included (issue 11): it never acts on
 * what was running before it started, nor on other users' processes, nor on packages outside its
 * own directory; as root it only reports unless `--enforce` is given, and then stops only
 * processes started after it. Everything it does not act on is reported as "would block" with the
 * reason in `outcome.details.scope`.
 *
 * Real processes of real users: root (this suite's user in CI), and two users created here — the
 * developer who runs local mode and someone else on the same machine. The policy bans a process
 * name and a package name unique to this run, so no other test's processes are ever matched.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runGuardctl } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { checkoutReadableBy, createTestUser, spawnAs, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const linuxRoot = process.platform === 'linux' && process.getuid?.() === 0;

const tag = randomBytes(3).toString('hex');
/** ≤ 15 characters: the name is matched against comm. */
const BANNED = `tglm-${tag}`;
const BANNED_PKG = `@tglm-${tag}/cli`;

interface ListedEvent {
  state: string;
  event: {
    type: string;
    pid?: number;
    package?: { name: string; path: string };
    outcome?: { action_taken: string; details?: { scope?: string } };
  };
}

interface Local {
  readonly proc: ChildProcess;
  readonly dir: string;
  readonly output: () => string;
  readonly events: () => ListedEvent[];
  stop(): Promise<number | null>;
}

describe.runIf(linuxRoot)('guardd --local acts only within its scope (real users, real processes)', () => {
  const base = tempDir('tglm-');
  const spare = tempDir('tglm-co-');
  let dev: TestUser;
  let other: TestUser;
  let checkout: string;
  let exe: string;
  let policyFile: string;

  beforeAll(() => {
    chmodSync(base, 0o755);
    dev = createTestUser('tglm');
    other = createTestUser('tglm');
    checkout = checkoutReadableBy(dev, spare);
    exe = join(base, BANNED);
    copyFileSync(spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim(), exe);
    chmodSync(exe, 0o755);
    const example = JSON.parse(readFileSync(join(ROOT, 'policy/example-policy.json'), 'utf8'));
    example.rules = example.rules.map((r: { id: string }) => ({
      ...r,
      process: { names: [r.id === 'claude-code' ? BANNED : `tglm-${tag}-${r.id}`] },
      packages: r.id === 'claude-code' ? [{ ecosystem: 'npm', name: BANNED_PKG, range: '*' }] : [],
      paths: [],
    }));
    policyFile = join(base, 'policy.json');
    writeFileSync(policyFile, JSON.stringify(example), { mode: 0o644 });
  });

  /** A copy of sleep under the banned name, run by `user` (null = root). */
  function sleeper(user: TestUser | null): ChildProcess {
    return spawnAs(user, exe, ['600']);
  }
  const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;
  const killed = (c: ChildProcess): Promise<NodeJS.Signals | null> =>
    alive(c)
      ? new Promise((res) => c.once('exit', (_code, signal) => res(signal)))
      : Promise.resolve(c.signalCode);

  /** A directory owned by `user` (null = root) under the test dir. */
  function dirOf(user: TestUser | null, name: string): string {
    const d = join(base, name);
    mkdirSync(d, { mode: 0o700 });
    if (user) chownSync(d, user.uid, user.gid);
    return d;
  }

  /** Writes a package.json of the banned package, owned by `user`, and moves it into `root` at once. */
  function installPackage(user: TestUser, root: string, staging: string): string {
    const stage = join(staging, `pkg-${randomBytes(3).toString('hex')}`);
    mkdirSync(stage);
    writeFileSync(join(stage, 'package.json'), JSON.stringify({ name: BANNED_PKG, version: '1.0.0' }));
    for (const p of [stage, join(stage, 'package.json')]) chownSync(p, user.uid, user.gid);
    const target = join(root, BANNED_PKG);
    mkdirSync(dirname(target), { recursive: true });
    chownSync(dirname(target), user.uid, user.gid);
    renameSync(stage, target);
    return target;
  }

  async function startLocal(user: TestUser | null, name: string, args: string[] = []): Promise<Local> {
    const home = dirOf(user, name);
    const dir = join(home, 'state');
    const proc = spawnAs(
      user,
      process.execPath,
      [join(checkout, 'bin/guardd.js'), '--local', '--local-dir', dir, '--local-policy', policyFile, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: home },
    );
    let out = '';
    proc.stdout?.on('data', (d) => {
      out += d;
    });
    proc.stderr?.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));
    await waitFor(
      () => {
        if (proc.exitCode !== null) throw new Error(`guardd exited ${proc.exitCode}: ${out}`);
        return out.includes('Ctrl-C stops everything');
      },
      'the local-mode banner',
      { timeoutMs: 30_000 },
    );
    const configFile = join(dir, 'config.json');
    return {
      proc,
      dir,
      output: () => out,
      events: () => {
        const r = runGuardctl(['--config', configFile, 'events', '--json', '--limit', '5000']);
        if (r.code !== 0) throw new Error(`guardctl events: ${r.stderr}`);
        return r.json<{ events: ListedEvent[] }>().events;
      },
      async stop() {
        proc.kill('SIGINT');
        return exited;
      },
    };
  }

  /**
   * Waits for guardd's console line about `pid` (printed once the event is in the outbox), then
   * returns the line and the stored event.
   */
  async function processEvent(
    local: Local,
    pid: number | undefined,
  ): Promise<{ line: string; e: ListedEvent }> {
    const line = await waitFor(
      () => new RegExp(`#\\d+ process\\.\\w+ pid=${pid} .*`).exec(local.output())?.[0],
      `guardd's line about pid ${pid}`,
    );
    const e = local.events().find((l) => l.event.type.startsWith('process.') && l.event.pid === pid);
    if (!e) throw new Error(`no stored event for pid ${pid}, though guardd printed: ${line}`);
    return { line, e };
  }

  /** Waits for guardd's console line about the package at `path`, then returns the stored event. */
  async function packageEvent(local: Local, path: string): Promise<ListedEvent> {
    await waitFor(
      () => local.output().includes(` at ${path} rule=`),
      `guardd's line about the package at ${path}`,
    );
    const e = local
      .events()
      .find((l) => l.event.type.startsWith('package.') && l.event.package?.path === path);
    if (!e) throw new Error(`no stored event for the package at ${path}`);
    return e;
  }

  async function expectWouldBlock(local: Local, c: ChildProcess, scope: string): Promise<void> {
    const { line, e } = await processEvent(local, c.pid);
    expect(e.state).not.toBe('aside'); // valid against the event schema
    expect(e.event.type).toBe('process.warned');
    expect(e.event.outcome).toMatchObject({ action_taken: 'would_block', details: { scope } });
    expect(line).toMatch(`→ would_block (not acted on: ${scope})`);
  }

  async function expectBlocked(local: Local, c: ChildProcess): Promise<void> {
    expect(await killed(c)).toBe('SIGKILL');
    const { e } = await processEvent(local, c.pid);
    expect(e.event.type).toBe('process.blocked');
    expect(e.event.outcome?.action_taken).toBe('killed');
  }

  describe('as a normal user', () => {
    let local: Local;
    let before: { own: ChildProcess; other: ChildProcess; root: ChildProcess };
    let realPackage: string;

    beforeAll(async () => {
      // The user's real global npm tree already holds the banned package.
      realPackage = installPackage(
        dev,
        mkdirAs(dev, join(dev.home, '.npm-global/lib/node_modules')),
        dev.home,
      );
      before = { own: sleeper(dev), other: sleeper(other), root: sleeper(null) };
      local = await startLocal(dev, 'dev');
    });

    afterAll(async () => {
      expect(await local.stop()).toBe(0);
    });

    it('says before it starts what it may stop, and reports matches it did not start as would-block', async () => {
      expect(local.output()).toMatch(/running as uid \d+: it stops only processes you start from now on/);
      await expectWouldBlock(local, before.own, 'started_before');
      await expectWouldBlock(local, before.other, 'other_user');
      await expectWouldBlock(local, before.root, 'other_user');
      expect([before.own, before.other, before.root].every(alive)).toBe(true);
    });

    it("blocks a matching process the user starts afterwards, and leaves another user's new one alone", async () => {
      const mine = sleeper(dev);
      const theirs = sleeper(other);
      await expectBlocked(local, mine);
      await expectWouldBlock(local, theirs, 'other_user');
      expect(alive(theirs)).toBe(true);
    });

    it("quarantines a package only in its demo prefix, never in the user's real npm tree", async () => {
      const status = runGuardctl(['--config', join(local.dir, 'config.json'), 'status', '--json']).json<{
        sensors: { name: string; details: { roots: string[] } }[];
      }>();
      const roots = status.sensors.find((s) => s.name === 'install')?.details.roots ?? [];
      expect(roots).toEqual([join(local.dir, 'npm-global/lib/node_modules')]);
      const demo = installPackage(dev, join(local.dir, 'npm-global/lib/node_modules'), local.dir);
      const e = await packageEvent(local, demo);
      expect(e.event.type).toBe('package.quarantined');
      expect(existsSync(demo)).toBe(false);
      expect(existsSync(join(realPackage, 'package.json'))).toBe(true);
      expect(local.events().filter((l) => l.event.package?.path === realPackage)).toEqual([]);
    });
  });

  describe('as root without --enforce', () => {
    let local: Local;
    let before: { other: ChildProcess; root: ChildProcess };

    beforeAll(async () => {
      before = { other: sleeper(other), root: sleeper(null) };
      local = await startLocal(null, 'root');
    });

    afterAll(async () => {
      expect(await local.stop()).toBe(0);
    });

    it('says MONITOR ONLY before any event, and only reports what it matches', async () => {
      const after = { dev: sleeper(dev), root: sleeper(null) };
      for (const c of [before.other, before.root, after.dev, after.root]) {
        await expectWouldBlock(local, c, 'monitor_only');
      }
      expect([before.other, before.root, after.dev, after.root].every(alive)).toBe(true);
      const out = local.output();
      expect(out).toMatch(/running as root: MONITOR ONLY/);
      expect(out.indexOf(' process.')).toBeGreaterThan(out.indexOf('MONITOR ONLY'));
    });

    it('does not move a banned package even in its own demo prefix', async () => {
      const demo = installPackage(dev, join(local.dir, 'npm-global/lib/node_modules'), local.dir);
      const e = await packageEvent(local, demo);
      expect(e.event).toMatchObject({
        type: 'package.warned',
        outcome: { action_taken: 'would_block', details: { scope: 'monitor_only' } },
      });
      expect(existsSync(join(demo, 'package.json'))).toBe(true);
    });
  });

  describe('as root with --enforce', () => {
    let local: Local;
    let before: { other: ChildProcess; root: ChildProcess };

    beforeAll(async () => {
      before = { other: sleeper(other), root: sleeper(null) };
      local = await startLocal(null, 'root-enforce', ['--enforce']);
    });

    afterAll(async () => {
      expect(await local.stop()).toBe(0);
    });

    it('says so before it starts, leaves what was running alone, and blocks what starts afterwards', async () => {
      expect(local.output()).toMatch(/running as root with --enforce: it WILL stop matching processes/);
      await expectWouldBlock(local, before.other, 'started_before');
      await expectWouldBlock(local, before.root, 'started_before');
      const mine = sleeper(dev);
      await expectBlocked(local, mine);
      expect(alive(before.other) && alive(before.root)).toBe(true);
    });
  });

  /** mkdir -p owned by `user` from its home down. */
  function mkdirAs(user: TestUser, path: string): string {
    mkdirSync(path, { recursive: true });
    for (let p = path; p.startsWith(`${user.home}/`); p = dirname(p)) chownSync(p, user.uid, user.gid);
    return path;
  }
});

describe('guardd --enforce without --local', () => {
  it('is refused as a usage error', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/guardd.js'), '--enforce'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--enforce only applies to --local/);
  });
});
