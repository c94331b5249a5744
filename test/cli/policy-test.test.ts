/**
 * `guardctl policy test` through the built guardctl, for every kind of target: an executable file
 * (by name, by a content marker, by the script package of a `#!/usr/bin/env node` script), a
 * running pid, an npm package directory, a path; an exception that lifts a rule; "why not" when
 * nothing matches; and the policy in force read from a real guardd.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { PolicyTestReport } from '../../src/cli/commands/policy-test.js';
import type { PolicyRule } from '../../src/policy/policy-types.js';
import { makeKey, policyBody, runGuardctl, startGuardd, writeSignedPolicy } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgcl-pt-');
const MARKER = 'tgcl-marker-7d1f0c9a2b';
const NAMED = 'tgcl-pt-named';
const PKG = '@tgcl/banned-cli';
const rules: PolicyRule[] = [
  { id: 'tgcl-name', name: 'named tool', action: 'block', message: 'no', process: { names: [NAMED] } },
  {
    id: 'tgcl-marker',
    name: 'marked tool',
    action: 'block',
    message: 'no',
    process: { markers: [[MARKER]] },
  },
  {
    id: 'tgcl-pkg',
    name: 'banned package',
    action: 'block',
    message: 'no',
    process: { script_packages: [PKG] },
    packages: [{ ecosystem: 'npm', name: PKG, range: '*' }],
  },
  { id: 'tgcl-path', name: 'artifact', action: 'warn', message: 'hm', paths: [`${dir}/artifacts/*`] },
];
const exceptionExpiry = new Date(Date.now() + 7 * 86_400_000).toISOString();
const body = policyBody(rules, {
  version: 7,
  exceptions: [{ rule: 'tgcl-name', users: ['root'], expires_at: exceptionExpiry }],
});
const policyFile = join(dir, 'policy.json');
writeFileSync(policyFile, JSON.stringify(body));

// Targets: a copy of sleep under the banned name; a copy of sleep with the marker appended (its
// tail is searched); a global npm tree with the banned package and its node script.
const named = join(dir, 'bin', NAMED);
const marked = join(dir, 'bin', 'tgcl-pt-marked');
mkdirSync(dirname(named), { recursive: true });
copyFileSync('/bin/sleep', named);
copyFileSync('/bin/sleep', marked);
appendFileSync(marked, `\n${MARKER}\n`);
chmodSync(named, 0o755);
chmodSync(marked, 0o755);
const pkgDir = join(dir, 'lib', 'node_modules', '@tgcl', 'banned-cli');
mkdirSync(pkgDir, { recursive: true });
writeFileSync(
  join(pkgDir, 'package.json'),
  JSON.stringify({ name: PKG, version: '1.2.3', bin: { banned: 'cli.js' } }),
);
writeFileSync(join(pkgDir, 'cli.js'), '#!/usr/bin/env node\nconsole.log("hi");\n', { mode: 0o755 });

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

function test(args: readonly string[]): PolicyTestReport {
  const r = runGuardctl(['--json', 'policy', 'test', '--policy', policyFile, ...args], {
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
  });
  expect(r.code, r.stderr).toBe(0);
  return r.json<PolicyTestReport>();
}

describe('guardctl policy test', () => {
  it('a file: blocked by a content marker, with the rule, reason and what matched', () => {
    const r = test([marked]);
    expect(r.kind).toBe('file');
    expect(r.policy).toMatchObject({ version: 7, mode: 'enforce' });
    const prog = r.results.find((x) => x.as === 'process');
    expect(prog?.verdict).toMatchObject({
      act: 'block',
      rule: { id: 'tgcl-marker' },
      reason: 'content',
    });
    expect(prog?.facts.content_markers).toHaveLength(1);
    expect(prog?.why_not).toBeNull();
    // the same file as a path artifact: no path glob names it
    const asPath = r.results.find((x) => x.as === 'path');
    expect(asPath?.verdict).toBeNull();
    expect(asPath?.why_not).toContain("no rule's path glob matches");
  });

  it('an exception: the name rule is lifted for root and says which exception; another user is blocked', () => {
    const asRoot = test([named]).results.find((x) => x.as === 'process');
    expect(asRoot?.verdict).toBeNull();
    expect(asRoot?.matches).toEqual([
      {
        rule: { id: 'tgcl-name', name: 'named tool', action: 'block' },
        reason: 'name',
        detail: NAMED,
        status: 'excepted',
        exceptions: [{ rule: 'tgcl-name', users: ['root'], expires_at: exceptionExpiry }],
      },
    ]);
    expect(asRoot?.why_not).toContain('exception');
    const asNobody = test(['--user', 'nobody', named]).results.find((x) => x.as === 'process');
    expect(asNobody?.verdict).toMatchObject({ act: 'block', rule: { id: 'tgcl-name' }, reason: 'name' });
  });

  it('a running pid: read from /proc like the process sensor', async () => {
    const child = spawn(marked, ['60'], { stdio: 'ignore' });
    children.push(child);
    await waitFor(() => (child.pid ? true : undefined), 'the child to start');
    // the pid shows the marked program once it has exec'd (its /proc/<pid>/exe)
    const r = await waitFor(() => {
      const out = test([String(child.pid)]);
      return out.results[0]?.verdict ? out : undefined;
    }, 'the pid to be decided');
    expect(r.kind).toBe('pid');
    expect(r.results).toHaveLength(1);
    expect(r.results[0]?.verdict).toMatchObject({
      act: 'block',
      rule: { id: 'tgcl-marker' },
      reason: 'content',
    });
    expect(r.results[0]?.facts.exe).toBe(marked);
  });

  it('an npm package dir (as a package) and its node script (as a program, by script package)', () => {
    const r = test([pkgDir]);
    expect(r.kind).toBe('package');
    expect(r.results.find((x) => x.as === 'package')?.verdict).toMatchObject({
      act: 'block',
      rule: { id: 'tgcl-pkg' },
      reason: 'npm_package',
    });
    const script = test([join(pkgDir, 'cli.js')]).results.find((x) => x.as === 'process');
    expect(script?.facts.script_package).toBe(`${PKG}@1.2.3`);
    expect(script?.verdict).toMatchObject({
      act: 'block',
      rule: { id: 'tgcl-pkg' },
      reason: 'script_package',
    });
  });

  it('a path (existing or not) matched by a path glob', () => {
    const r = test([join(dir, 'artifacts', 'v1.0.0')]);
    expect(r.kind).toBe('path');
    expect(r.results).toHaveLength(1);
    expect(r.results[0]?.verdict).toMatchObject({ act: 'warn', rule: { id: 'tgcl-path' }, reason: 'path' });
  });

  it('why not, in words, when nothing matches', () => {
    const r = runGuardctl(['policy', 'test', '--policy', policyFile, '/bin/true']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/as a program {6}ALLOWED/);
    expect(r.stdout).toContain('why not: no rule names it: name "true"');
    for (const line of r.stdout.split('\n')) expect(line.length).toBeLessThanOrEqual(100);
  });

  it('usage errors exit 2', () => {
    expect(runGuardctl(['policy', 'test']).code).toBe(2);
    const bad = runGuardctl(['policy', 'test', '--policy', policyFile, '--kind', 'socket', '/bin/true']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('[GUARD_CLI_USAGE]');
  });

  it('without --policy: the policy in force, read from a real guardd', async () => {
    const key = makeKey();
    const signed = writeSignedPolicy(join(dir, 'signed.json'), body, key);
    const guardd = await startGuardd(join(dir, 'd'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': signed,
      // nothing of this file's runs may be killed by this guardd while the test reads it
      'sensors.process.enabled': false,
    });
    try {
      const r = runGuardctl(['--socket-dir', guardd.socketDir, '--json', 'policy', 'test', marked]);
      expect(r.code, r.stderr).toBe(0);
      const report = r.json<PolicyTestReport>();
      expect(report.policy?.source).toMatch(/^guardd/);
      expect(report.policy?.version).toBe(7);
      expect(report.results[0]?.verdict).toMatchObject({ rule: { id: 'tgcl-marker' } });
    } finally {
      await guardd.stop();
    }
  }, 60_000);
});
