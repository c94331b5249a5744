/**
 * guard-collector's own .rpm (`npm run package:collector-rpm`), built twice (two versions) with
 * rpmbuild from the same staged tree as the collector .deb: `rpm -qlp` lists the payload, the
 * config is %config(noreplace), the scriptlets set up the secrets (the packaged configure.sh, run
 * here against a scratch root), drive systemd only where it runs, restart only on upgrade and stop
 * only on erase; the unit is the .deb's (hardened, migrating before each start) and systemd-analyze
 * accepts it; the installed collector migrates a store with `--migrate-only` on its bundled Node;
 * the payload installs, upgrades keeping the edited config and the database, and erases in a
 * scratch root (`rpm --root`, scriptlets off: chrooted they would need a whole distribution).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import {
  buildPackage,
  PACKAGE_BUILD_TIMEOUT_MS,
  PKG,
  packagedEnv,
  requireBuiltDist,
  TEST_FILE_RE,
  verifyUnit,
} from './pkg-helpers.js';

let rpm: string;
let rpmV2: string;

function rpmQuery(args: readonly string[], file = rpm): string {
  const res = spawnSync('rpm', [...args, file], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000,
  });
  if (res.status !== 0) throw new Error(`rpm ${args.join(' ')} failed: ${res.stderr}`);
  return res.stdout;
}

/** rpm against a scratch root (no scriptlets, no dependency check: its database is empty). */
function rpmIn(root: string, args: readonly string[]): void {
  const opts = args[0] === '--initdb' ? [] : ['--nodeps', '--noscripts'];
  const res = spawnSync('rpm', [`--root=${root}`, ...opts, ...args], { encoding: 'utf8', timeout: 120_000 });
  expect(res.status, res.stderr).toBe(0);
}

beforeAll(() => {
  requireBuiltDist();
  const out = tempDir('tg-crpm-');
  rpm = buildPackage('collector-rpm', { version: '1.0.0-rc.1', out });
  rpmV2 = buildPackage('collector-rpm', { version: '1.0.0', out });
}, 2 * PACKAGE_BUILD_TIMEOUT_MS);

