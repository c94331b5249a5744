/**
 * Open marks with the real addon (root, Linux, fanotify) in this process, which plays guardd, and
 * real processes of a real unprivileged user: what native/execperm's markFile refuses to mark (a
 * symlink, a symlink on the way, a FIFO — at once, never waiting on it —, a file with a second
 * link the user made, a file that is not the one identified), who may open a marked file (this
 * process and its children: yes; anyone else: EPERM, reported once), that unmarked files never
 * raise an open event, that removing and flushing marks opens the file again; and which decisions
 * OpenMarks turns into a mark (only an enforced block on script_package without exceptions under
 * the policy in force, on an attached mount, outside guardd's dirs) and its bound of 1,024 marks.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import type { DeniedFile } from '../../src/enforcement/enforcer.js';
import {
  type ExecPermAddon,
  type ExecPermEvent,
  loadExecPermAddon,
} from '../../src/enforcement/exec-deny.js';
import {
  MAX_OPEN_MARKS,
  MAX_OPEN_MARKS_PER_OWNER,
  type MountView,
  mountOf,
  OpenMarks,
} from '../../src/enforcement/open-marks.js';
import { OwnerSession } from '../../src/enforcement/owner-fs.js';
import { compileMatcher, type Decision, type Matcher } from '../../src/policy/matcher.js';
import type { PolicyBody, PolicyException, PolicyRule } from '../../src/policy/policy-types.js';
import type { ProcessObservation } from '../../src/sensors/observation.js';
import { policyBody } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

/** Runs `sh -c script` as `as` (null: this process's user); `setsid -f` makes it nobody's child. */
function sh(
  as: TestUser | null,
  script: string,
  detach = false,
): Promise<{ code: number | null; out: string; pid: number }> {
  return new Promise((resolve) => {
    const args = detach ? ['-w', '/bin/sh', '-c', script] : ['-c', script];
    const child = spawn(detach ? 'setsid' : '/bin/sh', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(as ? { uid: as.uid, gid: as.gid } : {}),
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.on('close', (code) => resolve({ code, out, pid: child.pid as number }));
  });
}

describe.runIf(runnable)('open marks (native/execperm markFile, OpenMarks)', () => {
  const dir = tempDir('tgomn-');
  let addon: ExecPermAddon;
  let user: TestUser;
  const events: ExecPermEvent[] = [];
  let opened: DeniedFile[] = [];
  let marks: OpenMarks;
  let mounts: MountView[] = [{ mountPoint: '/', attached: true }];
  let matcher: Matcher | null = null;

  /** A file in dir owned by the user, and its (dev, ino). */
  function userFile(
    name: string,
    text = '// a file\n',
  ): { path: string; rel: string; dev: number; ino: number } {
    const path = join(dir, name);
    writeFileSync(path, text);
    chownSync(path, user.uid, user.gid);
    chmodSync(path, 0o644);
    const st = statSync(path);
    return { path, rel: path.slice(1), dev: st.dev, ino: st.ino };
  }

  beforeAll(() => {
    user = createTestUser('tgomn');
    chmodSync(dir, 0o777); // the user makes links and FIFOs here (sticky not needed: a test dir)
    addon = loadExecPermAddon();
    addon.start({ deadlineMs: 200 }, (ev) => {
      events.push(ev);
      if (ev.kind === 'open_denied') void marks.onDenied(ev);
      // Nothing else is marked for exec: no decide events come.
    });
    marks = new OpenMarks({
      addon,
      logger: silentLogger(),
      matcher: () => matcher,
      mounts: () => mounts,
      protectedDirs: [join(dir, 'guardd-state')],
      denied: async (_obs, _decision, facts) => {
        opened.push(facts.file);
        return { actionTaken: 'denied', latencyMs: 0, error: null };
      },
      owner: (uid) => ({ uid, user: null, groups: [], home: null }),
    });
    marks.start();
  });

  afterAll(() => {
    addon?.stop();
  });

  it('denies every process but this one and its children, EPERM, reported once per process', async () => {
    const f = userFile('marked.js');
    expect(addon.markFile('/', f.rel, f.dev, f.ino)).toBe('marked');
    expect(addon.markFile('/', f.rel, f.dev, f.ino)).toBe('already');
    // A child of "guardd" (even running as the user, like the owner-fs child) reads it.
    const child = await sh(user, `exec cat "${f.path}"`);
    expect(child).toMatchObject({ code: 0, out: '// a file\n' });
    // Anyone else (a process of the user that guardd did not start) is refused.
    const other = await sh(user, `cat "${f.path}" "${f.path}"; echo "rc=$?"`, true);
    expect(other.out).toMatch(/cat: .*marked\.js: Operation not permitted/);
    expect(other.out).toMatch(/rc=1/);
    const c = addon.counters();
    expect(c.open_denied, JSON.stringify({ c, events })).toBe(2);
    expect(c.open_self_allowed).toBeGreaterThanOrEqual(1);
    // the same process refused twice in a row: one report
    await waitFor(() => events.some((e) => e.kind === 'open_denied'), 'the open_denied report');
    expect(events.filter((e) => e.kind === 'open_denied')).toHaveLength(1);
    expect(events.find((e) => e.kind === 'open_denied')).toMatchObject({
      path: f.path,
      identity: { dev: f.dev, ino: f.ino },
    });
    // removed: opens again
    expect(addon.unmarkFile('/', f.rel, f.dev, f.ino)).toBe('removed');
    expect((await sh(user, `cat "${f.path}"`, true)).code).toBe(0);
    expect(addon.counters().file_marks).toBe(0);
  });

  it("the owner-fs child (guardd's, running as the user) reads a marked file: quarantine copies still work", async () => {
    const f = userFile('quarantined-cli.js', '// banned bytes\n');
    expect(addon.markFile('/', f.rel, f.dev, f.ino)).toBe('marked');
    const session = new OwnerSession({ uid: user.uid, gid: user.gid });
    try {
      const bytes = await session.readChunk(f.path, 0, 1024, { dev: f.dev, ino: f.ino });
      expect(bytes.toString()).toBe('// banned bytes\n');
    } finally {
      session.close();
    }
    // and the same user's own process is refused
    expect((await sh(user, `cat "${f.path}"`, true)).out).toMatch(/Operation not permitted/);
    expect(addon.unmarkFile('/', f.rel, f.dev, f.ino)).toBe('removed');
  });

  it('unmarked files raise no open event at all (no mount-wide open mark)', async () => {
    const f = userFile('unmarked.js');
    const before = addon.counters().open_events;
    for (let i = 0; i < 5; i++) expect((await sh(user, `cat "${f.path}" >/dev/null`, true)).code).toBe(0);
    expect(addon.counters().open_events).toBe(before);
  });

  it('refuses a link, a link on the way, a FIFO (at once), a second name and a replaced file', async () => {
    const f = userFile('target.js');
    // the user's symlink to it: the link itself is not a regular file
    symlinkSync(f.path, join(dir, 'link.js'));
    expect(addon.markFile('/', join(dir, 'link.js').slice(1), f.dev, f.ino)).toBe('not_file');
    // a symlinked directory on the way
    symlinkSync(dir, join(dir, 'via'));
    expect(addon.markFile('/', join(dir, 'via', 'target.js').slice(1), f.dev, f.ino)).toBe('error:ELOOP');
    // `..` out of the mount point, and magic links through /proc
    expect(addon.markFile(dir, '../x', f.dev, f.ino)).toBe('error:EXDEV');
    // a FIFO with nobody writing: answered at once, never waited on
    expect((await sh(user, `mkfifo "${join(dir, 'fifo.js')}"`)).code).toBe(0);
    const fifo = statSync(join(dir, 'fifo.js'));
    const t0 = performance.now();
    expect(addon.markFile('/', join(dir, 'fifo.js').slice(1), fifo.dev, fifo.ino)).toBe('not_file');
    expect(performance.now() - t0).toBeLessThan(1000);
    // a hard link the user made to their own file: nlink 2
    const own = userFile('own.js');
    expect((await sh(user, `ln "${own.path}" "${join(dir, 'pkg-cli.js')}"`)).code).toBe(0);
    expect(addon.markFile('/', join(dir, 'pkg-cli.js').slice(1), own.dev, own.ino)).toBe('linked');
    // the path now names another file than the one identified
    const replaced = userFile('replaced.js');
    writeFileSync(join(dir, 'replaced.new'), 'other\n');
    spawnSync('mv', [join(dir, 'replaced.new'), replaced.path]);
    expect(addon.markFile('/', replaced.rel, replaced.dev, replaced.ino)).toBe('changed');
    expect(addon.counters().file_marks).toBe(0);
    // and a hard link made after the mark does not stop its removal
    const later = userFile('later.js');
    expect(addon.markFile('/', later.rel, later.dev, later.ino)).toBe('marked');
    linkSync(later.path, join(dir, 'later-link.js'));
    expect(addon.unmarkFile('/', later.rel, later.dev, later.ino)).toBe('removed');
  });

  it('flushFileMarks removes every mark', async () => {
    const a = userFile('fa.js');
    const b = userFile('fb.js');
    expect(addon.markFile('/', a.rel, a.dev, a.ino)).toBe('marked');
    expect(addon.markFile('/', b.rel, b.dev, b.ino)).toBe('marked');
    expect((await sh(user, `cat "${a.path}"`, true)).code).toBe(1);
    addon.flushFileMarks();
    expect(addon.counters().file_marks).toBe(0);
    expect((await sh(user, `cat "${a.path}" "${b.path}" >/dev/null`, true)).code).toBe(0);
  });

  it('a flood of refused opens from alternating processes does not crowd exec decisions out of the native queue', async () => {
    // The attack: two processes of the user open a marked file in turn, so every refusal is a
    // report posted to JS; while JS is busy the reports filled the queue exec decisions share, and
    // the next exec was allowed at once as overflow (a banned program ran before JS could decide).
    const mnt = join(dir, 'exec-mnt');
    mkdirSync(mnt);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tgomn', mnt]).status).toBe(0);
    try {
      copyFileSync('/bin/true', join(mnt, 'prog'));
      chmodSync(join(mnt, 'prog'), 0o755);
      addon.mark(mnt, 'mount');
      const f = userFile('flooded.js');
      expect(addon.markFile('/', f.rel, f.dev, f.ino)).toBe('marked');
      const before = addon.counters();
      const flood = `perl -e 'my $t = time + 6; while (time < $t) { open(my $h, "<", $ARGV[0]) }' "${f.path}"`;
      const floods = [sh(user, flood, true), sh(user, flood, true)];
      const exec = sh(user, `sleep 2; "${join(mnt, 'prog')}"; echo "rc=$?"`, true);
      // JS busy for 4 s (as guardd's loop under load): nothing is taken from the queue meanwhile.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 4000);
      expect((await exec).out).toMatch(/rc=0/); // allowed at the deadline: JS never answered
      await Promise.all(floods);
      const after = addon.counters();
      expect(after.open_denied - before.open_denied, JSON.stringify(after)).toBeGreaterThan(5000);
      expect(after.open_reports_dropped - before.open_reports_dropped).toBeGreaterThan(0);
      // the exec was posted to JS (answered late, a deadline miss), not dropped as overflow
      expect(after.overflow - before.overflow, JSON.stringify(after)).toBe(0);
      await waitFor(
        () => events.some((e) => e.kind === 'decide' && e.path === join(mnt, 'prog')),
        'the exec decision reached JS',
      );
      expect(addon.unmarkFile('/', f.rel, f.dev, f.ino)).toBe('removed');
    } finally {
      try {
        addon.unmark(mnt, 'mount');
      } catch {
        // not marked: the test failed before
      }
      // lazy: a reader of the program (another guardd on the machine deciding its exec) may hold it a moment
      spawnSync('umount', ['-l', mnt]);
    }
  });

  describe('which decisions OpenMarks marks', () => {
    const RULE: PolicyRule = {
      id: 'tgomn-banned',
      name: 'Banned',
      action: 'block',
      message: 'banned',
      process: { script_packages: ['tgomn-pkg'], names: ['tgomn-name'] },
    };
    const compile = (body: PolicyBody): Matcher => compileMatcher(body, { platform: 'linux', homes: [] });
    function observation(f: { path: string; dev: number; ino: number }, name = 'node'): ProcessObservation {
      return {
        kind: 'process',
        pid: 4242,
        ppid: 1,
        startTime: 1,
        name,
        exe: '/usr/bin/node',
        argv: ['node', f.path],
        owner: { uid: user.uid, user: user.name, groups: [], home: null },
        tty: null,
        scriptPackage: {
          name: 'tgomn-pkg',
          version: '1.0.0',
          root: dir,
          script: f.path,
          scriptFile: { dev: f.dev, ino: f.ino, owner: user.uid, packageOwner: user.uid },
        },
      };
    }
    /** A root-owned file written at `path`, observed as a banned package's script whose package.json root owns too. */
    function rootOwnedScript(path: string): ProcessObservation {
      writeFileSync(path, '// root\n');
      const rs = statSync(path);
      const obs = observation({ path, dev: rs.dev, ino: rs.ino });
      return {
        ...obs,
        scriptPackage: obs.scriptPackage
          ? { ...obs.scriptPackage, scriptFile: { dev: rs.dev, ino: rs.ino, owner: 0, packageOwner: 0 } }
          : null,
      };
    }
    const decide = (m: Matcher, obs: ProcessObservation): Decision => {
      const d = m.match(obs, { now: Date.now(), hostname: 'h', deviceTags: [] });
      if (!d) throw new Error('no decision');
      return d;
    };
    const exception: PolicyException = {
      rule: 'tgomn-banned',
      users: ['nobody-else'],
      expires_at: new Date(Date.now() + 86_400_000).toISOString(),
    };

    it.each<
      [string, () => { body: PolicyBody; name?: string; stale?: boolean; at?: string; mounts?: MountView[] }]
    >([
      ['monitor mode', () => ({ body: policyBody([RULE], { mode: 'monitor' }) })],
      ['a warn rule', () => ({ body: policyBody([{ ...RULE, action: 'warn' }]) })],
      ['a rule with exceptions', () => ({ body: policyBody([RULE], { exceptions: [exception] }) })],
      ['a match on the name, not the package', () => ({ body: policyBody([RULE]), name: 'tgomn-name' })],
      ['a decision of an older policy', () => ({ body: policyBody([RULE]), stale: true })],
      ["a file under guardd's own dirs", () => ({ body: policyBody([RULE]), at: 'guardd-state' })],
      [
        'a mount pre-exec deny is not attached to',
        () => ({
          body: policyBody([RULE]),
          mounts: [{ mountPoint: '/', attached: false }],
        }),
      ],
    ])('no mark for %s', (_why, make) => {
      const c = make();
      const m = compile(c.body);
      if (c.at) mkdirSync(join(dir, c.at), { recursive: true });
      const f = userFile(c.at ? join(c.at, 'cli.js') : `cli-${Math.random().toString(36).slice(2)}.js`);
      const obs = observation(f);
      const d = decide(m, c.name ? { ...obs, name: c.name, scriptPackage: null } : obs);
      matcher = c.stale ? compile({ ...c.body, version: c.body.version + 1 }) : m;
      mounts = c.mounts ?? [{ mountPoint: '/', attached: true }];
      marks.considerNow(c.name ? { ...obs, name: c.name } : obs, d);
      expect(marks.status().marked).toBe(0);
      expect(addon.counters().file_marks).toBe(0);
    });

    it('enforcement.open_marks off: nothing is marked', () => {
      const off = new OpenMarks({
        addon,
        logger: silentLogger(),
        matcher: () => matcher,
        mounts: () => [{ mountPoint: '/', attached: true }],
        protectedDirs: [],
        denied: async () => ({ actionTaken: 'denied', latencyMs: 0, error: null }),
        owner: (uid) => ({ uid, user: null, groups: [], home: null }),
        enabled: false,
      });
      off.start();
      matcher = compile(policyBody([RULE]));
      const f = userFile('off-cli.js');
      const obs = observation(f);
      off.considerNow(obs, decide(matcher, obs));
      expect(off.status()).toMatchObject({ state: 'off', marked: 0 });
      expect(addon.counters().file_marks).toBe(0);
    });

    it('marks an enforced block on script_package; a new policy flushes it', async () => {
      mounts = [{ mountPoint: '/', attached: true }];
      const body = policyBody([RULE]);
      matcher = compile(body);
      const f = userFile('banned-cli.js');
      const obs = observation(f);
      marks.considerNow(obs, decide(matcher, obs));
      expect(marks.status()).toMatchObject({ marked: 1, added: 1 });
      opened = [];
      expect((await sh(user, `cat "${f.path}"`, true)).code).toBe(1);
      await waitFor(() => opened.length > 0, 'the refusal recorded');
      expect(opened).toEqual([{ dev: f.dev, ino: f.ino, size: statSync(f.path).size }]);
      marks.policyChanged();
      expect(marks.status()).toMatchObject({ marked: 0, flushes: 1 });
      expect(addon.counters().file_marks).toBe(0);
      expect((await sh(user, `cat "${f.path}"`, true)).code).toBe(0);
    });

    it(`one user's files hold at most ${MAX_OPEN_MARKS_PER_OWNER} marks: their oldest goes, root's file keeps its mark`, async () => {
      matcher = compile(policyBody([RULE]));
      mkdirSync(join(dir, 'owned'));
      const evictedBefore = marks.status().evicted;
      const rootFile = join(dir, 'owned', 'root-cli.js');
      const rootOwned = rootOwnedScript(rootFile);
      marks.considerNow(rootOwned, decide(matcher, rootOwned));
      const files = Array.from({ length: MAX_OPEN_MARKS_PER_OWNER + 1 }, (_, i) =>
        userFile(join('owned', `u${i}.js`)),
      );
      for (const f of files) {
        const obs = observation(f);
        marks.considerNow(obs, decide(matcher, obs));
      }
      expect(marks.status()).toMatchObject({
        marked: MAX_OPEN_MARKS_PER_OWNER + 1,
        evicted: evictedBefore + 1,
      });
      expect((await sh(user, `cat "${files[0]?.path}" >/dev/null`, true)).code).toBe(0);
      expect((await sh(user, `cat "${files[1]?.path}" >/dev/null`, true)).code).toBe(1);
      expect((await sh(user, `cat "${rootFile}" >/dev/null`, true)).code).toBe(1);
      marks.policyChanged();
      expect(addon.counters().file_marks).toBe(0);
    });

    it("a user who renames their own marked files until the orphans overflow does not take root's mark with them", async () => {
      // The attack: plant fake packages named like a banned one, get each killed (marked), rename
      // them so their eviction cannot reach them (orphans); after MAX_OPEN_MARKS orphans every
      // kernel mark used to be flushed, root's global package's with them, and `import()` of it ran.
      matcher = compile(policyBody([RULE]));
      mkdirSync(join(dir, 'orphans'));
      chmodSync(join(dir, 'orphans'), 0o777);
      const rootFile = join(dir, 'orphans', 'root-cli.js');
      const rootOwned = rootOwnedScript(rootFile);
      marks.considerNow(rootOwned, decide(matcher, rootOwned));
      const flushesBefore = marks.status().flushes;
      const orphanedBefore = marks.status().orphaned;
      const batches = Math.ceil(MAX_OPEN_MARKS / MAX_OPEN_MARKS_PER_OWNER) + 2;
      for (let b = 0; b < batches && marks.status().flushes === flushesBefore; b++) {
        const sub = join('orphans', `d${b}`);
        mkdirSync(join(dir, sub));
        chownSync(join(dir, sub), user.uid, user.gid);
        for (let i = 0; i < MAX_OPEN_MARKS_PER_OWNER; i++) {
          const obs = observation(userFile(join(sub, `cli${i}.js`)));
          marks.considerNow(obs, decide(matcher, obs));
        }
        // the user renames their directory: the eviction of these marks cannot reach them
        expect((await sh(user, `mv "${join(dir, sub)}" "${join(dir, sub)}-gone"`)).code).toBe(0);
      }
      expect(marks.status().orphaned - orphanedBefore).toBeGreaterThanOrEqual(MAX_OPEN_MARKS);
      expect(marks.status().flushes).toBe(flushesBefore + 1);
      // root's file is still refused to the user, and still in the table
      expect((await sh(user, `cat "${rootFile}" >/dev/null`, true)).code).toBe(1);
      expect(marks.status().marked).toBeLessThanOrEqual(MAX_OPEN_MARKS_PER_OWNER + 1);
      marks.policyChanged();
      expect(addon.counters().file_marks).toBe(0);
    });

    it(`holds at most ${MAX_OPEN_MARKS} marks: the oldest goes first and opens again`, async () => {
      matcher = compile(policyBody([RULE]));
      mkdirSync(join(dir, 'many'));
      const evictedBefore = marks.status().evicted;
      const orphanedBefore = marks.status().orphaned;
      const files = Array.from({ length: MAX_OPEN_MARKS + 1 }, (_, i) => userFile(join('many', `f${i}.js`)));
      for (const f of files) {
        // as if root owned them (the per-owner bound is the test above)
        const o = observation(f);
        const obs: ProcessObservation = {
          ...o,
          scriptPackage: o.scriptPackage
            ? { ...o.scriptPackage, scriptFile: { dev: f.dev, ino: f.ino, owner: 0, packageOwner: 0 } }
            : null,
        };
        marks.considerNow(obs, decide(matcher, obs));
      }
      expect(marks.status()).toMatchObject({
        marked: MAX_OPEN_MARKS,
        evicted: evictedBefore + 1,
        orphaned: orphanedBefore,
      });
      expect(addon.counters().file_marks).toBe(MAX_OPEN_MARKS);
      const [first, second] = files;
      expect((await sh(user, `cat "${first?.path}" >/dev/null`, true)).code).toBe(0);
      expect((await sh(user, `cat "${second?.path}" >/dev/null`, true)).code).toBe(1);
      marks.policyChanged();
      expect(addon.counters().file_marks).toBe(0);
    });
  });

  it('mountOf picks the longest mount point holding the path, the later of equal ones', () => {
    const views: MountView[] = [
      { mountPoint: '/', attached: true },
      { mountPoint: '/home', attached: true },
      { mountPoint: '/home/u/fuse', attached: false },
      { mountPoint: '/home', attached: false },
    ];
    expect(mountOf(views, '/home/u/x.js')).toBe(views[3]);
    expect(mountOf(views, '/home/u/fuse/x.js')).toBe(views[2]);
    expect(mountOf(views, '/home/u/fusex/x.js')).toBe(views[3]);
    expect(mountOf(views, '/usr/lib/x.js')).toBe(views[0]);
  });
});
