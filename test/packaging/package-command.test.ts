/**
 * `guardctl package`: the endpoint .deb with the organisation's config baked in. Bad input is
 * refused before anything is built, each with its code and exit 9; a built package, installed into
 * a scratch root with `dpkg --root`, carries config.json and a root-only enroll secret that guardd's
 * own loader accepts; and the installed guardd, started from its installed paths (a private mount
 * namespace shows the scratch root's /etc/toolguard, /opt/toolguard, /var/lib/toolguard and /run)
 * with no config written by hand, enrolls with a real collector on loopback. Needs root (dpkg
 * chowns to root, mount namespaces), like the other .deb tests.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { generateKeyPair, parseTrustedKeys } from '../../src/policy/keys.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { tempDir } from '../helpers/tmp.js';
import { WaitAborted, waitFor } from '../helpers/wait.js';
import {
  debContents,
  dpkgIn,
  makeScratchRoot,
  PACKAGE_BUILD_TIMEOUT_MS,
  packagedEnv,
  REPO,
  requireBuiltDist,
  runPackaged,
} from './pkg-helpers.js';

const VERSION = '2.0.0';

/** The checkout's guardctl as a real process (a build takes minutes: runGuardctl's 30 s is too short). */
function guardctl(
  args: readonly string[],
  env: Record<string, string> = {},
  timeout = 60_000,
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(REPO, 'bin/guardctl.js'), ...args], {
    cwd: REPO,
    encoding: 'utf8',
    timeout,
    env: { ...process.env, TOOLGUARD_PKG_FAST: '1', TOOLGUARD_PKG_VERSION: VERSION, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const work = tempDir('tgpc-');
const secretFile = join(work, 'enroll.secret');
const pubFile = join(work, 'signer.pub');
const key = generateKeyPair();

beforeAll(() => {
  requireBuiltDist();
  writeFileSync(pubFile, key.publicKeyPem);
});

describe('refused before anything is built (exit 9, one code per cause)', () => {
  const base = (over: Record<string, string | string[]>): string[] => {
    const o: Record<string, string | string[]> = {
      '--collector-url': 'https://collector.example.com',
      '--enroll-secret-file': secretFile,
      '--trusted-key': pubFile,
      '--out': join(work, 'never'),
      ...over,
    };
    return [
      '--json',
      'package',
      ...Object.entries(o).flatMap(([k, v]) => (Array.isArray(v) ? v.flatMap((x) => [k, x]) : [k, v])),
    ];
  };
  beforeAll(() => writeFileSync(secretFile, 'org-secret-123\n', { mode: 0o600 }));

  it.each([
    ['not a URL', { '--collector-url': 'collector.example.com' }, 'GUARD_PACKAGE_BAD_COLLECTOR_URL'],
    ['not http(s)', { '--collector-url': 'ftp://collector.example.com' }, 'GUARD_PACKAGE_BAD_COLLECTOR_URL'],
    [
      'credentials in the URL',
      { '--collector-url': 'https://admin:pw@collector.example.com' },
      'GUARD_PACKAGE_BAD_COLLECTOR_URL',
    ],
    [
      'a missing secret file',
      { '--enroll-secret-file': join(work, 'nope') },
      'GUARD_PACKAGE_SECRET_UNREADABLE',
    ],
    [
      'an empty secret file',
      { '--enroll-secret-file': join(work, 'empty') },
      'GUARD_PACKAGE_SECRET_UNREADABLE',
    ],
    ['a missing key file', { '--trusted-key': join(work, 'nope.pub') }, 'GUARD_PACKAGE_BAD_TRUSTED_KEY'],
    [
      'a private key as trusted key',
      { '--trusted-key': join(work, 'signer.key') },
      'GUARD_PACKAGE_BAD_TRUSTED_KEY',
    ],
    ['garbage as trusted key', { '--trusted-key': secretFile }, 'GUARD_PACKAGE_BAD_TRUSTED_KEY'],
    [
      'one bad key among good ones',
      { '--trusted-key': [pubFile, join(work, 'signer.key')] },
      'GUARD_PACKAGE_BAD_TRUSTED_KEY',
    ],
  ] as const)('%s → %s', (_what, over, code) => {
    writeFileSync(join(work, 'empty'), '\n');
    writeFileSync(join(work, 'signer.key'), key.privateKeyPem, { mode: 0o600 });
    const r = guardctl(base(over as Record<string, string | string[]>));
    expect(r.stderr).toContain(`[${code}]`);
    expect((JSON.parse(r.stdout) as { error: { code: string } }).error.code).toBe(code);
    expect(r.code).toBe(9);
    expect(existsSync(join(work, 'never'))).toBe(false);
  });

  it('an unknown format is a usage error (exit 2), not a silent plain package (msi/pkg: package-msi-pkg.test.ts)', () => {
    const bogus = guardctl(base({ '--format': 'zip' }));
    expect(bogus.stderr).toContain('[GUARD_CLI_USAGE]');
    expect(bogus.code).toBe(2);
  });
});

describe('a .deb with the config baked in, installed into a scratch root', () => {
  let collector: TestCollector;
  let deb: string;
  let root: string;
  let guardd: ChildProcess | undefined;
  let guarddOut = '';

  beforeAll(async () => {
    if (process.getuid?.() !== 0)
      throw new Error('the .deb install tests need root (dpkg --root chowns to root)');
    collector = await startTestCollector();
    writeFileSync(secretFile, `${collector.enrollSecret}\n`, { mode: 0o600 });
    const out = join(work, 'pkgs');
    const r = guardctl(
      [
        '--json',
        'package',
        '--collector-url',
        collector.url,
        '--enroll-secret-file',
        secretFile,
        '--trusted-key',
        pubFile,
        '--out',
        out,
      ],
      {},
      PACKAGE_BUILD_TIMEOUT_MS,
    );
    if (r.code !== 0) throw new Error(`guardctl package failed (${r.code}): ${r.stderr}`);
    const data = JSON.parse(r.stdout) as { package: string; format: string; trusted_keyids: string[] };
    expect(data.format).toBe('deb');
    expect(data.trusted_keyids).toEqual([key.keyid]);
    deb = data.package;
    expect(deb.startsWith(out)).toBe(true);
    root = join(work, 'root');
    makeScratchRoot(root);
    const inst = dpkgIn(root, ['-i', deb]);
    if (inst.status !== 0) throw new Error(`dpkg -i failed: ${inst.out}`);
  }, PACKAGE_BUILD_TIMEOUT_MS + 120_000);

  afterAll(async () => {
    if (guardd && guardd.exitCode === null && guardd.signalCode === null) guardd.kill('SIGKILL');
    await collector?.close();
  });

  it('installs config.json (0644) and the enroll secret (0600), both root-owned conffiles', () => {
    const mode = (p: string): [string, number, number] => {
      const st = lstatSync(join(root, p));
      return [(st.mode & 0o7777).toString(8), st.uid, st.gid];
    };
    expect(mode('etc/toolguard/config.json')).toEqual(['644', 0, 0]);
    expect(mode('etc/toolguard/enroll-secret')).toEqual(['600', 0, 0]);
    expect(readFileSync(join(root, 'etc/toolguard/enroll-secret'), 'utf8')).toBe(
      `${collector.enrollSecret}\n`,
    );
    const ctl = spawnSync('dpkg-deb', ['--ctrl-tarfile', deb], { encoding: 'buffer' });
    const conffiles = spawnSync('tar', ['-xOf', '-', './conffiles'], { input: ctl.stdout, encoding: 'utf8' });
    expect(conffiles.stdout.trim().split('\n')).toEqual([
      '/etc/toolguard/config.json',
      '/etc/toolguard/enroll-secret',
    ]);
    // In the payload too (not only fixed by postinst): a package extracted by hand keeps it private.
    const secret = debContents(deb).find((e) => e.path === '/etc/toolguard/enroll-secret');
    expect(secret).toMatchObject({ mode: '-rw-------', owner: 'root/root' });
    // The package file itself: anyone who can read it can extract the secret (reviewer: it was 0644).
    expect((statSync(deb).mode & 0o777).toString(8)).toBe('600');
  });

  it('the installed guardctl refuses to build (no build tree in a package): exit 10 with the fix', () => {
    const r = runPackaged(root, 'guardctl', [
      'package',
      '--collector-url',
      collector.url,
      '--enroll-secret-file',
      join(root, 'etc/toolguard/enroll-secret'),
      '--trusted-key',
      pubFile,
      '--out',
      join(work, 'never2'),
    ]);
    expect(r.stderr).toContain('[GUARD_PACKAGE_BUILD_FAILED]');
    expect(r.stderr).toContain('runs in a toolguard checkout');
    expect(r.status).toBe(10);
    expect(existsSync(join(work, 'never2'))).toBe(false);
  });

  it("guardd's config loader accepts the installed config as it is: collector, secret file, trusted key", () => {
    const config = loadConfig({
      file: join(root, 'etc/toolguard/config.json'),
      required: true,
      env: {},
      managedPreferencesFile: null,
    });
    expect(config['collector.url']).toBe(collector.url);
    expect(config['collector.enroll_secret_file']).toBe('/etc/toolguard/enroll-secret');
    expect(config['collector.enroll_secret']).toBe('');
    expect(parseTrustedKeys(config['policy.trusted_keys']).map((k) => k.keyid)).toEqual([key.keyid]);
    // The secret never sits in the world-readable config.
    expect(readFileSync(join(root, 'etc/toolguard/config.json'), 'utf8')).not.toContain(
      collector.enrollSecret,
    );
  });

  it('the installed guardd starts from its installed paths with no hand-written config and enrolls', async () => {
    // Private mount namespace: the scratch root's /etc/toolguard (an overlay over the host's /etc),
    // /opt/toolguard, /var/lib/toolguard and /run stand where the package put them on a machine.
    const script = [
      'set -e',
      `mount -t overlay overlay -o 'lowerdir=${join(root, 'etc')}:/etc' /etc`,
      'mount -t tmpfs tmpfs /opt',
      'mkdir /opt/toolguard',
      `mount --bind '${join(root, 'opt/toolguard')}' /opt/toolguard`,
      'mount -t tmpfs tmpfs /var/lib',
      'mkdir -m 0700 /var/lib/toolguard',
      `mount --bind '${join(root, 'var/lib/toolguard')}' /var/lib/toolguard`,
      `mount --bind '${join(root, 'run')}' /run`,
      'exec /opt/toolguard/bin/guardd',
    ].join('\n');
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        // libfaketime's variables pass through (packagedEnv), so guardd shares the test's clock.
        ...packagedEnv(root),
        PATH: '/usr/bin:/bin:/usr/sbin:/sbin',
        // Only what keeps this test off other tests' processes and files; the config is the package's.
        TOOLGUARD_SENSORS_INSTALL_ENABLED: 'false',
        TOOLGUARD_ENFORCEMENT_EXEC_DENY: 'off',
        TOOLGUARD_ENFORCEMENT_NOTIFY_DESKTOP: 'false',
      },
    });
    guardd = child;
    child.stdout.on('data', (d) => {
      guarddOut += d;
    });
    child.stderr.on('data', (d) => {
      guarddOut += d;
    });
    type Devices = { devices: { id: string; hostname: string; agent_version: string }[] };
    const devices = await waitFor(
      async () => {
        if (child.exitCode !== null) throw new WaitAborted(`guardd exited ${child.exitCode}: ${guarddOut}`);
        const res = await fetch(`${collector.url}/v1/devices`, {
          headers: { authorization: `Bearer ${collector.adminToken}` },
        });
        if (!res.ok) throw new Error(`GET /v1/devices: ${res.status}`);
        const body = (await res.json()) as Devices;
        return body.devices.length > 0 ? body.devices : undefined;
      },
      'the packaged guardd to enroll with the collector',
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    expect(devices).toHaveLength(1);
    expect(devices[0]?.agent_version).toBe(VERSION);
    // It read the secret from the installed root-only file: nothing about enrollment failed.
    expect(guarddOut).not.toContain('GUARD_SHIP_UNAUTHORIZED');
    expect(guarddOut).not.toContain('GUARD_CONFIG_');
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((res) =>
      child.exitCode !== null ? res(child.exitCode) : child.once('exit', (c) => res(c)),
    );
    expect(code, guarddOut).toBe(0);
  }, 120_000);
});

