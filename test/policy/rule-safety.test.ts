/**
 * The semantic safety check (issue 12 item 6): rules are compiled with the real matcher and run
 * against probes of THIS machine — programs found on PATH and resolved to their real files, the
 * node running guardd, the device's state dir — not against name lists. Programs and dirs are
 * created by the test (a temp dir put on PATH), so the probes are seen discovering them.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isGuardError } from '../../src/common/errors.js';
import { compileMatcher } from '../../src/policy/matcher.js';
import { lintPolicy } from '../../src/policy/policy-lint.js';
import { assertValidPolicyBody } from '../../src/policy/policy-schema.js';
import type { PolicyBody, PolicyRule } from '../../src/policy/policy-types.js';
import {
  assertSafePolicy,
  forgetMachineProbes,
  globHomes,
  ruleSafetyIssues,
  unsafeRuleIssues,
} from '../../src/policy/rule-safety.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';
import { body } from './policy-helpers.js';

const root = tempDir('tg-safety-');
const savedPath = process.env.PATH;
afterEach(() => {
  process.env.PATH = savedPath;
});
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

function withRule(r: Partial<PolicyRule>): PolicyBody {
  const base = body(3);
  return {
    ...base,
    rules: [{ id: 'r', name: 'R', action: 'block', message: 'm', ...r } as PolicyRule],
  };
}

/** A bin dir with a fake interpreter `python3.99` and `perl5.99` → a real file named `strange-interp`. */
function fakeBinDir(tag: string): { bin: string; python: string; interp: string } {
  const dir = join(root, tag);
  const bin = join(dir, 'bin');
  const real = join(dir, 'real');
  mkdirSync(bin, { recursive: true });
  mkdirSync(real, { recursive: true });
  const python = join(bin, 'python3.99');
  writeFileSync(python, `#!/bin/sh\necho ${tag}\n`);
  chmodSync(python, 0o755);
  const interp = join(real, 'strange-interp');
  writeFileSync(interp, `#!/bin/sh\necho interp ${tag}\n`);
  chmodSync(interp, 0o755);
  symlinkSync(interp, join(bin, 'perl5.99'));
  return { bin: realpathSync(bin), python: realpathSync(python), interp: realpathSync(interp) };
}

