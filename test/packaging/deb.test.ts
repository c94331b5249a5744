/**
 * The .deb end to end on Linux: built once per version with installers/build-package.sh, installed
 * into scratch roots with `dpkg --root` (maintainer scripts run chrootless with DPKG_ROOT and a fake
 * systemctl), then the packaged programs are run with the bundled Node 24 only: guardctl keygen →
 * sign → verify a policy, and the packaged guardd, started as root with a temp config, kills a
 * banned process and records the event. Needs root (dpkg chowns the payload to root; guardd kills
 * a root-started process) — CI runs as root.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import {
  buildPackage,
  COLLECTOR_ONLY_DIRS,
  debContents,
  dpkgIn,
  glibcNeeded,
  importedDependencies,
  makeScratchRoot,
  manAndCompletionProblems,
  manAndCompletions,
  PACKAGE_BUILD_TIMEOUT_MS,
  PKG,
  packagedCommand,
  packagedEnv,
  policyBodyJson,
  REPO,
  RUNTIME,
  requireBuiltDist,
  runPackaged,
  runtimeReads,
  systemctlCalls,
  TEST_FILE_RE,
} from './pkg-helpers.js';

const V1 = '1.0.0';
const V2 = '1.1.0';

let debV1: string;
let debV2: string;
/** A root with v1 freshly installed (shared by the read-only checks). */
let root: string;
/** Where the packaged addon's check listens (a short path: Unix socket paths are < 108 bytes). */
const sockDir = tempDir('tgpu-deb-');

/** guardd's own addons: every native/<name>/ with a binding.gyp (all of them have a Linux target). */
function linuxAddons(): string[] {
  return readdirSync(join(REPO, 'native'))
    .filter((n) => existsSync(join(REPO, 'native', n, 'binding.gyp')))
    .sort();
}

beforeAll(() => {
  if (process.getuid?.() !== 0)
    throw new Error('the .deb install tests need root (dpkg --root chowns to root)');
  requireBuiltDist();
  const out = tempDir('tg-deb-');
  debV1 = buildPackage('deb', { version: V1, out });
  debV2 = buildPackage('deb', { version: V2, out });
  root = join(out, 'root');
  makeScratchRoot(root);
  const r = dpkgIn(root, ['-i', debV1]);
  if (r.status !== 0) throw new Error(`dpkg -i failed: ${r.out}`);
}, PACKAGE_BUILD_TIMEOUT_MS + 120_000);

