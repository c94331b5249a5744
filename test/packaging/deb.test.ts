/**
 * The .deb end to end on Linux: built once per version with installers/build-package.sh, installed
 * into scratch roots with `dpkg --root` (maintainer scripts run chrootless with DPKG_ROOT and a fake
 * systemctl), then the packaged programs are run with the bundled Node. Needs root (dpkg chowns
 * the payload to root) — CI runs as root.
 */
import { spawnSync } from 'node:child_process';
import {
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
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import {
  buildPackage,
  debContents,
  dpkgIn,
  makeScratchRoot,
  PKG,
  REPO,
  requireBuiltDist,
  systemctlCalls,
  TEST_FILE_RE,
} from './pkg-helpers.js';

const V1 = '1.0.0';
const V2 = '1.1.0';

let debV1: string;
let debV2: string;
/** A root with v1 freshly installed (shared by the read-only checks). */
let root: string;

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
});

/** Runs a packaged program with the bundled node, the way the wrappers do (paths under the root). */
function runPackaged(
  r: string,
  prog: 'guardd' | 'guardctl',
  args: readonly string[],
): { status: number | null; stdout: string; stderr: string } {
  const res = spawnSync(
    join(r, 'opt/toolguard/node/bin/node'),
    [join(r, `opt/toolguard/app/bin/${prog}.js`), ...args],
    { encoding: 'utf8', timeout: 30_000, env: { PATH: '/nonexistent', HOME: r } },
  );
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

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
    expectMode('usr/lib/systemd/system/guard-collector.service', 0o644, 'file');
    expectMode('etc/toolguard', 0o755, 'dir');
    expectMode('etc/toolguard/config.json', 0o644, 'file');
    expectMode('var/lib/toolguard', 0o700, 'dir');
    expect(readlinkSync(join(root, 'usr/bin/guardctl'))).toBe('/opt/toolguard/bin/guardctl');
    // The wrappers and the unit run the bundled runtime, never a node found on PATH.
    for (const w of ['guardd', 'guardctl', 'guard-collector'])
      expect(readFileSync(join(root, `opt/toolguard/bin/${w}`), 'utf8')).toContain(
        `exec /opt/toolguard/node/bin/node /opt/toolguard/app/bin/${w}.js "$@"`,
      );
    expect(readFileSync(join(root, 'usr/lib/systemd/system/toolguard.service'), 'utf8')).toMatch(
      /^ExecStart=\/opt\/toolguard\/node\/bin\/node \/opt\/toolguard\/app\/bin\/guardd\.js$/m,
    );
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
    for (const top of ['opt/toolguard', 'etc/toolguard', 'var/lib/toolguard', 'usr/lib/systemd/system'])
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
    expect(v.stdout.trim()).toBe(V1);
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
    expect(ctl).toBe(V1);
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

  it('systemd-analyze verify accepts both units as installed (ExecStart binary present)', () => {
    // A verification root: the host's stock units (targets the units refer to) plus the installed
    // payload, so ExecStart's /opt/toolguard/node/bin/node resolves inside it.
    const vr = tempDir('tg-verify-');
    mkdirSync(join(vr, 'usr/lib/systemd'), { recursive: true });
    const cp = spawnSync('cp', ['-a', '/usr/lib/systemd/system', join(vr, 'usr/lib/systemd/system')]);
    expect(cp.status).toBe(0);
    mkdirSync(join(vr, 'opt/toolguard/node/bin'), { recursive: true });
    mkdirSync(join(vr, 'etc/systemd/system'), { recursive: true });
    linkSync(join(root, 'opt/toolguard/node/bin/node'), join(vr, 'opt/toolguard/node/bin/node'));
    for (const unit of ['toolguard.service', 'guard-collector.service']) {
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
    for (const dep of Object.keys(PKG.dependencies)) expect(paths, dep).toContain(`${nm}${dep}/package.json`);
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
    // Nothing for the state dir in the payload: postinst creates it (0700) and only purge removes it.
    expect(paths.filter((p) => p.startsWith('/var/lib/toolguard'))).toEqual([]);
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
    expect(runPackaged(r, 'guardctl', ['--version']).stdout.trim()).toBe(V2);
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