describe('the safety check probes this machine', () => {
  it('finds interpreters on PATH and judges them by name, real name, exe path and hash', () => {
    const f = fakeBinDir('path1');
    const sha = createHash('sha256').update(`#!/bin/sh\necho path1\n`).digest('hex');
    const cases: [string, PolicyBody, string][] = [
      ['name on PATH', withRule({ process: { names: ['python3.99'] } }), '$.rules[0].process.names[0]'],
      [
        'real name behind a link',
        withRule({ process: { names: ['strange-interp'] } }),
        '$.rules[0].process.names[0]',
      ],
      [
        'exe path',
        withRule({ process: { exe_globs: [`${f.bin}/python*`] } }),
        '$.rules[0].process.exe_globs[0]',
      ],
      ['hash of the real file', withRule({ process: { sha256: [sha] } }), '$.rules[0].process.sha256[0]'],
    ];
    // Not on PATH: nothing to protect, each rule is accepted (the probe is what refuses it).
    for (const [name, b] of cases) expect(unsafeRuleIssues(b), name).toEqual([]);
    process.env.PATH = `${f.bin}:${savedPath}`;
    for (const [name, b, path] of cases) {
      const issues = unsafeRuleIssues(b);
      expect(
        issues.map((i) => i.path),
        name,
      ).toEqual([path]);
      expect(issues[0]?.message, name).toMatch(/^would kill the critical program /);
    }
  });

  it("protects the device's state dir given by the manager, at, above and below it", () => {
    const state = join(root, 'device', 'state');
    mkdirSync(state, { recursive: true });
    const globs = [
      `${state}/quarantine/*`,
      `${state}/**`,
      state,
      join(root, 'device'),
      `${join(root, 'device')}/*`,
    ];
    for (const g of globs) {
      const b = withRule({ paths: [g] });
      expect(unsafeRuleIssues(b), g).toEqual([]);
      expect(
        unsafeRuleIssues(b, { protectedDirs: [state] }).map((i) => i.path),
        g,
      ).toEqual(['$.rules[0].paths[0]']);
    }
    // A sibling of the state dir is not protected.
    expect(
      unsafeRuleIssues(withRule({ paths: [`${join(root, 'device')}/other/*`] }), { protectedDirs: [state] }),
    ).toEqual([]);
  });

  it('protects guardd itself: its node binary, its script, its package and its app dir', () => {
    const app = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
    const node = realpathSync(process.execPath);
    const cases: [PolicyBody, string][] = [
      [withRule({ process: { exe_globs: [node] } }), '$.rules[0].process.exe_globs[0]'],
      [
        withRule({ process: { argv_patterns: [`${app}/bin/guardd\\.js`] } }),
        '$.rules[0].process.argv_patterns[0]',
      ],
      [withRule({ process: { script_packages: ['toolguard'] } }), '$.rules[0].process.script_packages[0]'],
      [withRule({ paths: [`${app}/dist/*`] }), '$.rules[0].paths[0]'],
      [
        withRule({ packages: [{ ecosystem: 'npm', name: 'toolguard', range: '*' }] }),
        '$.rules[0].packages[0].name',
      ],
    ];
    for (const [b, path] of cases) expect(unsafeRuleIssues(b).map((i) => i.path)).toEqual([path]);
  });

  it('protects what /bin/sh really is, /etc, /root and every home’s secrets', () => {
    const sh = realpathSync('/bin/sh');
    const cases: [PolicyBody, string][] = [
      [withRule({ process: { exe_globs: [sh] } }), '$.rules[0].process.exe_globs[0]'],
      [withRule({ paths: ['/etc/cron.d/*'] }), '$.rules[0].paths[0]'],
      [withRule({ paths: ['/root/.ssh/id_*'] }), '$.rules[0].paths[0]'],
      [withRule({ paths: ['~/.ssh/*'] }), '$.rules[0].paths[0]'],
      [withRule({ paths: ['~/.bashrc'] }), '$.rules[0].paths[0]'],
    ];
    for (const [b, path] of cases)
      expect(
        unsafeRuleIssues(b).map((i) => i.path),
        JSON.stringify(b.rules[0]),
      ).toEqual([path]);
  });

  it('expands `~` for one of the machine’s homes (each gets the same probes) and those holding a probe of their own, or for all when one home holds another', () => {
    expect(globHomes(['/home/probe-user'], ['/root', '/home/a', '/home/b'])).toEqual([
      '/home/probe-user',
      '/root',
    ]);
    // `~/alice/.ssh/*` of the user whose home is /srv reaches alice's secrets: every home is kept
    expect(globHomes(['/home/probe-user'], ['/root', '/srv', '/srv/alice/'])).toEqual([
      '/home/probe-user',
      '/root',
      '/srv',
      '/srv/alice/',
    ]);
    expect(globHomes(['/home/probe-user'], ['/', '/home/a'])).toHaveLength(3);
    expect(globHomes(['/home/probe-user'], [])).toEqual(['/home/probe-user']);
    expect(globHomes(['/home/probe-user'], ['/root', '/home/a', '/home/b'], ['/home/b'])).toEqual([
      '/home/probe-user',
      '/root',
      '/home/b',
    ]);
  });

  it.runIf(process.getuid?.() === 0)(
    'a program on PATH inside a user’s home (not the home `~` is otherwise expanded for): a `~` rule reaching it is refused',
    () => {
      // a critical program the machine runs from a user's home (on PATH here; a systemd unit's
      // ExecStart there, node or guardd's app dir alike): `~/apps/**` would quarantine it
      const user = createTestUser('tgrs');
      const bin = join(user.home, 'apps', 'bin');
      mkdirSync(bin, { recursive: true });
      copyFileSync('/bin/true', join(bin, 'python3.99'));
      chmodSync(join(bin, 'python3.99'), 0o755);
      process.env.PATH = `${bin}:${savedPath}`;
      forgetMachineProbes();
      const issues = unsafeRuleIssues(withRule({ paths: ['~/apps/**'] }));
      expect(issues.map((i) => i.path)).toEqual(['$.rules[0].paths[0]']);
      expect(issues[0]?.message).toContain(join(bin, 'python3.99'));
      // the same rule where no home holds such a program: kept
      process.env.PATH = savedPath;
      forgetMachineProbes();
      expect(unsafeRuleIssues(withRule({ paths: ['~/apps/**'] }))).toEqual([]);
    },
  );

  it('keeps ordinary ban rules, including ~/ paths that expand into every home', () => {
    const example = body(3);
    expect(ruleSafetyIssues(example)).toEqual([]);
    const ok = withRule({
      process: {
        names: ['claude', 'aider', 'cursor-agent'],
        exe_globs: ['**/node_modules/@anthropic-ai/claude-code*/**', '/usr/local/bin/claude'],
        argv_patterns: ['^\\S*python[0-9.]* -m aider(?: |$)', 'a.*b.*c.*d.*e'],
        script_packages: ['@anthropic-ai/claude-code'],
      },
      paths: ['~/.local/share/claude/versions/*', '~/.claude/local/**', '/usr/local/bin/claude'],
    });
    expect(ruleSafetyIssues(ok)).toEqual([]);
  });
});

