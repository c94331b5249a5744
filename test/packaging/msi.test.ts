/**
 * The Windows .msi, built on Linux with wixl from installers/windows/toolguard.wxs and checked with
 * msiinfo: files, the LocalSystem auto-start service, its control events, registry entries, the
 * ACL/recovery custom action and the data folder. The Windows runtime binaries (node.exe, WinSW,
 * the win32 better-sqlite3 addon) cannot be produced here: this test gives the build placeholder
 * files, so it verifies the installer's structure, not that the service starts on Windows.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { buildPackage, REPO, requireBuiltDist } from './pkg-helpers.js';

let msi: string;

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
  const rt = tempDir('tg-winrt-');
  for (const f of ['node.exe', 'toolguard-service.exe', 'better_sqlite3.node'])
    writeFileSync(join(rt, f), `placeholder ${f} (CI cannot fetch Windows binaries)\n`);
  msi = buildPackage('msi', {
    version: '1.3.0',
    out: tempDir('tg-msi-'),
    env: { TOOLGUARD_WIN_RUNTIME: rt },
  });
});

describe('msi', () => {
  it('refuses to build without the Windows runtime binaries, saying which', () => {
    const empty = tempDir('tg-winrt-empty-');
    mkdirSync(empty, { recursive: true });
    const res = spawnSync('bash', [join(REPO, 'installers/build-package.sh'), 'msi'], {
      cwd: REPO,
      encoding: 'utf8',
      env: { ...process.env, TOOLGUARD_WIN_RUNTIME: empty, TOOLGUARD_PKG_OUT: tempDir('tg-msi-no-') },
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('node.exe');
    expect(res.stderr).toContain('toolguard-service.exe');
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

  it('writes the registry entries and runs the ACL + restart-on-failure step as LocalSystem', () => {
    const reg = table('Registry').map((r) => `${r[1]} ${r[2]!.replace(/\\$/, '')} ${r[3]}=${r[4]}`);
    expect(reg).toEqual(
      expect.arrayContaining([
        '2 SOFTWARE\\toolguard InstallDir=[INSTALLDIR]',
        '2 SOFTWARE\\toolguard Version=1.3.0',
        '2 SOFTWARE\\toolguard ConfigFile=[CommonAppDataFolder]toolguard\\config.json',
        '2 SOFTWARE\\toolguard DataDir=[DATADIR]',
      ]),
    );
    const [ca] = table('CustomAction');
    expect(ca?.[0]).toBe('SecureAndRecover');
    // 18 = run an installed exe (node.exe) · 1024 deferred · 2048 no impersonation (LocalSystem).
    expect(Number(ca?.[1]) & 0x3f).toBe(18);
    expect(Number(ca?.[1]) & 3072).toBe(3072);
    expect(ca?.[2]).toBe('NodeExe');
    expect(ca?.[3]).toContain('win-setup.cjs');
    const seq = new Map(table('InstallExecuteSequence').map((r) => [r[0], r]));
    expect(seq.get('SecureAndRecover')?.[1]).toBe('NOT REMOVE');
    expect(Number(seq.get('SecureAndRecover')?.[2])).toBeGreaterThan(Number(seq.get('InstallServices')?.[2]));
    expect(table('CreateFolder').map((r) => r[0])).toContain('DATADIR');
  });

  it('win-setup ACLs the data dir to SYSTEM/Administrators and sets SCM restart actions', () => {
    const require = createRequire(import.meta.url);
    const { setupCommands } = require(join(REPO, 'service/windows/win-setup.cjs')) as {
      setupCommands(dataDir: string, systemRoot: string): [string, string[]][];
    };
    expect(setupCommands('C:\\ProgramData\\toolguard\\.', 'C:\\Windows')).toEqual([
      [
        'C:\\Windows\\System32\\icacls.exe',
        [
          'C:\\ProgramData\\toolguard',
          '/inheritance:r',
          '/grant:r',
          '*S-1-5-18:(OI)(CI)F',
          '*S-1-5-32-544:(OI)(CI)F',
        ],
      ],
      [
        'C:\\Windows\\System32\\sc.exe',
        ['failure', 'toolguard', 'reset=', '86400', 'actions=', 'restart/5000/restart/5000/restart/60000'],
      ],
    ]);
  });
});
