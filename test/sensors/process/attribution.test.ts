/**
 * Script → package attribution against a local attacker (issue 12, item 4 and the package.json
 * part of 7), with real unprivileged users created for this file and real processes through the
 * real pipeline: a package.json with a banned name planted by one user in a shared
 * world-writable directory (like /tmp) does not get another user's `node app.js` or a root
 * `python3` job killed, nor does one planted in the attacker's own directory above a root script;
 * a symlink or a root-only file named package.json tells nothing. The honest cases are still
 * killed: a user's own banned package in their own npm tree, also when they make it
 * world-writable to hide it.
 */
import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyRule } from '../../../src/policy/policy-types.js';
import type { ProcessObservation } from '../../../src/sensors/observation.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { asUser, createUser, removeUser, type TestUser } from '../hostile-fs.js';
import { alive, type Launched, launch, type Pipeline, policy, startPipeline } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;
const PYTHON = '/usr/bin/python3';
const KEEP_ALIVE_JS = 'setTimeout(() => {}, 60000);\n';
const KEEP_ALIVE_PY = 'import time\ntime.sleep(60)\n';

describe.runIf(runnable)('script → package attribution with a hostile local user', () => {
  const BANNED = `@tg-attr/banned-${Date.now().toString(36)}`;
  const base = tempDir('tg-attr-');
  let attacker: TestUser;
  let victim: TestUser;
  let p: Pipeline;

  beforeAll(async () => {
    attacker = createUser('tgatk');
    victim = createUser('tgatk');
    chmodSync(base, 0o755);
    const rule: PolicyRule = {
      id: 'attr-banned',
      name: 'Banned package',
      action: 'block',
      message: 'banned',
      process: { script_packages: [BANNED] },
    };
    p = await startPipeline(policy([rule]), { keepObservations: true });
  });

  afterAll(async () => {
    await p?.stop();
    removeUser(attacker);
    removeUser(victim);
  });

  const manifest = (): string => JSON.stringify({ name: BANNED, version: '1.0.0' });

  /** Waits for the observation of `l` that carries the script package answer. */
  async function observed(l: Launched): Promise<ProcessObservation> {
    const pid = l.child.pid as number;
    return waitFor(
      () => p.observed.find((o) => o.pid === pid && o.scriptPackage !== undefined && o.exe !== null),
      `observation of pid ${pid}`,
    );
  }

  function counts(): Record<string, number> {
    const d = p.sensor.status().details as { script_packages?: Record<string, number> };
    return d.script_packages ?? {};
  }

  it('a package.json planted in a sticky world-writable dir kills neither another user’s node nor a root python3 job', async () => {
    const shared = join(base, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    // The attacker plants it, as themselves.
    asUser(attacker, `printf '%s' '${manifest()}' > ${shared}/package.json`);
    // The victim's app in their own directory below it.
    const app = join(shared, 'victim-app');
    mkdirSync(app);
    writeFileSync(join(app, 'app.js'), KEEP_ALIVE_JS);
    chownSync(app, victim.uid, victim.gid);
    chownSync(join(app, 'app.js'), victim.uid, victim.gid);
    // Root's job in a root-owned directory below it.
    const job = join(shared, 'root-job');
    mkdirSync(job);
    writeFileSync(join(job, 'job.py'), KEEP_ALIVE_PY);

    const before = counts().untrusted_world_writable_dir ?? 0;
    const node = launch(process.execPath, [join(app, 'app.js')], undefined, app, 'ignore', {
      uid: victim.uid,
      gid: victim.gid,
    });
    const py = launch(PYTHON, [join(job, 'job.py')]);
    try {
      const nodeObs = await observed(node);
      const pyObs = await observed(py);
      expect(nodeObs.owner.uid).toBe(victim.uid);
      expect(nodeObs.scriptPackage).toBeNull();
      expect(pyObs.scriptPackage).toBeNull();
      expect(
        (counts().untrusted_foreign_owner ?? 0) + (counts().untrusted_world_writable_dir ?? 0),
      ).toBeGreaterThan(before);
      expect(alive(node.child.pid as number)).toBe(true);
      expect(alive(py.child.pid as number)).toBe(true);
      const pids = [node.child.pid, py.child.pid];
      expect(p.events.ofType('process.blocked').filter((e) => pids.includes(e.pid as number))).toEqual([]);
    } finally {
      node.child.kill('SIGKILL');
      py.child.kill('SIGKILL');
    }
  });

  it('a package.json in the attacker’s own directory does not speak for a root script below it', async () => {
    const atkDir = join(base, 'atk-dir');
    mkdirSync(atkDir);
    chownSync(atkDir, attacker.uid, attacker.gid);
    asUser(attacker, `printf '%s' '${manifest()}' > ${atkDir}/package.json`);
    const job = join(atkDir, 'root-owned');
    mkdirSync(job);
    writeFileSync(join(job, 'job.py'), KEEP_ALIVE_PY);
    const py = launch(PYTHON, [join(job, 'job.py')]);
    try {
      const obs = await observed(py);
      expect(obs.scriptPackage).toBeNull();
      expect(counts().untrusted_foreign_owner ?? 0).toBeGreaterThan(0);
      expect(alive(py.child.pid as number)).toBe(true);
    } finally {
      py.child.kill('SIGKILL');
    }
  });

  it('a symlinked or root-only package.json tells nothing about a user’s script', async () => {
    // A root-only file whose name the user must not learn through guardd's events.
    const secretDir = join(base, 'root-only');
    mkdirSync(secretDir, { mode: 0o700 });
    const secret = join(secretDir, 'secret.json');
    writeFileSync(secret, manifest(), { mode: 0o600 });
    const linked = join(base, 'linked');
    mkdirSync(linked);
    symlinkSync(secret, join(linked, 'package.json'));
    writeFileSync(join(linked, 'cli.js'), KEEP_ALIVE_JS);
    // A root-owned, root-only package.json (as a hard link would leave it) beside the user's script.
    const unreadable = join(base, 'unreadable');
    mkdirSync(unreadable);
    writeFileSync(join(unreadable, 'package.json'), manifest(), { mode: 0o600 });
    writeFileSync(join(unreadable, 'cli.js'), KEEP_ALIVE_JS);
    for (const d of [linked, unreadable]) chownSync(join(d, 'cli.js'), attacker.uid, attacker.gid);
    const opts = { uid: attacker.uid, gid: attacker.gid };
    const a = launch(process.execPath, [join(linked, 'cli.js')], undefined, base, 'ignore', opts);
    const b = launch(process.execPath, [join(unreadable, 'cli.js')], undefined, base, 'ignore', opts);
    try {
      expect((await observed(a)).scriptPackage).toBeNull();
      expect((await observed(b)).scriptPackage).toBeNull();
      expect(counts().untrusted_not_readable_by_user ?? 0).toBeGreaterThan(0);
    } finally {
      a.child.kill('SIGKILL');
      b.child.kill('SIGKILL');
    }
  });

  it('a name planted for a root job’s relative argument (a directory, a link to a root-owned banned package) kills no `perl -S`', async () => {
    // Root runs PATH-searched scripts with its working directory in a sticky shared directory.
    const shared = join(base, 'shared-cand');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const bin = join(base, 'bin');
    mkdirSync(bin);
    for (const name of ['job.pl', 'dev.pl']) writeFileSync(join(bin, name), 'sleep 60;\n', { mode: 0o755 });
    // A banned package root installed, which the attacker links to.
    const rootPkg = join(base, 'root-pkg');
    mkdirSync(rootPkg);
    writeFileSync(join(rootPkg, 'package.json'), manifest());
    writeFileSync(join(rootPkg, 'cli.js'), KEEP_ALIVE_JS);
    // The attacker: a directory named like one argument, a link named like the other.
    asUser(
      attacker,
      `mkdir ${shared}/job.pl && printf '%s' '${manifest()}' > ${shared}/job.pl/package.json && ln -s ${rootPkg} ${shared}/dev.pl`,
    );
    const before = counts().untrusted_planted_candidate ?? 0;
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
    const jobs = ['job.pl', 'dev.pl'].map((name) => launch('/usr/bin/perl', ['-S', name], env, shared));
    try {
      for (const l of jobs) {
        const obs = await observed(l);
        expect(obs.owner.uid).toBe(0);
        expect(obs.scriptPackage).toBeNull();
        expect(alive(l.child.pid as number)).toBe(true);
      }
      // A lookup that ran out of time on a busy machine is retried (SCRIPT_RETRY_MS): wait for both.
      await waitFor(
        () => (counts().untrusted_planted_candidate ?? 0) >= before + 2,
        'both planted candidates refused',
      );
      const pids = jobs.map((l) => l.child.pid);
      expect(p.events.ofType('process.blocked').filter((e) => pids.includes(e.pid as number))).toEqual([]);
    } finally {
      for (const l of jobs) l.child.kill('SIGKILL');
    }
  });

  it('a link into another user’s private directory tells nothing of the package there (root can follow it, the user cannot)', async () => {
    // The victim's private project: ordinary 0644 files under a 0700 home.
    const homeV = join(base, 'home-victim');
    const priv = join(homeV, 'private');
    mkdirSync(priv, { recursive: true });
    writeFileSync(join(priv, 'package.json'), manifest());
    writeFileSync(join(priv, 'index.js'), KEEP_ALIVE_JS);
    for (const f of [homeV, priv, join(priv, 'package.json'), join(priv, 'index.js')])
      chownSync(f, victim.uid, victim.gid);
    chmodSync(homeV, 0o700);
    // The attacker links to it and keeps node alive in a preload (node cannot open the link itself).
    const homeA = join(base, 'home-peek');
    mkdirSync(homeA);
    chownSync(homeA, attacker.uid, attacker.gid);
    asUser(
      attacker,
      `ln -s ${join(priv, 'index.js')} ${homeA}/x.js && printf '%s' 'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000);' > ${homeA}/hang.js`,
    );
    const before = counts().untrusted_not_searchable_by_user ?? 0;
    const l = launch(
      process.execPath,
      ['-r', join(homeA, 'hang.js'), join(homeA, 'x.js')],
      undefined,
      homeA,
      'ignore',
      {
        uid: attacker.uid,
        gid: attacker.gid,
      },
    );
    try {
      const obs = await observed(l);
      expect(obs.owner.uid).toBe(attacker.uid);
      expect(obs.scriptPackage).toBeNull();
      expect(counts().untrusted_not_searchable_by_user ?? 0).toBeGreaterThan(before);
      expect(alive(l.child.pid as number)).toBe(true);
    } finally {
      l.child.kill('SIGKILL');
    }
  });

  it('the user’s own banned package behind a directory only their group may search, run by a relative path, is still killed', async () => {
    // root:<the user's gid> 0750: searchable through the group from /proc/<pid>/status only.
    const gate = join(base, 'group-only');
    mkdirSync(gate);
    chownSync(gate, 0, attacker.gid);
    chmodSync(gate, 0o750);
    const pkg = join(gate, 'tool');
    mkdirSync(pkg);
    chownSync(pkg, attacker.uid, attacker.gid);
    asUser(
      attacker,
      `printf '%s' '${manifest()}' > ${pkg}/package.json && printf '%s' '${KEEP_ALIVE_JS.trim()}' > ${pkg}/cli.js`,
    );
    const l = launch(process.execPath, ['cli.js'], undefined, pkg, 'ignore', {
      uid: attacker.uid,
      gid: attacker.gid,
    });
    expect(await l.exited).toBe('SIGKILL');
    const pid = l.child.pid as number;
    const ev = await waitFor(
      () => p.events.ofType('process.blocked').find((e) => e.pid === pid),
      'process.blocked',
    );
    expect(ev).toMatchObject({ uid: attacker.uid, rule: { id: 'attr-banned' } });
  });

  it('the user’s own banned package in their own npm tree is still killed, also when made world-writable', async () => {
    const home = join(base, 'home-atk');
    mkdirSync(home);
    chownSync(home, attacker.uid, attacker.gid);
    const pkg = join(home, '.npm-global', 'lib', 'node_modules', BANNED);
    asUser(
      attacker,
      `mkdir -p ${pkg} && printf '%s' '${manifest()}' > ${pkg}/package.json && printf '%s' '${KEEP_ALIVE_JS.trim()}' > ${pkg}/cli.js`,
    );
    // Hiding attempt: the same package in a world-writable directory of the user's own.
    const open = join(home, 'shared-own');
    asUser(
      attacker,
      `mkdir -p ${open} && cp ${pkg}/package.json ${pkg}/cli.js ${open}/ && chmod 0777 ${open}`,
    );
    const opts = { uid: attacker.uid, gid: attacker.gid };
    for (const script of [join(pkg, 'cli.js'), join(open, 'cli.js')]) {
      const l = launch(process.execPath, [script], undefined, base, 'ignore', opts);
      expect(await l.exited).toBe('SIGKILL');
      const pid = l.child.pid as number;
      const ev = await waitFor(
        () => p.events.ofType('process.blocked').find((e) => e.pid === pid),
        `process.blocked for ${script}`,
      );
      expect(ev).toMatchObject({ uid: attacker.uid, rule: { id: 'attr-banned' } });
    }
  });
});
