/**
 * `guardctl package --format msi|pkg`: the organisation's config baked into the Windows and macOS
 * packages the same way as into the .deb/.rpm — config.json beside an enroll secret only the
 * service may read, the config accepted by guardd's own loader.
 *
 * msi: built by guardctl here (wixl; WinSW and the win32 addon are labelled stand-ins, see
 * msi.test.ts) and read back with msiinfo/msiextract: the package file is its builder's alone
 * (0600), both files sit in %ProgramData%\toolguard, which the msi ACLs to SYSTEM and
 * Administrators before it installs any file (checked in msi.test.ts for every msi).
 *
 * pkg: pkgbuild runs only on a Mac, so guardctl refuses --format pkg elsewhere (exit 2). What
 * can be built here is built: build-pkg.sh --stage lays out the payload and the install scripts as
 * pkgbuild would pack them, from the same baked files guardctl writes; its files and modes are
 * checked, and the real preinstall/postinstall scripts run in a scratch root (chroot with the
 * tools they call and a recording launchctl).
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { bakeConfig, ENROLL_SECRET_FILE } from '../../src/cli/commands/package.js';
import { loadConfig } from '../../src/config/load-config.js';
import { generateKeyPair, parsePublicKey, parseTrustedKeys } from '../../src/policy/keys.js';
import { tempDir } from '../helpers/tmp.js';
import { PACKAGE_BUILD_TIMEOUT_MS, REPO, requireBuiltDist } from './pkg-helpers.js';

const work = tempDir('tgpm-');
const secretFile = join(work, 'enroll.secret');
const pubFile = join(work, 'signer.pub');
const key = generateKeyPair();
const SECRET = 'org-enroll-secret-0123456789abcdef';
const URL_ = 'https://collector.example.com';

function guardctl(args: readonly string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(REPO, 'bin/guardctl.js'), ...args], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: PACKAGE_BUILD_TIMEOUT_MS,
    env: { ...process.env, TOOLGUARD_PKG_VERSION: '2.1.0', ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const baseArgs = (format: string): string[] => [
  '--json',
  'package',
  '--collector-url',
  URL_,
  '--enroll-secret-file',
  secretFile,
  '--trusted-key',
  pubFile,
  '--format',
  format,
];

/** The baked config as guardd would load it (file only: no managed preferences, no environment). */
function loaded(configText: string): Record<string, unknown> {
  const file = join(tempDir('tgpm-cfg-'), 'config.json');
  writeFileSync(file, configText);
  return loadConfig({ file, required: true, env: {}, managedPreferencesFile: null }) as unknown as Record<
    string,
    unknown
  >;
}

beforeAll(() => {
  requireBuiltDist();
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  writeFileSync(pubFile, key.publicKeyPem);
});

