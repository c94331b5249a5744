/**
 * The .rpm, built once per version with rpmbuild (Debian's rpm package) from the same staged tree as
 * the .deb: `rpm -qlp` lists the payload, the config is %config(noreplace), the scriptlets create the
 * state dir and drive systemd only where it runs, the payload holds production dependencies only,
 * and the payload installs, upgrades and erases in a scratch root (`rpm --root`, scriptlets off:
 * they would run chrooted and need a whole distribution inside the root; they are inspected above).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import {
  buildPackage,
  COLLECTOR_ONLY_DIRS,
  glibcNeeded,
  manAndCompletionProblems,
  manAndCompletions,
  PACKAGE_BUILD_TIMEOUT_MS,
  PKG,
  policyBodyJson,
  RUNTIME,
  requireBuiltDist,
  runPackaged,
  runtimeReads,
  TEST_FILE_RE,
} from './pkg-helpers.js';

let rpm: string;
let rpmV2: string;

function rpmQuery(args: readonly string[]): string {
  const res = spawnSync('rpm', [...args, rpm], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000,
  });
  if (res.status !== 0) throw new Error(`rpm ${args.join(' ')} failed: ${res.stderr}`);
  return res.stdout;
}

beforeAll(() => {
  requireBuiltDist();
  const out = tempDir('tg-rpm-');
  rpm = buildPackage('rpm', { version: '1.2.0-rc.1', out });
  rpmV2 = buildPackage('rpm', { version: '1.2.0', out });
}, PACKAGE_BUILD_TIMEOUT_MS + 120_000);

describe('rpm', () => {
  it('is named and versioned from the build (prerelease dash mapped to ~)', () => {
    expect(rpmQuery(['-qp', '--qf', '%{NAME} %{VERSION} %{ARCH}'])).toMatch(
      /^toolguard 1\.2\.0~rc\.1 x86_64$/,
    );
  });

  it('rpm -qlp lists the runtime, the app, the wrappers, both units and the config', () => {
    const files = rpmQuery(['-qlp']).trim().split('\n');
    for (const f of [
      '/opt/toolguard/node/bin/node',
      '/opt/toolguard/bin/guardd',
      '/opt/toolguard/bin/guardctl',
      '/opt/toolguard/app/bin/guardd.js',
      '/opt/toolguard/app/dist/cli/guardctl-main.js',
      '/opt/toolguard/app/package.json',
      '/opt/toolguard/app/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      '/usr/bin/guardctl',
      '/usr/lib/systemd/system/toolguard.service',
      '/etc/toolguard/config.json',
      ...manAndCompletions().map((m) => m.path),
    ])
      expect(files, f).toContain(f);
    for (const dev of Object.keys(PKG.devDependencies))
      expect(
        files.filter((p) => p.startsWith(`/opt/toolguard/app/node_modules/${dev}/`)),
        dev,
      ).toEqual([]);
    expect(files.filter((p) => TEST_FILE_RE.test(p))).toEqual([]);
    // The collector has its own package.
    expect(files.filter((p) => p.includes('guard-collector') || p.includes('/app/dist/collector/'))).toEqual(
      [],
    );
  });

  it('carries every file the programs read at run time (policy schema, example policy, parse worker…)', () => {
    const files = new Set(rpmQuery(['-qlp']).trim().split('\n'));
    const reads = runtimeReads({ without: COLLECTOR_ONLY_DIRS });
    expect(reads).toContain('policy/policy.schema.json');
    expect(reads.filter((f) => !files.has(`/opt/toolguard/app/${f}`))).toEqual([]);
  });

  it('marks the config %config(noreplace) and everything root-owned, nothing group/world-writable', () => {
    expect(rpmQuery(['-qpc']).trim()).toBe('/etc/toolguard/config.json');
    const rows = rpmQuery([
      '-qp',
      '--qf',
      '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\\n]',
    ])
      .trim()
      .split('\n');
    expect(rows.length).toBeGreaterThan(500);
    const bad = rows.filter((r) => {
      const [perms, user, group] = r.split(' ');
      return (
        user !== 'root' ||
        group !== 'root' ||
        (!perms!.startsWith('l') && (perms![5] === 'w' || perms![8] === 'w'))
      );
    });
    expect(bad).toEqual([]);
    expect(rows).toContain('-rwxr-xr-x root root /opt/toolguard/node/bin/node');
    // noreplace: flag bit 16 (RPMFILE_NOREPLACE) on the config file.
    const flags = rpmQuery(['-qp', '--qf', '[%{FILEFLAGS} %{FILENAMES}\\n]'])
      .split('\n')
      .find((l) => l.endsWith(' /etc/toolguard/config.json'));
    expect(Number(flags?.split(' ')[0]) & 16).toBe(16);
  });

  it('scriptlets: state dir 0700 on install, systemd only where it runs, stop/disable only on erase', () => {
    const scripts = rpmQuery(['-qp', '--scripts']);
    expect(scripts).toContain('chmod 0700 /var/lib/toolguard');
    expect(scripts).toContain('systemctl enable toolguard.service');
    expect(scripts).toMatch(
      /if \[ "\$1" -eq 0 \] && \[ -d \/run\/systemd\/system \]; then\n\s+systemctl stop toolguard\.service/,
    );
    expect(rpmQuery(['-qp', '--requires'])).toMatch(/^glibc >= 2\.\d+$/m);
  });

  it('installs into a scratch root with root owners, upgrades keeping the edited config, erase saves it', () => {
    const root = join(tempDir('tg-rpm-root-'), 'root');
    const rpmIn = (args: readonly string[]): void => {
      const opts = args[0] === '--initdb' ? [] : ['--nodeps', '--noscripts'];
      const res = spawnSync('rpm', [`--root=${root}`, ...opts, ...args], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(res.status, res.stderr).toBe(0);
    };
    rpmIn(['--initdb']);
    rpmIn(['-i', rpm]);
    const node = lstatSync(join(root, 'opt/toolguard/node/bin/node'));
    expect([node.uid, node.gid, (node.mode & 0o7777).toString(8)]).toEqual([0, 0, '755']);
    expect(runPackaged(root, 'guardctl', ['--version']).stdout.trim()).toBe('guardctl 1.2.0-rc.1');
    expect(manAndCompletionProblems(root)).toEqual([]);
    // It requires the glibc its native files need (the addon compiled here may need more than node).
    const need = glibcNeeded([
      join(root, 'opt/toolguard/node/bin/node'),
      join(root, 'opt/toolguard/app/node_modules/better-sqlite3/build/Release/better_sqlite3.node'),
    ]);
    expect(rpmQuery(['-qp', '--requires'])).toMatch(
      new RegExp(`^glibc >= ${need.replace('.', '\\.')}$`, 'm'),
    );
    // The bundled runtime is the pinned Node 24, and the packaged guardctl loads the policy schema.
    const runtime = spawnSync(join(root, 'opt/toolguard/node/bin/node'), ['--version'], { encoding: 'utf8' });
    expect(runtime.stdout.trim()).toBe(`v${RUNTIME.platforms['linux-x64'].version}`);
    const body = join(root, 'tmp-policy.json');
    writeFileSync(body, policyBodyJson(1, 'tgpkg-banned'));
    const lint = runPackaged(root, 'guardctl', ['policy', 'lint', body]);
    expect(lint.stderr).toBe('');
    expect(lint.status).toBe(0);
    const config = join(root, 'etc/toolguard/config.json');
    const edited = '{"collector":{"url":"https://collector.example"}}\n';
    writeFileSync(config, edited);
    rpmIn(['-U', rpmV2]);
    expect(readFileSync(config, 'utf8')).toBe(edited);
    expect(readFileSync(join(root, 'opt/toolguard/app/package.json'), 'utf8')).toContain(
      '"version": "1.2.0"',
    );
    rpmIn(['-e', 'toolguard']);
    expect(existsSync(join(root, 'opt/toolguard/node/bin/node'))).toBe(false);
    expect(readFileSync(`${config}.rpmsave`, 'utf8')).toBe(edited);
  });
});
