/**
 * Helpers of the packaging tests: build a package with installers/build-package.sh (fast
 * compression, a chosen version, a temp output dir), install .debs into a scratch root with
 * `dpkg --root … --force-script-chrootless` and a fake systemctl that records its calls, run the
 * packaged programs with the bundled runtime, and list the files the programs read at run time.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { tempDir } from '../helpers/tmp.js';

export const REPO = resolve(import.meta.dirname, '../..');

/** The checkout's package.json (dependency lists for the payload checks). */
export const PKG = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** installers/runtime.json: the Node runtime the packages bundle, pinned per platform. */
export const RUNTIME = JSON.parse(readFileSync(join(REPO, 'installers/runtime.json'), 'utf8')) as {
  major: number;
  platforms: Record<'linux-x64' | 'win-x64', { package: string; version: string; integrity: string }>;
};

/** Where installers/node-runtime.sh keeps a fetched runtime (the default cache the builds use). */
export function cachedRuntimeDir(platform: 'linux-x64' | 'win-x64'): string {
  const e = RUNTIME.platforms[platform];
  return join(REPO, 'build/cache', `${e.package}-${e.version}`);
}

/**
 * A package build compiles better-sqlite3 for the bundled Node the first time (~1.5 min on two
 * idle cores, several times that while the rest of the suite runs); later builds hit the cache.
 */
export const PACKAGE_BUILD_TIMEOUT_MS = 900_000;

/** Fails early with the fix when `npm run build` has not run (packages are built from dist/). */
export function requireBuiltDist(): void {
  if (!existsSync(join(REPO, 'dist/cli/guardctl-main.js')))
    throw new Error('dist/ is missing: run `npm run build` before the packaging tests');
}