describe('an .msi with the config baked in', () => {
  let msi: string;
  let summary: { format: string; package: string; enroll_secret_file: string; trusted_keyids: string[] };
  let extracted: string;
  const msiTable = (name: string): string[][] => {
    const r = spawnSync('msiinfo', ['export', msi, name], { encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`msiinfo export ${name}: ${r.stderr}`);
    return r.stdout
      .replace(/\r/g, '')
      .trim()
      .split('\n')
      .slice(3)
      .map((l) => l.split('\t'));
  };

  beforeAll(() => {
    const standins = tempDir('tgpm-winrt-');
    for (const f of ['toolguard-service.exe', 'better_sqlite3.node'])
      writeFileSync(join(standins, f), `STAND-IN for ${f}: tests only\n`);
    const out = tempDir('tgpm-msi-');
    const r = guardctl([...baseArgs('msi'), '--win-runtime', standins, '--out', out], {
      TOOLGUARD_WIN_STANDINS: '1',
    });
    expect(r.code, r.stderr).toBe(0);
    summary = JSON.parse(r.stdout);
    msi = summary.package;
    extracted = tempDir('tgpm-msi-x-');
    const x = spawnSync('msiextract', ['-C', extracted, msi], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    if (x.status !== 0) throw new Error(`msiextract: ${x.stderr}`);
  }, PACKAGE_BUILD_TIMEOUT_MS);

  it('is built by guardctl and is its builder’s alone (0600): it holds the secret', () => {
    expect(summary.format).toBe('msi');
    expect(summary.enroll_secret_file).toBe('C:\\ProgramData\\toolguard\\enroll-secret');
    expect(summary.trusted_keyids).toEqual([parsePublicKey(key.publicKeyPem).keyid]);
    expect(statSync(msi).mode & 0o777).toBe(0o600);
  });

  it('installs config.json and the enroll secret into %ProgramData%\\toolguard (locked before files)', () => {
    const files = new Map(msiTable('File').map((r) => [r[2], r]));
    const components = new Map(msiTable('Component').map((r) => [r[0], r]));
    for (const name of ['config.json', 'enroll-secret']) {
      const component = files.get(name)?.[1] as string;
      expect(components.get(component)?.[2], name).toBe('DATADIR');
    }
    const find = (name: string): string => {
      const r = spawnSync('find', [extracted, '-name', name, '-type', 'f'], { encoding: 'utf8' });
      const hits = r.stdout.trim().split('\n').filter(Boolean);
      expect(hits, name).toHaveLength(1);
      return hits[0] as string;
    };
    expect(readFileSync(find('enroll-secret'), 'utf8')).toBe(`${SECRET}\n`);
    const config = loaded(readFileSync(find('config.json'), 'utf8'));
    expect(config['collector.url']).toBe(URL_);
    expect(config['collector.enroll_secret_file']).toBe(ENROLL_SECRET_FILE.msi);
    expect(parseTrustedKeys(config['policy.trusted_keys'] as string[]).map((k) => k.keyid)).toEqual(
      summary.trusted_keyids,
    );
    // the data dir is ACL'd before InstallFiles puts the secret there
    const seq = new Map(msiTable('InstallExecuteSequence').map((r) => [r[0], Number(r[2])]));
    expect(seq.get('LockDataDir')).toBeLessThan(seq.get('InstallFiles') as number);
    expect(seq.get('LockDataDir')).toBeGreaterThan(seq.get('CreateFolders') as number);
  });
});

describe('a macOS .pkg with the config baked in', () => {
  const stageDir = join(work, 'pkg-stage');
  let root: string;
  let scripts: string;
  const SUPPORT = 'Library/Application Support/toolguard';

  beforeAll(() => {
    // The same two files guardctl writes for the build (bakeConfig, 0644 and 0600).
    const baked = bakeConfig({
      collectorUrl: URL_,
      enrollSecretFile: secretFile,
      trustedKeyFiles: [pubFile],
      format: 'pkg',
    });
    const bakedDir = tempDir('tgpm-bake-');
    writeFileSync(join(bakedDir, 'config.json'), baked.configJson, { mode: 0o644 });
    writeFileSync(join(bakedDir, 'enroll-secret'), baked.secret, { mode: 0o600 });
    const r = spawnSync('bash', [join(REPO, 'installers/macos/build-pkg.sh'), '--stage', stageDir], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: PACKAGE_BUILD_TIMEOUT_MS,
      env: { ...process.env, TOOLGUARD_PKG_CONFIG_DIR: bakedDir },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(stageDir);
    root = join(stageDir, 'root');
    scripts = join(stageDir, 'scripts');
  }, PACKAGE_BUILD_TIMEOUT_MS);

  it('guardctl refuses --format pkg off a Mac with why (exit 2), before building anything', () => {
    const out = join(work, 'never');
    const r = guardctl([...baseArgs('pkg'), '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('[GUARD_PACKAGE_UNSUPPORTED_FORMAT]');
    expect(r.stderr).toContain('built on a Mac');
    expect(existsSync(out)).toBe(false);
  });

  it('the payload carries config.json (0644) and the enroll secret (0600) where guardd looks', () => {
    const secret = join(root, SUPPORT, 'enroll-secret');
    const cfg = join(root, SUPPORT, 'config.json');
    expect(statSync(secret).mode & 0o777).toBe(0o600);
    expect(statSync(cfg).mode & 0o777).toBe(0o644);
    expect(statSync(join(root, SUPPORT)).mode & 0o777).toBe(0o755);
    expect(readFileSync(secret, 'utf8')).toBe(`${SECRET}\n`);
    const config = loaded(readFileSync(cfg, 'utf8'));
    expect(config['collector.url']).toBe(URL_);
    // the file the config names is the one the payload installs
    expect(config['collector.enroll_secret_file']).toBe(`/${SUPPORT}/enroll-secret`);
    expect(ENROLL_SECRET_FILE.pkg).toBe(`/${SUPPORT}/enroll-secret`);
    // nothing in the payload is writable by group or others (pkgbuild --ownership recommended: root:wheel)
    const writable: string[] = [];
    const walk = (d: string): void => {
      for (const n of readdirSync(d)) {
        const p = join(d, n);
        const st = lstatSync(p);
        if (!st.isSymbolicLink() && st.mode & 0o022) writable.push(p);
        if (st.isDirectory()) walk(p);
      }
    };
    walk(root);
    expect(writable).toEqual([]);
    // the wrappers, the LaunchDaemon and guardctl(1)/guardd(8) with their completions
    for (const p of [
      'Library/toolguard/bin/guardd',
      'Library/toolguard/bin/guardctl',
      'Library/LaunchDaemons/io.toolguard.guardd.plist',
      'usr/local/share/man/man1/guardctl.1',
      'usr/local/share/man/man8/guardd.8',
      'usr/local/etc/bash_completion.d/guardctl',
      'usr/local/share/zsh/site-functions/_guardd',
      'usr/local/share/fish/vendor_completions.d/guardctl.fish',
    ])
      expect(existsSync(join(root, p)), p).toBe(true);
    for (const prog of ['guardctl', 'guardd']) {
      sameAsSource(`usr/local/etc/bash_completion.d/${prog}`, `docs/completions/${prog}.bash`);
      sameAsSource(`usr/local/share/zsh/site-functions/_${prog}`, `docs/completions/_${prog}`);
      sameAsSource(`usr/local/share/fish/vendor_completions.d/${prog}.fish`, `docs/completions/${prog}.fish`);
    }
    sameAsSource('usr/local/share/man/man1/guardctl.1', 'docs/man/guardctl.1');
    sameAsSource('usr/local/share/man/man8/guardd.8', 'docs/man/guardd.8');
  });

  function sameAsSource(installed: string, source: string): void {
    expect(readFileSync(join(root, installed), 'utf8'), installed).toBe(
      readFileSync(join(REPO, source), 'utf8'),
    );
  }

  it('preinstall and postinstall, run in a scratch root, keep the secret root-only and load the daemon', () => {
    const chroot = tempDir('tgpm-chroot-');
    cpSync(root, chroot, { recursive: true, verbatimSymlinks: true });
    // the tools the scripts call, at the macOS paths they name, with the libraries they need
    const tools: Record<string, string> = {
      '/bin/sh': 'sh',
      '/bin/mkdir': 'mkdir',
      '/bin/chmod': 'chmod',
      '/usr/sbin/chown': 'chown',
    };
    const copy = (from: string, to: string): void => {
      mkdirSync(dirname(join(chroot, to)), { recursive: true });
      copyFileSync(from, join(chroot, to));
      chmodSync(join(chroot, to), 0o755);
    };
    for (const [to, name] of Object.entries(tools)) {
      const from = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
      copy(from, to);
      for (const lib of spawnSync('ldd', [from], { encoding: 'utf8' }).stdout.matchAll(/(\/\S+\.so[^\s]*)/g))
        if (!existsSync(join(chroot, lib[1] as string))) copy(lib[1] as string, lib[1] as string);
    }
    // macOS has group wheel (gid 0); launchctl records what it is asked; the scripts send output to /dev/null
    mkdirSync(join(chroot, 'etc'), { recursive: true });
    mkdirSync(join(chroot, 'dev'), { recursive: true });
    expect(spawnSync('mknod', ['-m', '0666', join(chroot, 'dev/null'), 'c', '1', '3']).status).toBe(0);
    writeFileSync(join(chroot, 'etc/passwd'), 'root:x:0:0:root:/var/root:/bin/sh\n');
    writeFileSync(join(chroot, 'etc/group'), 'wheel:x:0:root\n');
    writeFileSync(join(chroot, 'bin/launchctl'), '#!/bin/sh\necho "$*" >> /launchctl.log\nexit 0\n', {
      mode: 0o755,
    });
    cpSync(scripts, join(chroot, 'scripts'), { recursive: true });
    for (const s of ['preinstall', 'postinstall']) {
      const r = spawnSync(
        'chroot',
        [chroot, '/bin/sh', `/scripts/${s}`, '/tmp/toolguard.pkg', '/', '/', '/'],
        {
          encoding: 'utf8',
          timeout: 30_000,
          env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
        },
      );
      expect(r.status, `${s}: ${r.stderr}`).toBe(0);
    }
    const secret = statSync(join(chroot, SUPPORT, 'enroll-secret'));
    expect(secret.mode & 0o777).toBe(0o600);
    expect([secret.uid, secret.gid]).toEqual([0, 0]);
    expect(statSync(join(chroot, SUPPORT)).mode & 0o777).toBe(0o755);
    expect(statSync(join(chroot, 'Library/Logs/toolguard')).mode & 0o777).toBe(0o750);
    expect(readFileSync(join(chroot, SUPPORT, 'config.json'), 'utf8')).toBe(
      readFileSync(join(root, SUPPORT, 'config.json'), 'utf8'),
    );
    expect(readFileSync(join(chroot, 'launchctl.log'), 'utf8').trim().split('\n')).toEqual([
      'print system/io.toolguard.guardd',
      'bootout system/io.toolguard.guardd',
      'bootout system/io.toolguard.guardd',
      'bootstrap system /Library/LaunchDaemons/io.toolguard.guardd.plist',
      'enable system/io.toolguard.guardd',
      'kickstart -k system/io.toolguard.guardd',
    ]);
  });
});