describe('severity: block is refused, warn and audit are advice', () => {
  const rule = { process: { names: ['env'] } };

  it('a block rule on env is refused by guardd and an error in lint', () => {
    const b = withRule({ ...rule, action: 'block' });
    let caught: unknown;
    try {
      assertSafePolicy(b);
    } catch (err) {
      caught = err;
    }
    expect(isGuardError(caught, 'GUARD_POLICY_UNSAFE_RULE')).toBe(true);
    expect(lintPolicy(b)).toContainEqual(
      expect.objectContaining({
        severity: 'error',
        code: 'GUARD_POLICY_UNSAFE_RULE',
        path: '$.rules[0].process.names[0]',
      }),
    );
  });

  it.each(['warn', 'audit'] as const)('a %s rule on env is applied, and lint warns', (action) => {
    const b = withRule({ ...rule, action });
    expect(() => assertSafePolicy(b)).not.toThrow();
    expect(lintPolicy(b)).toContainEqual(
      expect.objectContaining({
        severity: 'warning',
        kind: 'unsafe',
        code: 'GUARD_POLICY_LINT',
        path: '$.rules[0].process.names[0]',
        message: expect.stringMatching(/would fire on it every time/),
      }),
    );
  });

  it('a too-broad path glob is an error whatever the action', () => {
    const b = withRule({ action: 'audit', paths: ['/*/claude'] });
    expect(unsafeRuleIssues(b).map((i) => i.path)).toEqual(['$.rules[0].paths[0]']);
  });
});