/** Builds one package; returns its path (the script's last stdout line). */
export function buildPackage(
  format: 'deb' | 'rpm' | 'msi' | 'collector-deb' | 'collector-rpm',
  opts: { version: string; out: string; env?: Record<string, string> },
): string {
  const res = spawnSync('bash', [join(REPO, 'installers/build-package.sh'), format], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: PACKAGE_BUILD_TIMEOUT_MS,
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

/** What the endpoint packages leave out: the collector has its own package (guard-collector). */
export const COLLECTOR_ONLY_DIRS = ['dist/collector'] as const;

/**
 * The packages (dependencies of package.json) the built code under `dirs` imports, by their bare
 * specifiers (static and dynamic imports); `without` skips subdirectories. An independent reading
 * of dist/ to check build-package.sh's split: the agent's payload must hold exactly what its code
 * imports outside dist/collector.
 */
export function importedDependencies(dirs: readonly string[], without: readonly string[] = []): string[] {
  const skip = new Set(without.map((d) => join(REPO, d)));
  const used = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (skip.has(p)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js'))
        for (const m of readFileSync(p, 'utf8').matchAll(
          /(?:\bfrom|\bimport\s*\()\s*['"]((?:@[\w.-]+\/)?[\w.-]+)(?:\/[^'"\s]*)?['"]/g,
        ))
          if (m[1]! in PKG.dependencies) used.add(m[1]!);
    }
  };
  for (const d of dirs) walk(join(REPO, d));
  return [...used].sort();
}

/**
 * The man pages and shell completions of `programs` as the Linux packages install them: installed
 * path → the generated file under docs/ (`npm run docs`) it comes from; man pages are gzipped.
 */
export function manAndCompletions(
  programs: readonly string[] = ['guardctl', 'guardd'],
): readonly { readonly path: string; readonly source: string; readonly gzip: boolean }[] {
  return programs.flatMap((p) => {
    const page = p === 'guardctl' ? `${p}.1` : `${p}.8`;
    return [
      { path: `/usr/share/man/man${page.at(-1)}/${page}.gz`, source: `docs/man/${page}`, gzip: true },
      {
        path: `/usr/share/bash-completion/completions/${p}`,
        source: `docs/completions/${p}.bash`,
        gzip: false,
      },
      { path: `/usr/share/zsh/vendor-completions/_${p}`, source: `docs/completions/_${p}`, gzip: false },
      {
        path: `/usr/share/fish/vendor_completions.d/${p}.fish`,
        source: `docs/completions/${p}.fish`,
        gzip: false,
      },
    ];
  });
}

/**
 * Checks the man page and completions installed under `root`: root-owned 0644, each the generated
 * file byte for byte (the man page once gunzipped); returns the problems found (empty = all good).
 */
export function manAndCompletionProblems(root: string, programs?: readonly string[]): string[] {
  const problems: string[] = [];
  for (const f of manAndCompletions(programs)) {
    const p = join(root, f.path);
    if (!existsSync(p)) {
      problems.push(`${f.path} missing`);
      continue;
    }
    const st = statSync(p);
    if ((st.mode & 0o7777) !== 0o644 || st.uid !== 0 || st.gid !== 0)
      problems.push(`${f.path} mode ${(st.mode & 0o7777).toString(8)} owner ${st.uid}:${st.gid}`);
    const raw = readFileSync(p);
    const text = f.gzip ? gunzipSync(raw) : raw;
    if (!text.equals(readFileSync(join(REPO, f.source)))) problems.push(`${f.path} differs from ${f.source}`);
  }
  return problems;
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

/** The newest GLIBC_x.y symbol version the given ELF files need (objdump -T), e.g. "2.34". */
export function glibcNeeded(files: readonly string[]): string {
  const text = execFileSync('objdump', ['-T', ...files], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const versions = [
    ...new Set([...text.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.\d+)?/g)].map((m) => `${m[1]}.${m[2]}`)),
  ];
  const key = (v: string): number => Number(v.split('.')[0]) * 1000 + Number(v.split('.')[1]);
  versions.sort((a, b) => key(a) - key(b));
  const newest = versions.at(-1);
  if (!newest) throw new Error(`no GLIBC versions in ${files.join(', ')}`);
  return newest;
}

/** Paths that look like tests of a dependency (the same patterns build-package.sh removes). */
export const TEST_FILE_RE =
  /\/node_modules\/.*(\/(test|tests|__tests__)\/|\.(test|spec)\.(m?js|ts)$|\.test-d\.ts$|\/test\.js$|\/test-[^/]*\.js$)/;

/**
 * The environment the packaged programs run with: no PATH (so no node from PATH can be used) and
 * only the variables that must pass through, e.g. libfaketime's when the suite runs under faketime
 * (the policy dates the test writes come from the test's clock; guardd must see the same clock).
 */
export function packagedEnv(home: string): Record<string, string> {
  const env: Record<string, string> = { PATH: '/nonexistent', HOME: home };
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && /^(LD_PRELOAD|FAKETIME(_.*)?|DONT_FAKE_MONOTONIC|TZ|LANG|LC_[A-Z]+)$/.test(k))
      env[k] = v;
  return env;
}

/** The bundled node and a packaged program's entry under an install root (what the wrappers run). */
export function packagedCommand(root: string, prog: 'guardd' | 'guardctl'): [string, string] {
  return [join(root, 'opt/toolguard/node/bin/node'), join(root, `opt/toolguard/app/bin/${prog}.js`)];
}

/** Runs a packaged program with the bundled node, the way the wrappers do (paths under the root). */
export function runPackaged(
  root: string,
  prog: 'guardd' | 'guardctl',
  args: readonly string[],
): { status: number | null; stdout: string; stderr: string } {
  const [node, entry] = packagedCommand(root, prog);
  const res = spawnSync(node, [entry, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: packagedEnv(root),
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** A policy body for the packaged programs: one block rule on a process name, valid two weeks from now. */
export function policyBodyJson(version: number, bannedName: string): string {
  const now = Date.now();
  return `${JSON.stringify(
    {
      schema: 'toolguard.policy/v1',
      version,
      issued_at: new Date(now - 60_000).toISOString(),
      expires_at: new Date(now + 14 * 86_400_000).toISOString(),
      mode: 'enforce',
      rules: [
        {
          id: 'tgpkg-banned',
          name: 'Packaging test banned tool',
          action: 'block',
          message: 'Packaging test: not approved.',
          process: { names: [bannedName] },
        },
      ],
    },
    null,
    2,
  )}\n`;
}

/**
 * What the programs read at run time next to their code, as paths relative to the app dir: every
 * `new URL('<relative path>', import.meta.url)` and every JSON module import in dist/, resolved
 * against the file that names it (the policy schema, local mode's example body, package.json, the
 * collector's parse worker…). A payload that lacks one fails only when that code runs: issue 11's
 * packages lacked policy/policy.schema.json, so every packaged policy command failed.
 */
export function runtimeReads(opts: { without?: readonly string[] } = {}): string[] {
  const found = new Set<string>();
  const skip = new Set((opts.without ?? []).map((d) => join(REPO, d)));
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (skip.has(p)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js')) {
        const text = readFileSync(p, 'utf8');
        const refs = [
          ...text.matchAll(/new URL\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*,\s*import\.meta\.url\s*\)/g),
          ...text.matchAll(/from\s*['"](\.{1,2}\/[^'"]+\.json)['"]\s*with\s*\{\s*type:\s*['"]json['"]/g),
        ];
        for (const m of refs) {
          const rel = relative(REPO, resolve(dirname(p), m[1]!));
          if (rel.startsWith('..') || isAbsolute(rel)) throw new Error(`${p} reads ${m[1]} outside the app`);
          found.add(rel.split('\\').join('/'));
        }
      }
    }
  };
  walk(join(REPO, 'dist'));
  return [...found].sort();
}

/**
 * `systemd-analyze verify` of unit `unit` as installed in `root` (usr/lib/systemd/system), in a
 * verification root holding the host's stock units and the installed `binary` (relative to
 * `root`), so ExecStart/ExecStartPre resolve. Returns its complaints about the unit (none = ok)
 * and its exit status.
 */
export function verifyUnit(
  root: string,
  unit: string,
  binary: string,
): { complaints: string[]; status: number } {
  const vr = tempDir('tg-verify-');
  mkdirSync(join(vr, 'usr/lib/systemd'), { recursive: true });
  spawnSync('cp', ['-a', '/usr/lib/systemd/system', join(vr, 'usr/lib/systemd/system')]);
  mkdirSync(dirname(join(vr, binary)), { recursive: true });
  mkdirSync(join(vr, 'etc/systemd/system'), { recursive: true });
  linkSync(join(root, binary), join(vr, binary));
  writeFileSync(
    join(vr, 'etc/systemd/system', unit),
    readFileSync(join(root, 'usr/lib/systemd/system', unit)),
  );
  const res = spawnSync(
    'systemd-analyze',
    ['verify', '--man=no', `--root=${vr}`, `/etc/systemd/system/${unit}`],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  // verify exits 0 even for ignored bad lines: any line about the unit is a complaint
  return {
    complaints: res.stderr.split('\n').filter((l) => l.includes(unit) || l.includes('/etc/systemd/system/')),
    status: res.status ?? -1,
  };
}