describe('fresh install into a scratch root', () => {
  it('puts the runtime, app, wrappers, unit and config in place with root owners and the right modes', () => {
    const expectMode = (p: string, mode: number, kind: 'file' | 'dir'): void => {
      const st = lstatSync(join(root, p));
      expect(kind === 'dir' ? st.isDirectory() : st.isFile(), p).toBe(true);
      expect((st.mode & 0o7777).toString(8), p).toBe(mode.toString(8));
      expect([st.uid, st.gid], p).toEqual([0, 0]);
    };
    expectMode('opt/toolguard/node/bin/node', 0o755, 'file');
    expectMode('opt/toolguard/bin/guardd', 0o755, 'file');
    expectMode('opt/toolguard/bin/guardctl', 0o755, 'file');
    expectMode('opt/toolguard/app/bin/guardd.js', 0o755, 'file');
    expectMode('opt/toolguard/app/package.json', 0o644, 'file');
    expectMode(
      'opt/toolguard/app/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      0o755,
      'file',
    );
    expectMode('usr/lib/systemd/system/toolguard.service', 0o644, 'file');
    expectMode('etc/toolguard', 0o755, 'dir');
    expectMode('etc/toolguard/config.json', 0o644, 'file');
    expectMode('var/lib/toolguard', 0o700, 'dir');
    expect(readlinkSync(join(root, 'usr/bin/guardctl'))).toBe('/opt/toolguard/bin/guardctl');
    // The wrappers and the unit run the bundled runtime, never a node found on PATH.
    for (const w of ['guardd', 'guardctl'])
      expect(readFileSync(join(root, `opt/toolguard/bin/${w}`), 'utf8')).toContain(
        `exec /opt/toolguard/node/bin/node /opt/toolguard/app/bin/${w}.js "$@"`,
      );
    expect(readFileSync(join(root, 'usr/lib/systemd/system/toolguard.service'), 'utf8')).toMatch(
      /^ExecStart=\/opt\/toolguard\/node\/bin\/node --max-old-space-size=192 \/opt\/toolguard\/app\/bin\/guardd\.js$/m,
    );
  });

  it('installs guardctl(1), guardd(8) gzipped and their bash/zsh/fish completions where man and the shells look', () => {
    expect(manAndCompletionProblems(root)).toEqual([]);
    // The installed page renders, and the installed bash completion completes in a real bash.
    const man = spawnSync('man', ['-l', join(root, 'usr/share/man/man1/guardctl.1.gz')], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, MANPAGER: 'cat', MANWIDTH: '100' },
    });
    expect(man.status, man.stderr).toBe(0);
    expect(man.stdout).toContain('guardctl');
    expect(man.stdout).toContain('package');
    const script = `source '${join(root, 'usr/share/bash-completion/completions/guardctl')}'
COMP_WORDS=(guardctl pol); COMP_CWORD=1; _guardctl; echo "\${COMPREPLY[*]}"`;
    const bash = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 30_000 });
    expect(bash.stderr).toBe('');
    expect(bash.stdout.trim()).toBe('policy');
    const guardd = spawnSync('man', ['-l', join(root, 'usr/share/man/man8/guardd.8.gz')], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, MANPAGER: 'cat', MANWIDTH: '100' },
    });
    expect(guardd.status, guardd.stderr).toBe(0);
    expect(guardd.stdout).toContain('--local');
    const dscript = `source '${join(root, 'usr/share/bash-completion/completions/guardd')}'
COMP_WORDS=(guardd --loc); COMP_CWORD=1; _guardd; echo "\${COMPREPLY[*]}"`;
    const dbash = spawnSync('bash', ['-c', dscript], { encoding: 'utf8', timeout: 30_000 });
    expect(dbash.stderr).toBe('');
    expect(dbash.stdout.trim()).toBe('--local --local-dir --local-policy');
  });

  it('nothing installed is writable by group or others, and everything is root-owned', () => {
    const bad: string[] = [];
    let seen = 0;
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        const st = lstatSync(p);
        seen++;
        if (!st.isSymbolicLink() && (st.mode & 0o022) !== 0)
          bad.push(`${p} ${(st.mode & 0o7777).toString(8)}`);
        if (st.uid !== 0 || st.gid !== 0) bad.push(`${p} owned by ${st.uid}:${st.gid}`);
        if (st.isDirectory()) walk(p);
      }
    };
    for (const top of [
      'opt/toolguard',
      'etc/toolguard',
      'var/lib/toolguard',
      'usr/lib/systemd/system',
      'usr/share/man/man1',
      'usr/share/bash-completion',
      'usr/share/zsh',
      'usr/share/fish',
    ])
      walk(join(root, top));
    expect(seen).toBeGreaterThan(500);
    expect(bad).toEqual([]);
  });

  it('enables the service and starts it where systemd runs', () => {
    const calls = systemctlCalls(root);
    expect(calls).toContain(`--root=${root} enable toolguard.service`);
    expect(calls).toContain('restart toolguard.service');
    // guard-collector is shipped disabled: it belongs on the collector host only.
    expect(calls.join('\n')).not.toContain('guard-collector');
  });

  it('only enables (never starts) when the root is an image being built, not a running system', () => {
    const r = join(tempDir('tg-deb-img-'), 'root');
    makeScratchRoot(r, false);
    expect(dpkgIn(r, ['-i', debV1]).status).toBe(0);
    expect(systemctlCalls(r)).toEqual([`--root=${r} enable toolguard.service`]);
  });

  it('the packaged guardctl runs with the bundled runtime: --version, and status says "not running" (exit 3)', () => {
    const v = runPackaged(root, 'guardctl', ['--version']);
    expect(v.stderr).toBe('');
    expect(v.stdout.trim()).toBe(`guardctl ${V1}`);
    expect(v.status).toBe(0);
    const socketDir = tempDir('tg-sock-');
    const s = runPackaged(root, 'guardctl', [
      '--config',
      join(root, 'etc/toolguard/config.json'),
      '--socket-dir',
      socketDir,
      'status',
    ]);
    expect(s.status).toBe(3);
    expect(s.stderr).toContain('GUARD_CONTROL_DAEMON_NOT_RUNNING');
  });

  it('the installed wrappers work at their real paths (/usr/bin/guardctl, /opt/toolguard/bin/guardd)', () => {
    // A private mount namespace shows the scratch root's /opt/toolguard at /opt/toolguard, so the
    // wrappers' absolute paths resolve exactly as on an installed machine (the host is untouched).
    const script = [
      'set -e',
      'mount -t tmpfs tmpfs /opt',
      'mkdir /opt/toolguard',
      `mount --bind '${join(root, 'opt/toolguard')}' /opt/toolguard`,
      `'${join(root, 'usr/bin/guardctl')}' --version`,
      '/opt/toolguard/bin/guardd --version',
    ].join('\n');
    const res = spawnSync('unshare', ['-m', 'sh', '-c', script], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' }, // no node on PATH is used: the wrappers name theirs
    });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    const [ctl, daemon] = res.stdout.trim().split('\n');
    expect(ctl).toBe(`guardctl ${V1}`);
    expect(daemon).toContain(V1);
  });

  it('the packaged guardd --version behaves exactly as the checkout build does', () => {
    const checkout = spawnSync(process.execPath, [join(REPO, 'bin/guardd.js'), '--version'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    const packaged = runPackaged(root, 'guardd', ['--version']);
    expect(packaged.status).toBe(checkout.status);
    if (checkout.status === 0) {
      // guardd prints its version: the package's, read from the packaged package.json.
      expect(packaged.stdout.trim()).toContain(V1);
      expect(checkout.stdout.trim()).toContain(PKG.version);
    }
  });

  it('the bundled runtime is the pinned Node 24 LTS (installers/runtime.json), with its licence', () => {
    const res = spawnSync(join(root, 'opt/toolguard/node/bin/node'), ['--version'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(res.stdout.trim()).toBe(`v${RUNTIME.platforms['linux-x64'].version}`);
    expect(res.stdout).toMatch(/^v24\./);
    expect(readFileSync(join(root, 'opt/toolguard/node/LICENSE'), 'utf8')).toContain('Node.js is licensed');
  });

  it("better-sqlite3's native addon loads in the bundled runtime (same ABI it was built for)", () => {
    const node = join(root, 'opt/toolguard/node/bin/node');
    const res = spawnSync(
      node,
      [
        '-e',
        `const D = require(${JSON.stringify(join(root, 'opt/toolguard/app/node_modules/better-sqlite3'))});
         const db = new D(':memory:'); process.stdout.write(String(db.prepare('select 41 + 1 as x').get().x));`,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(res.stderr).toBe('');
    expect(res.stdout).toBe('42');
  });

  it("guardd's peer credentials addon loads in the bundled runtime and reads a real socket's peer", () => {
    const node = join(root, 'opt/toolguard/node/bin/node');
    const addon = join(root, 'opt/toolguard/app/native/peercred/build/Release/peercred.node');
    const res = spawnSync(
      node,
      [
        '-e',
        `const a = require(${JSON.stringify(addon)}); const net = require('net');
         const p = require('path').join(${JSON.stringify(sockDir)}, 'p.sock');
         const s = net.createServer((c) => {
           const r = a.peerCredentials(c._handle.fd); c.destroy(); s.close();
           process.stdout.write(JSON.stringify([r.pid === process.pid, r.uid === process.getuid()]));
         }).listen(p, () => net.connect(p).on('error', () => {}));`,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(res.stderr).toBe('');
    expect(res.stdout).toBe('[true,true]');
  });

  it("every one of guardd's own addons (native/<name>/) is in the payload and loads in the bundled runtime", () => {
    const node = join(root, 'opt/toolguard/node/bin/node');
    const names = linuxAddons();
    expect(names).toContain('peercred');
    expect(names).toContain('procevents');
    for (const name of names) {
      const addon = join(root, `opt/toolguard/app/native/${name}/build/Release/${name}.node`);
      const res = spawnSync(node, ['-e', `require(${JSON.stringify(addon)}); process.stdout.write('ok')`], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect({ name, stderr: res.stderr, stdout: res.stdout }).toEqual({ name, stderr: '', stdout: 'ok' });
    }
  });

  it('leaves the collector out: no guard-collector program, unit, code, console bundle or collector-only dependency', () => {
    for (const p of [
      'opt/toolguard/bin/guard-collector',
      'opt/toolguard/app/bin/guard-collector.js',
      'opt/toolguard/app/dist/collector',
      'opt/toolguard/app/dist/console',
      'usr/lib/systemd/system/guard-collector.service',
    ])
      expect(existsSync(join(root, p)), p).toBe(false);
    const agentDeps = importedDependencies(['dist', 'bin'], [...COLLECTOR_ONLY_DIRS]);
    const collectorOnly = Object.keys(PKG.dependencies).filter((d) => !agentDeps.includes(d));
    expect(collectorOnly).toContain('fastify');
    for (const dep of collectorOnly)
      expect(existsSync(join(root, 'opt/toolguard/app/node_modules', dep)), dep).toBe(false);
  });

  it('systemd-analyze verify accepts the unit as installed (ExecStart binary present)', () => {
    // A verification root: the host's stock units (targets the units refer to) plus the installed
    // payload, so ExecStart's /opt/toolguard/node/bin/node resolves inside it.
    const vr = tempDir('tg-verify-');
    mkdirSync(join(vr, 'usr/lib/systemd'), { recursive: true });
    const cp = spawnSync('cp', ['-a', '/usr/lib/systemd/system', join(vr, 'usr/lib/systemd/system')]);
    expect(cp.status).toBe(0);
    mkdirSync(join(vr, 'opt/toolguard/node/bin'), { recursive: true });
    mkdirSync(join(vr, 'etc/systemd/system'), { recursive: true });
    linkSync(join(root, 'opt/toolguard/node/bin/node'), join(vr, 'opt/toolguard/node/bin/node'));
    for (const unit of ['toolguard.service']) {
      writeFileSync(
        join(vr, 'etc/systemd/system', unit),
        readFileSync(join(root, 'usr/lib/systemd/system', unit)),
      );
      const res = spawnSync(
        'systemd-analyze',
        ['verify', '--man=no', `--root=${vr}`, `/etc/systemd/system/${unit}`],
        { encoding: 'utf8', timeout: 60_000 },
      );
      // verify exits 0 even for ignored bad lines; any complaint about our unit is a failure.
      expect(
        res.stderr.split('\n').filter((l) => l.includes(unit) || l.includes('/etc/systemd/system/')),
      ).toEqual([]);
      expect(res.status, res.stderr).toBe(0);
    }
  });
});

describe('payload', () => {
  it('holds production dependencies only, no tests of dependencies, no world-writable paths, root-owned', () => {
    const entries = debContents(debV1);
    const paths = entries.map((e) => e.path);
    const nm = '/opt/toolguard/app/node_modules/';
    for (const dev of Object.keys(PKG.devDependencies))
      expect(
        paths.filter((p) => p.startsWith(`${nm}${dev}/`)),
        dev,
      ).toEqual([]);
    // Exactly the dependencies the agent's code imports (the collector's own are in its package).
    for (const dep of importedDependencies(['dist', 'bin'], [...COLLECTOR_ONLY_DIRS]))
      expect(paths, dep).toContain(`${nm}${dep}/package.json`);
    expect(paths.filter((p) => TEST_FILE_RE.test(p))).toEqual([]);
    expect(paths.filter((p) => p.startsWith('/opt/toolguard/app/test') || p.includes('/app/src/'))).toEqual(
      [],
    );
    expect(
      entries.filter((e) => !e.mode.startsWith('l') && (e.mode[5] === 'w' || e.mode[8] === 'w')),
    ).toEqual([]);
    expect(entries.filter((e) => e.owner !== 'root/root')).toEqual([]);
    expect(paths).toContain('/opt/toolguard/node/bin/node');
    expect(paths).toContain(`${nm}better-sqlite3/build/Release/better_sqlite3.node`);
    expect(paths).toContain('/opt/toolguard/app/native/peercred/build/Release/peercred.node');
    expect(paths.filter((p) => p.startsWith('/opt/toolguard/app/native/') && /\.(c|gyp|o)$/.test(p))).toEqual(
      [],
    );
    for (const f of manAndCompletions()) expect(paths, f.path).toContain(f.path);
    // Nothing for the state dir in the payload: postinst creates it (0700) and only purge removes it.
    expect(paths.filter((p) => p.startsWith('/var/lib/toolguard'))).toEqual([]);
  });

  it('carries every file the programs read at run time (policy schema, example policy, parse worker…)', () => {
    const paths = new Set(debContents(debV1).map((e) => e.path));
    const reads = runtimeReads({ without: COLLECTOR_ONLY_DIRS });
    expect(reads).toContain('policy/policy.schema.json');
    expect(reads.filter((f) => !paths.has(`/opt/toolguard/app/${f}`))).toEqual([]);
  });

  it('depends on the glibc its native files need (the addon compiled here may need more than node)', () => {
    const need = glibcNeeded([
      join(root, 'opt/toolguard/node/bin/node'),
      join(root, 'opt/toolguard/app/node_modules/better-sqlite3/build/Release/better_sqlite3.node'),
      ...linuxAddons().map((n) => join(root, `opt/toolguard/app/native/${n}/build/Release/${n}.node`)),
    ]);
    const depends = spawnSync('dpkg-deb', ['-f', debV1, 'Depends'], { encoding: 'utf8' }).stdout.trim();
    expect(depends).toBe(`libc6 (>= ${need}), libstdc++6 (>= 10), libgcc-s1`);
  });

  it('declares config.json a conffile', () => {
    const res = spawnSync('dpkg-deb', ['-f', debV1, 'Version'], { encoding: 'utf8' });
    expect(res.stdout.trim()).toBe(V1);
    const ctl = spawnSync('dpkg-deb', ['--ctrl-tarfile', debV1], { encoding: 'buffer' });
    expect(ctl.status).toBe(0);
    const listed = spawnSync('tar', ['-xOf', '-', './conffiles'], { input: ctl.stdout, encoding: 'utf8' });
    expect(listed.stdout.trim()).toBe('/etc/toolguard/config.json');
  });
});

describe('config written by MDM before the package', () => {
  it('is kept on first install (conffile, --force-confold as the deploy guides use)', () => {
    const r = join(tempDir('tg-deb-pre-'), 'root');
    makeScratchRoot(r);
    mkdirSync(join(r, 'etc/toolguard'), { recursive: true });
    const mdm = `${JSON.stringify({ collector: { url: 'https://mdm.example' } })}\n`;
    writeFileSync(join(r, 'etc/toolguard/config.json'), mdm);
    const res = dpkgIn(r, ['-i', debV1]);
    expect(res.status, res.out).toBe(0);
    expect(readFileSync(join(r, 'etc/toolguard/config.json'), 'utf8')).toBe(mdm);
  });
});

describe('upgrade, remove, purge', () => {
  it('v1 → v2 keeps state and the admin-edited config; remove keeps them; purge deletes them', () => {
    const r = join(tempDir('tg-deb-up-'), 'root');
    makeScratchRoot(r);
    expect(dpkgIn(r, ['-i', debV1]).status).toBe(0);
    // The daemon's state and an MDM-edited config.
    const db = join(r, 'var/lib/toolguard/guard.db');
    writeFileSync(db, 'state written by guardd v1');
    const quarantine = join(r, 'var/lib/toolguard/quarantine/q1');
    mkdirSync(quarantine, { recursive: true });
    writeFileSync(join(quarantine, 'package.json'), '{"name":"banned"}');
    const configFile = join(r, 'etc/toolguard/config.json');
    const edited = `${JSON.stringify({ collector: { url: 'https://collector.example' } }, null, 2)}\n`;
    writeFileSync(configFile, edited);
    writeFileSync(join(r, 'etc/toolguard/enroll-secret'), 's3cret', { mode: 0o644 });

    const up = dpkgIn(r, ['-i', debV2]);
    expect(up.status, up.out).toBe(0);
    expect(readFileSync(db, 'utf8')).toBe('state written by guardd v1');
    expect(existsSync(join(quarantine, 'package.json'))).toBe(true);
    expect(readFileSync(configFile, 'utf8')).toBe(edited);
    expect((lstatSync(join(r, 'var/lib/toolguard')).mode & 0o777).toString(8)).toBe('700');
    // postinst tightens a secret MDM dropped with a loose mode.
    expect((lstatSync(join(r, 'etc/toolguard/enroll-secret')).mode & 0o777).toString(8)).toBe('600');
    expect(runPackaged(r, 'guardctl', ['--version']).stdout.trim()).toBe(`guardctl ${V2}`);
    // dpkg-query's own ${field} format, not a JS template.
    const format = ['-f=$', '{Version} $', '{Status}'].join('');
    const status = spawnSync('dpkg-query', [`--root=${r}`, '-W', format, 'toolguard'], {
      encoding: 'utf8',
    });
    expect(status.stdout).toBe(`${V2} install ok installed`);
    // The upgrade restarts the service onto v2 and never stops/disables it in between.
    const calls = systemctlCalls(r);
    expect(calls.filter((c) => c === 'restart toolguard.service')).toHaveLength(2);
    expect(calls.some((c) => c.startsWith('stop') || c.includes('disable'))).toBe(false);

    const rm = dpkgIn(r, ['--remove', 'toolguard']);
    expect(rm.status, rm.out).toBe(0);
    expect(existsSync(join(r, 'opt/toolguard/node/bin/node'))).toBe(false);
    expect(existsSync(join(r, 'usr/bin/guardctl'))).toBe(false);
    expect(readFileSync(db, 'utf8')).toBe('state written by guardd v1');
    expect(readFileSync(configFile, 'utf8')).toBe(edited);
    expect(systemctlCalls(r)).toEqual(
      expect.arrayContaining(['stop toolguard.service', `--root=${r} disable toolguard.service`]),
    );

    const purge = dpkgIn(r, ['--purge', 'toolguard']);
    expect(purge.status, purge.out).toBe(0);
    expect(existsSync(join(r, 'var/lib/toolguard'))).toBe(false);
    expect(existsSync(join(r, 'etc/toolguard'))).toBe(false);
    expect(existsSync(join(r, 'opt/toolguard'))).toBe(false);
  });
});

/**
 * The installed package enforces, with nothing but its own files: the bundled Node 24 runs the
 * packaged guardctl and guardd from the scratch root (issue 11: the packages lacked the policy
 * schema, so every packaged policy command failed and guardd rejected every policy). The banned
 * name is unique to this test, so the root guardd it starts cannot touch other tests' processes.
 */
describe('the packaged programs enforce a signed policy (bundled runtime only)', () => {
  const BANNED = 'tgpkg-banned';
  const SLEEP = spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim();
  let work: string;
  let envelope: string;
  let guardd: ChildProcess | undefined;
  let guarddOut = '';

  beforeAll(() => {
    work = tempDir('tgpkg-enf-');
  });
  afterAll(() => {
    if (guardd && guardd.exitCode === null && guardd.signalCode === null) guardd.kill('SIGKILL');
  });

  it('guardctl policy keygen → lint → sign → verify; verify refuses a key it was not signed with', () => {
    const keygen = runPackaged(root, 'guardctl', ['policy', 'keygen', '--out', join(work, 'signer')]);
    expect(keygen.stderr).toBe('');
    expect(keygen.status).toBe(0);
    expect((lstatSync(join(work, 'signer.key')).mode & 0o777).toString(8)).toBe('600');
    const body = join(work, 'policy.json');
    writeFileSync(body, policyBodyJson(7, BANNED));
    const lint = runPackaged(root, 'guardctl', ['policy', 'lint', body]);
    expect(lint.stderr).toBe('');
    expect(lint.status).toBe(0);
    envelope = join(work, 'policy.dsse.json');
    const sign = runPackaged(root, 'guardctl', [
      'policy',
      'sign',
      body,
      '--key',
      join(work, 'signer.key'),
      '--out',
      envelope,
    ]);
    expect(sign.stderr).toBe('');
    expect(sign.status).toBe(0);
    expect(JSON.parse(readFileSync(envelope, 'utf8'))).toMatchObject({
      payloadType: 'application/vnd.toolguard.policy.v1+json',
    });
    const verify = runPackaged(root, 'guardctl', [
      'policy',
      'verify',
      envelope,
      '--key',
      join(work, 'signer.pub'),
    ]);
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(0);
    expect(verify.stdout).toMatch(/^OK: policy v7 \(1 rules, mode enforce\)/);
    expect(runPackaged(root, 'guardctl', ['policy', 'keygen', '--out', join(work, 'other')]).status).toBe(0);
    const wrong = runPackaged(root, 'guardctl', [
      'policy',
      'verify',
      envelope,
      '--key',
      join(work, 'other.pub'),
    ]);
    expect(wrong.status).not.toBe(0);
    expect(wrong.stderr).toContain('GUARD_POLICY_UNTRUSTED_KEY');
  });

  it('guardd (as root, temp config) applies it, kills a renamed sleep and records process.blocked', async () => {
    expect(envelope, 'the signing test ran first').toBeDefined();
    const socketDir = join(work, 'run');
    const config = join(work, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        'paths.state_dir': join(work, 'state'),
        'paths.socket_dir': socketDir,
        'paths.bootstrap_policy': envelope,
        'policy.trusted_keys': [readFileSync(join(work, 'signer.pub'), 'utf8')],
        'log.level': 'info',
        'sensors.install.enabled': false,
        'enforcement.notify_desktop': false,
        'enforcement.notify_terminal': false,
        // This proves the packaged post-exec kill; pre-exec deny would refuse the exec instead.
        'enforcement.exec_deny': 'off',
      }),
    );
    const [node, entry] = packagedCommand(root, 'guardd');
    const child = spawn(node, [entry, '--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: packagedEnv(root),
    });
    guardd = child;
    child.stdout.on('data', (d) => {
      guarddOut += d;
    });
    child.stderr.on('data', (d) => {
      guarddOut += d;
    });
    const status = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`guardd exited ${child.exitCode}: ${guarddOut}`);
        const r = runPackaged(root, 'guardctl', ['--socket-dir', socketDir, 'status', '--json']);
        return r.status === 0
          ? (JSON.parse(r.stdout) as { policy: Record<string, unknown>; pid: number })
          : undefined;
      },
      'the packaged guardd to answer status',
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(status.pid).toBe(child.pid);
    expect(status.policy).toMatchObject({ state: 'ok', version: 7, mode: 'enforce', rules: 1 });

    const exe = join(work, BANNED);
    copyFileSync(SLEEP, exe);
    chmodSync(exe, 0o755);
    const banned = spawn(exe, ['60'], { stdio: 'ignore' });
    const exit = await new Promise<NodeJS.Signals | null>((res) =>
      banned.once('exit', (_c, sig) => res(sig)),
    );
    expect(exit).toBe('SIGKILL');

    type Listed = { events: { event: Record<string, unknown> }[] };
    const event = await waitFor(
      () => {
        const r = runPackaged(root, 'guardctl', [
          '--socket-dir',
          socketDir,
          'events',
          '--json',
          '--type',
          'process.blocked',
        ]);
        if (r.status !== 0) throw new Error(r.stderr);
        return (JSON.parse(r.stdout) as Listed).events.map((e) => e.event).find((e) => e.pid === banned.pid);
      },
      'process.blocked in the packaged guardctl events',
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(event).toMatchObject({
      type: 'process.blocked',
      name: BANNED,
      exe,
      rule: { id: 'tgpkg-banned', action: 'block' },
      policy_version: 7,
      mode: 'enforce',
      outcome: { action_taken: 'killed' },
    });

    child.kill('SIGTERM');
    const code = await new Promise<number | null>((res) =>
      child.exitCode !== null ? res(child.exitCode) : child.once('exit', (c) => res(c)),
    );
    expect(code, guarddOut).toBe(0);
    // It ran on the bundled runtime and said why it stopped; nothing rejected the policy.
    expect(guarddOut).toContain('"msg":"policy applied"');
    expect(guarddOut).not.toContain('GUARD_POLICY_');
  });
});