describe('an .rpm with the config baked in', () => {
  it(
    'carries config.json and the root-only enroll secret, both %config(noreplace)',
    () => {
      writeFileSync(secretFile, 'org-secret-rpm\n', { mode: 0o600 });
      const out = join(work, 'rpms');
      const r = guardctl(
        [
          '--json',
          'package',
          '--format',
          'rpm',
          '--collector-url',
          'https://collector.example.com/',
          '--enroll-secret-file',
          secretFile,
          '--trusted-key',
          pubFile,
          '--out',
          out,
        ],
        {},
        PACKAGE_BUILD_TIMEOUT_MS,
      );
      expect(r.code, r.stderr).toBe(0);
      const rpm = (JSON.parse(r.stdout) as { package: string }).package;
      // holds the secret: readable by its owner only, like the .deb
      expect((statSync(rpm).mode & 0o777).toString(8)).toBe('600');
      const q = (args: readonly string[]): string =>
        spawnSync('rpm', [...args, rpm], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).stdout;
      expect(q(['-qpc']).trim().split('\n')).toEqual([
        '/etc/toolguard/config.json',
        '/etc/toolguard/enroll-secret',
      ]);
      const rows = q([
        '-qp',
        '--qf',
        '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\\n]',
      ]);
      expect(rows).toContain('-rw------- root root /etc/toolguard/enroll-secret');
      expect(rows).toContain('-rw-r--r-- root root /etc/toolguard/config.json');
      const root = join(work, 'rpmroot');
      for (const args of [['--initdb'], ['--nodeps', '--noscripts', '-i', rpm]]) {
        const res = spawnSync('rpm', [`--root=${root}`, ...args], { encoding: 'utf8', timeout: 60_000 });
        expect(res.status, res.stderr).toBe(0);
      }
      expect(readFileSync(join(root, 'etc/toolguard/enroll-secret'), 'utf8')).toBe('org-secret-rpm\n');
      const config = loadConfig({
        file: join(root, 'etc/toolguard/config.json'),
        required: true,
        env: {},
        managedPreferencesFile: null,
      });
      // The trailing slash is dropped: the agent appends /v1/… to it.
      expect(config['collector.url']).toBe('https://collector.example.com');
      expect(config['collector.enroll_secret_file']).toBe('/etc/toolguard/enroll-secret');
    },
    PACKAGE_BUILD_TIMEOUT_MS,
  );
});