describe('review round 2: aliases, system state, running system programs, linear globs', () => {
  it.each([
    ['/var/run/** (alias of /run)', ['/var/run/**']],
    ['/var/run/dbus/* (alias of /run)', ['/var/run/dbus/*']],
    ['/var/lock/** (alias of /run/lock)', ['/var/lock/**']],
    ['/run/**', ['/run/**']],
    ['/var/lib/dpkg/**', ['/var/lib/dpkg/**']],
    ['/var/lib/apt/lists/*', ['/var/lib/apt/lists/*']],
    ['/var/lib/rpm/*', ['/var/lib/rpm/*']],
    ['/var/lib/someservice/** (all of /var/lib)', ['/var/lib/someservice/**']],
    ['/usr/share/**', ['/usr/share/**']],
    ['/var/log/*.log', ['/var/log/*.log']],
  ])('a block path rule on %s is refused (GUARD_POLICY_UNSAFE_RULE)', (_what, paths) => {
    let code: string | undefined;
    try {
      assertSafePolicy(withRule({ paths }));
    } catch (err) {
      code = isGuardError(err) ? err.code : 'not a GuardError';
    }
    expect(code).toBe('GUARD_POLICY_UNSAFE_RULE');
  });

  it('resolves the literal base of a path glob on this machine: a link into a protected tree is refused', () => {
    const dir = join(root, 'alias');
    mkdirSync(dir, { recursive: true });
    const link = join(dir, 'etc-link');
    symlinkSync('/etc', link);
    const issues = unsafeRuleIssues(withRule({ paths: [`${link}/ssh/*`] }));
    expect(issues.map((i) => i.path)).toEqual(['$.rules[0].paths[0]']);
    // Same glob, judged for other machines only (no realpath here): the written form is harmless.
    expect(unsafeRuleIssues(withRule({ paths: [`${link}/ssh/*`] }), { probeMachine: false })).toEqual([]);
  });

  it.each([
    'NetworkManager',
    'systemd-resolved',
    'systemd-networkd',
    'agetty',
    'polkitd',
    'dockerd',
    'containerd',
    'ssh',
  ])('a block rule naming the system daemon %s is refused on any machine', (name) => {
    const issues = unsafeRuleIssues(withRule({ process: { names: [name] } }), { probeMachine: false });
    expect(issues.map((i) => i.path)).toEqual(['$.rules[0].process.names[0]']);
  });

  it('probes what runs under a system uid: a daemon running as uid 1 is refused, the same program under a user uid is not', async () => {
    const dir = join(root, 'sysproc');
    mkdirSync(dir, { recursive: true });
    chmodSync(root, 0o755);
    chmodSync(dir, 0o755);
    const prog = join(dir, 'tgr2-sysd');
    copyFileSync('/bin/sleep', prog);
    chmodSync(prog, 0o755);
    const rule = withRule({ process: { names: ['tgr2-sysd'] } });
    forgetMachineProbes();
    expect(unsafeRuleIssues(rule)).toEqual([]);

    const run = (uid: number) => {
      const child = spawn(prog, ['600'], { uid, gid: uid, stdio: 'ignore' });
      children.push(child);
      return child;
    };
    const started = async (pid: number | undefined) =>
      waitFor(() => {
        try {
          return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'tgr2-sysd';
        } catch {
          return false;
        }
      }, 'the spawned program to be exec-ed');

    const user = run(60_001); // above UID_MIN: a user's process, not the system's
    await started(user.pid);
    forgetMachineProbes();
    expect(unsafeRuleIssues(rule)).toEqual([]);

    const daemon = run(1); // uid 1 (daemon): below UID_MIN
    await started(daemon.pid);
    forgetMachineProbes();
    let code: string | undefined;
    try {
      assertSafePolicy(rule);
    } catch (err) {
      code = isGuardError(err) ? err.code : 'not a GuardError';
    }
    expect(code).toBe('GUARD_POLICY_UNSAFE_RULE');
    // Its real exe path is probed too.
    expect(unsafeRuleIssues(withRule({ process: { exe_globs: [`${realpathSync(dir)}/*`] } })).length).toBe(1);
    forgetMachineProbes();
  });

  it("probes enabled systemd units' ExecStart programs, and a FIFO among the units does not stall it", () => {
    const dir = join(root, 'unitprog');
    mkdirSync(dir, { recursive: true });
    const prog = join(dir, 'tgr2-unitprog');
    writeFileSync(prog, '#!/bin/sh\nexit 0\n');
    chmodSync(prog, 0o755);
    // A wants dir of the test's own (unique name), removed afterwards: /etc/systemd/system is real.
    const wants = '/etc/systemd/system/tgr2-test.target.wants';
    mkdirSync(wants, { recursive: true });
    try {
      execFileSync('mkfifo', [join(wants, 'tgr2-fifo.service')]);
      writeFileSync(
        join(wants, 'tgr2-unit.service'),
        `[Unit]\nDescription=t\n[Service]\nExecStart=-${prog} --serve\n`,
      );
      forgetMachineProbes();
      let code: string | undefined;
      try {
        assertSafePolicy(withRule({ process: { names: ['tgr2-unitprog'] } }));
      } catch (err) {
        code = isGuardError(err) ? err.code : 'not a GuardError';
      }
      expect(code).toBe('GUARD_POLICY_UNSAFE_RULE');
    } finally {
      rmSync(wants, { recursive: true, force: true });
      forgetMachineProbes();
    }
    expect(unsafeRuleIssues(withRule({ process: { names: ['tgr2-unitprog'] } }))).toEqual([]);
  });

  it('a negated extglob (needs lookahead) is refused by the schema with GUARD_POLICY_SCHEMA', () => {
    let code: string | undefined;
    try {
      assertValidPolicyBody(withRule({ paths: ['/opt/x/!(keep)'] }));
    } catch (err) {
      code = isGuardError(err) ? err.code : 'not a GuardError';
    }
    expect(code).toBe('GUARD_POLICY_SCHEMA');
  });

  it('globs match in linear time: the reviewer glob on a 255-char name (266 s before) stays fast', () => {
    const globs = ['/home/*/proj/a*a*a*a*a*a*c*b', '/x/**/a*a*a*/**/a*a*a*/**/c'];
    const m = compileMatcher(withRule({ paths: globs }), { platform: 'linux', homes: [] });
    const ctx = { now: Date.now(), hostname: 'h', deviceTags: [] };
    const owner = { uid: 1000, user: 'u', groups: [], home: '/home/u' };
    const deep = `/x/${Array.from({ length: 15 }, () => 'a'.repeat(255)).join('/')}/b`;
    const t = performance.now();
    for (const path of [`/home/u/proj/${'a'.repeat(254)}b`, deep]) {
      expect(m.match({ kind: 'path', path, isDirectory: false, owner }, ctx)).toBeNull();
    }
    expect(
      m.match({ kind: 'path', path: '/home/u/proj/aaaaaaacb', isDirectory: false, owner }, ctx),
    ).not.toBeNull();
    // exe globs run on the same engine.
    const exe = compileMatcher(
      withRule({ process: { exe_globs: ['/opt/*/a*a*a*a*a*a*c*b', '**/x/a*a*a*a*a*a*c*b'] } }),
      { platform: 'linux', homes: [] },
    );
    const proc = (path: string) => ({
      kind: 'process' as const,
      pid: 2,
      ppid: 1,
      startTime: 0,
      name: 'x',
      exe: path,
      argv: [],
      owner,
      tty: null,
      scriptPackage: null,
    });
    expect(exe.match(proc(`/opt/t/${'a'.repeat(254)}b`), ctx)).toBeNull();
    expect(exe.match(proc(`/opt/t/x/${'a'.repeat(254)}b`), ctx)).toBeNull();
    expect(exe.match(proc('/opt/t/aaaaaacb'), ctx)?.reason).toBe('exe_path');
    // Generous sanity bound for a busy 2-core machine; backtracking took minutes here.
    expect(performance.now() - t).toBeLessThan(2_000);
  });
});
