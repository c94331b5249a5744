/**
 * Helpers of the packaging tests: build a package with installers/build-package.sh (fast
 * compression, a chosen version, a temp output dir) and install .debs into a scratch root with
 * `dpkg --root … --force-script-chrootless` and a fake systemctl that records its calls.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const REPO = resolve(import.meta.dirname, '../..');

/** The checkout's package.json (dependency lists for the payload checks). */
export const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** Fails early with the fix when `npm run build` has not run (packages are built from dist/). */
export function requireBuiltDist(): void {
  if (!existsSync(join(REPO, 'dist/cli/guardctl-main.js')))
    throw new Error('dist/ is missing: run `npm run build` before the packaging tests');
}

/** Builds one package; returns its path (the script's last stdout line). */
export function buildPackage(
  format: 'deb' | 'rpm' | 'msi',
  opts: { version: string; out: string; env?: Record<string, string> },
): string {
  const res = spawnSync('bash', [join(REPO, 'installers/build-package.sh'), format], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: 120_000,
    env: {
      ...process.env,
      TOOLGUARD_PKG_FAST: '1',
      TOOLGUARD_PKG_VERSION: opts.version,
      TOOLGUARD_PKG_OUT: opts.out,
      ...opts.env,
    },
  });
  if (res.status !== 0) throw new Error(`build-package.sh ${format} failed (${res.status}): ${res.stderr}`);
  const path = res.stdout.trim().split('\n').at(-1) ?? '';
  if (!existsSync(path)) throw new Error(`build-package.sh ${format} printed no package path: ${res.stdout}`);
  return path;
}

/** A scratch root with an empty dpkg database, a fake systemctl and (optionally) "systemd running". */
export function makeScratchRoot(root: string, systemdRunning = true): void {
  for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'fakebin', 'var/log'])
    mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'var/lib/dpkg/status'), '');
  writeFileSync(join(root, 'var/lib/dpkg/available'), '');
  if (systemdRunning) mkdirSync(join(root, 'run/systemd/system'), { recursive: true });
  writeFileSync(join(root, 'fakebin/systemctl'), '#!/bin/sh\necho "$*" >> "$FAKE_SYSTEMCTL_LOG"\nexit 0\n');
  chmodSync(join(root, 'fakebin/systemctl'), 0o755);
}

/**
 * Runs dpkg against the scratch root. Dependencies are forced because the scratch root's dpkg
 * database is empty (libc6 & co. are "not installed" there, though the host has them).
 */
export function dpkgIn(root: string, args: readonly string[]): { status: number; out: string } {
  const res = spawnSync(
    'dpkg',
    [
      `--root=${root}`,
      `--log=${join(root, 'var/log/dpkg.log')}`,
      '--force-script-chrootless',
      '--force-depends',
      '--force-confold',
      ...args,
    ],
    {
      encoding: 'utf8',
      timeout: 120_000,
      env: {
        ...process.env,
        PATH: `${join(root, 'fakebin')}:${process.env.PATH}`,
        FAKE_SYSTEMCTL_LOG: join(root, 'systemctl.log'),
      },
    },
  );
  return { status: res.status ?? -1, out: `${res.stdout}${res.stderr}` };
}

/** What the fake systemctl was asked, one call per line. */
export function systemctlCalls(root: string): string[] {
  const f = join(root, 'systemctl.log');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean) : [];
}

/** `dpkg-deb -c` of a package: [mode string, owner/group, path] per entry. */
export function debContents(deb: string): { mode: string; owner: string; path: string; link: string }[] {
  const text = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const m = /^(\S+)\s+(\S+)\s+\d+\s+\S+\s+\S+\s+(.+?)(?: -> (.+))?$/.exec(line);
      if (!m) throw new Error(`unparsed dpkg-deb line: ${line}`);
      return { mode: m[1]!, owner: m[2]!, path: m[3]!.replace(/^\.\//, '/'), link: m[4] ?? '' };
    });
}

/** Paths that look like tests of a dependency (the same patterns build-package.sh removes). */
export const TEST_FILE_RE =
  /\/node_modules\/.*(\/(test|tests|__tests__)\/|\.(test|spec)\.(m?js|ts)$|\.test-d\.ts$|\/test\.js$|\/test-[^/]*\.js$)/;