describe('guard-collector .rpm', () => {
  it('is named and versioned from the build (prerelease dash mapped to ~)', () => {
    expect(rpmQuery(['-qp', '--qf', '%{NAME} %{VERSION} %{ARCH}'])).toMatch(
      /^guard-collector 1\.0\.0~rc\.1 x86_64$/,
    );
  });

  it('rpm -qlp lists its runtime, app (the console bundle too), wrapper, setup script, unit, config, man page and completions; nothing of the agent, no dev deps', () => {
    const files = rpmQuery(['-qlp']).trim().split('\n');
    for (const f of [
      '/opt/guard-collector/node/bin/node',
      '/opt/guard-collector/bin/guard-collector',
      '/opt/guard-collector/lib/configure.sh',
      '/opt/guard-collector/app/bin/guard-collector.js',
      '/opt/guard-collector/app/dist/collector/collector-main.js',
      '/opt/guard-collector/app/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      '/usr/bin/guard-collector',
      '/usr/lib/systemd/system/guard-collector.service',
      '/etc/guard-collector/collector.json',
      '/opt/guard-collector/app/dist/console/app.js',
      '/usr/share/man/man8/guard-collector.8.gz',
      '/usr/share/bash-completion/completions/guard-collector',
      '/usr/share/zsh/vendor-completions/_guard-collector',
      '/usr/share/fish/vendor_completions.d/guard-collector.fish',
    ])
      expect(files, f).toContain(f);
    const nm = '/opt/guard-collector/app/node_modules/';
    for (const dep of Object.keys(PKG.dependencies)) expect(files, dep).toContain(`${nm}${dep}/package.json`);
    for (const dev of Object.keys(PKG.devDependencies))
      expect(files.filter((p) => p.startsWith(`${nm}${dev}/`))).toEqual([]);
    expect(files.filter((p) => TEST_FILE_RE.test(p))).toEqual([]);
    expect(files.filter((p) => p.startsWith('/opt/toolguard') || p.includes('toolguard.service'))).toEqual(
      [],
    );
    // secrets are made on the host by %post, never shipped
    expect(files.filter((p) => /enroll-secret|admin-token/.test(p))).toEqual([]);
  });

  it('marks the config %config(noreplace); everything root-owned, nothing group/world-writable', () => {
    expect(rpmQuery(['-qpc']).trim()).toBe('/etc/guard-collector/collector.json');
    const rows = rpmQuery([
      '-qp',
      '--qf',
      '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\\n]',
    ])
      .trim()
      .split('\n');
    const bad = rows.filter((r) => {
      const [perms, user, group] = r.split(' ') as [string, string, string];
      return (
        user !== 'root' ||
        group !== 'root' ||
        (!perms.startsWith('l') && (perms[5] === 'w' || perms[8] === 'w'))
      );
    });
    expect(bad).toEqual([]);
    expect(rows).toContain('-rwxr-xr-x root root /opt/guard-collector/node/bin/node');
    const flags = rpmQuery(['-qp', '--qf', '[%{FILEFLAGS} %{FILENAMES}\\n]'])
      .split('\n')
      .find((l) => l.endsWith(' /etc/guard-collector/collector.json'));
    expect(Number(flags?.split(' ')[0]) & 16).toBe(16); // RPMFILE_NOREPLACE
    expect(rpmQuery(['-qp', '--requires'])).toMatch(/^glibc >= 2\.\d+$/m);
  });

  it('scriptlets: secrets set up, systemd only where it runs, restart only on upgrade, stop/disable only on erase', () => {
    const post = rpmQuery(['-qp', '--qf', '%{POSTIN}']);
    expect(post).toContain('sh /opt/guard-collector/lib/configure.sh');
    expect(post).toMatch(
      /if \[ -d \/run\/systemd\/system \]; then[\s\S]*systemctl enable guard-collector\.service/,
    );
    expect(post).toMatch(/if \[ "\$1" -ge 2 \]; then[\s\S]*systemctl try-restart guard-collector\.service/);
    expect(post).not.toMatch(/^\s*systemctl (re)?start/m);
    const preun = rpmQuery(['-qp', '--qf', '%{PREUN}']);
    expect(preun).toMatch(
      /if \[ "\$1" -eq 0 \] && \[ -d \/run\/systemd\/system \]; then\n\s+systemctl stop guard-collector\.service/,
    );
  });

  it('installs, upgrades keeping the edited config, secrets and database, and erase keeps the data', () => {
    const root = join(tempDir('tg-crpm-root-'), 'root');
    rpmIn(root, ['--initdb']);
    rpmIn(root, ['-i', rpm]);
    const node = lstatSync(join(root, 'opt/guard-collector/node/bin/node'));
    expect([node.uid, node.gid, (node.mode & 0o7777).toString(8)]).toEqual([0, 0, '755']);

    // what %post runs, against the scratch root: the secrets, once, root:root 0600
    const configure = (): void => {
      const r = spawnSync('sh', [join(root, 'opt/guard-collector/lib/configure.sh'), root], {
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
    };
    configure();
    const secrets = ['etc/guard-collector/enroll-secret', 'etc/guard-collector/admin-token'];
    for (const f of secrets) {
      const st = lstatSync(join(root, f));
      expect([(st.mode & 0o7777).toString(8), st.uid, st.gid], f).toEqual(['600', 0, 0]);
      expect(readFileSync(join(root, f), 'utf8'), f).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    }
    const before = secrets.map((f) => readFileSync(join(root, f), 'utf8'));
    configure();
    expect(secrets.map((f) => readFileSync(join(root, f), 'utf8'))).toEqual(before);

    const config = join(root, 'etc/guard-collector/collector.json');
    const edited = `${JSON.stringify({ listen: '0.0.0.0:443' })}\n`;
    writeFileSync(config, edited);
    mkdirSync(join(root, 'var/lib/private/guard-collector'), { recursive: true });
    const db = join(root, 'var/lib/private/guard-collector/collector.db');
    writeFileSync(db, 'collector v1 database');
    rpmIn(root, ['-U', rpmV2]);
    expect(readFileSync(config, 'utf8')).toBe(edited);
    expect(secrets.map((f) => readFileSync(join(root, f), 'utf8'))).toEqual(before);
    expect(readFileSync(db, 'utf8')).toBe('collector v1 database');
    expect(JSON.parse(readFileSync(join(root, 'opt/guard-collector/app/package.json'), 'utf8')).version).toBe(
      '1.0.0',
    );

    rpmIn(root, ['-e', 'guard-collector']);
    expect(existsSync(join(root, 'opt/guard-collector/node/bin/node'))).toBe(false);
    // rpm has no purge: the database and secrets stay; the edited config is saved aside
    expect(readFileSync(db, 'utf8')).toBe('collector v1 database');
    expect(secrets.every((f) => existsSync(join(root, f)))).toBe(true);
    expect(readFileSync(`${config}.rpmsave`, 'utf8')).toBe(edited);
  });

  it('the unit is hardened like guardd, migrates before each start, and systemd-analyze accepts it', () => {
    const root = join(tempDir('tg-crpm-unit-'), 'root');
    rpmIn(root, ['--initdb']);
    rpmIn(root, ['-i', rpm]);
    const unit = readFileSync(join(root, 'usr/lib/systemd/system/guard-collector.service'), 'utf8');
    for (const line of [
      'DynamicUser=yes',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'PrivateDevices=yes',
      'RestrictSUIDSGID=yes',
      'SystemCallArchitectures=native',
      'LoadCredential=enroll-secret:/etc/guard-collector/enroll-secret',
      'ExecStartPre=/opt/guard-collector/node/bin/node /opt/guard-collector/app/bin/guard-collector.js --config /etc/guard-collector/collector.json --migrate-only',
    ])
      expect(unit.split('\n'), line).toContain(line);
    expect(verifyUnit(root, 'guard-collector.service', 'opt/guard-collector/node/bin/node')).toEqual({
      complaints: [],
      status: 0,
    });
  });

  it('the installed collector migrates a store with --migrate-only on its bundled Node (what ExecStartPre runs)', () => {
    const root = join(tempDir('tg-crpm-run-'), 'root');
    rpmIn(root, ['--initdb']);
    rpmIn(root, ['-i', rpm]);
    const dbFile = join(tempDir('tg-crpm-db-'), 'collector.db');
    const run = () =>
      spawnSync(
        join(root, 'opt/guard-collector/node/bin/node'),
        [
          join(root, 'opt/guard-collector/app/bin/guard-collector.js'),
          '--config',
          join(root, 'etc/guard-collector/collector.json'),
          '--db',
          dbFile,
          '--migrate-only',
        ],
        { encoding: 'utf8', env: packagedEnv(root), timeout: 60_000 },
      );
    const first = run();
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(
      /^guard-collector: sqlite store .*: schema migrated from version 0 to \d+ \(\d+ migrations?\)\n$/,
    );
    const again = run();
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/is current, nothing to migrate\n$/);
  }, 90_000);
});
