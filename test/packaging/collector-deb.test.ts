/**
 * guard-collector's own .deb (`npm run package:collector-deb`): built twice (two versions) with
 * installers/build-package.sh, installed into scratch roots with `dpkg --root` (maintainer scripts
 * chrootless, a fake systemctl recording its calls). Checks the files and their modes, the secrets
 * postinst generates once, the unit as systemd-analyze sees it, that the packaged collector runs on
 * its bundled Node from the installed files and enrolls an agent with the installed secret, and
 * that an upgrade keeps config, secrets and database and restarts the running service onto the new
 * code (where the store migrates). Needs root (dpkg --root chowns to root), like the agent's tests.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { WaitAborted, waitFor } from '../helpers/wait.js';
import {
  buildPackage,
  debContents,
  dpkgIn,
  makeScratchRoot,
  manAndCompletionProblems,
  PACKAGE_BUILD_TIMEOUT_MS,
  PKG,
  packagedEnv,
  RUNTIME,
  requireBuiltDist,
  systemctlCalls,
  TEST_FILE_RE,
  verifyUnit,
} from './pkg-helpers.js';

const V1 = '1.0.0';
const V2 = '1.1.0';
let debV1: string;
let debV2: string;
let root: string;

beforeAll(() => {
  if (process.getuid?.() !== 0)
    throw new Error('the .deb install tests need root (dpkg --root chowns to root)');
  requireBuiltDist();
  const out = tempDir('tg-cdeb-');
  debV1 = buildPackage('collector-deb', { version: V1, out });
  debV2 = buildPackage('collector-deb', { version: V2, out });
  root = join(out, 'root');
  makeScratchRoot(root);
  const r = dpkgIn(root, ['-i', debV1]);
  if (r.status !== 0) throw new Error(`dpkg -i failed: ${r.out}`);
}, PACKAGE_BUILD_TIMEOUT_MS + 120_000);

const modeOf = (p: string): [string, number, number] => {
  const st = lstatSync(join(root, p));
  return [(st.mode & 0o7777).toString(8), st.uid, st.gid];
};

describe('guard-collector .deb, fresh install', () => {
  it('installs its own runtime, app, wrapper, unit and config, root-owned, beside the agent', () => {
    expect(modeOf('opt/guard-collector/node/bin/node')).toEqual(['755', 0, 0]);
    expect(modeOf('opt/guard-collector/bin/guard-collector')).toEqual(['755', 0, 0]);
    expect(modeOf('opt/guard-collector/app/bin/guard-collector.js')).toEqual(['755', 0, 0]);
    expect(modeOf('opt/guard-collector/app/dist/collector/collector-main.js')).toEqual(['644', 0, 0]);
    // the console's browser bundle (dist/console, built by npm run build): the console is served from it
    expect(modeOf('opt/guard-collector/app/dist/console/app.js')).toEqual(['644', 0, 0]);
    expect(modeOf('usr/lib/systemd/system/guard-collector.service')).toEqual(['644', 0, 0]);
    expect(modeOf('etc/guard-collector')).toEqual(['755', 0, 0]);
    expect(modeOf('etc/guard-collector/collector.json')).toEqual(['644', 0, 0]);
    expect(readlinkSync(join(root, 'usr/bin/guard-collector'))).toBe(
      '/opt/guard-collector/bin/guard-collector',
    );
    expect(readFileSync(join(root, 'opt/guard-collector/bin/guard-collector'), 'utf8')).toContain(
      'exec /opt/guard-collector/node/bin/node /opt/guard-collector/app/bin/guard-collector.js "$@"',
    );
    expect(readFileSync(join(root, 'usr/lib/systemd/system/guard-collector.service'), 'utf8')).toMatch(
      /^ExecStart=\/opt\/guard-collector\/node\/bin\/node \/opt\/guard-collector\/app\/bin\/guard-collector\.js --config \/etc\/guard-collector\/collector\.json$/m,
    );
    // Nothing of the agent: the two packages never own the same path.
    expect(existsSync(join(root, 'opt/toolguard'))).toBe(false);
    expect(existsSync(join(root, 'usr/lib/systemd/system/toolguard.service'))).toBe(false);
  });

  it('generates the enroll secret and admin token once, root:root 0600, for the unit to load', () => {
    for (const f of ['etc/guard-collector/enroll-secret', 'etc/guard-collector/admin-token']) {
      expect(modeOf(f), f).toEqual(['600', 0, 0]);
      expect(readFileSync(join(root, f), 'utf8'), f).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    }
    expect(readFileSync(join(root, 'etc/guard-collector/enroll-secret'), 'utf8')).not.toBe(
      readFileSync(join(root, 'etc/guard-collector/admin-token'), 'utf8'),
    );
    const unit = readFileSync(join(root, 'usr/lib/systemd/system/guard-collector.service'), 'utf8');
    expect(unit).toContain('LoadCredential=enroll-secret:/etc/guard-collector/enroll-secret');
    expect(unit).toContain('LoadCredential=admin-token:/etc/guard-collector/admin-token');
  });

  it('enables the unit but does not start it before the policy and TLS are in place', () => {
    expect(systemctlCalls(root)).toEqual([`--root=${root} enable guard-collector.service`, 'daemon-reload']);
  });

  it('payload: production dependencies only (the collector needs fastify), no tests, root-owned, conffile', () => {
    const entries = debContents(debV1);
    const paths = entries.map((e) => e.path);
    const nm = '/opt/guard-collector/app/node_modules/';
    for (const dep of Object.keys(PKG.dependencies)) expect(paths, dep).toContain(`${nm}${dep}/package.json`);
    for (const dev of Object.keys(PKG.devDependencies))
      expect(paths.filter((p) => p.startsWith(`${nm}${dev}/`))).toEqual([]);
    expect(paths.filter((p) => TEST_FILE_RE.test(p))).toEqual([]);
    expect(entries.filter((e) => e.owner !== 'root/root')).toEqual([]);
    expect(
      entries.filter((e) => !e.mode.startsWith('l') && (e.mode[5] === 'w' || e.mode[8] === 'w')),
    ).toEqual([]);
    // Secrets are made on the host by postinst, never shipped.
    expect(paths.filter((p) => /enroll-secret|admin-token/.test(p))).toEqual([]);
    const ctl = spawnSync('dpkg-deb', ['--ctrl-tarfile', debV1], { encoding: 'buffer' });
    const conffiles = spawnSync('tar', ['-xOf', '-', './conffiles'], { input: ctl.stdout, encoding: 'utf8' });
    expect(conffiles.stdout.trim()).toBe('/etc/guard-collector/collector.json');
    expect(spawnSync('dpkg-deb', ['-f', debV1, 'Package'], { encoding: 'utf8' }).stdout.trim()).toBe(
      'guard-collector',
    );
  });

  it('systemd-analyze verify accepts the installed unit (ExecStart binary present); it migrates before each start', () => {
    const unit = readFileSync(join(root, 'usr/lib/systemd/system/guard-collector.service'), 'utf8');
    expect(unit).toMatch(
      /^ExecStartPre=\/opt\/guard-collector\/node\/bin\/node \/opt\/guard-collector\/app\/bin\/guard-collector\.js --config \/etc\/guard-collector\/collector\.json --migrate-only$/m,
    );
    expect(verifyUnit(root, 'guard-collector.service', 'opt/guard-collector/node/bin/node')).toEqual({
      complaints: [],
      status: 0,
    });
  });

  it('installs guard-collector(8) gzipped and its bash/zsh/fish completions', () => {
    expect(manAndCompletionProblems(root, ['guard-collector'])).toEqual([]);
    const script = `source '${join(root, 'usr/share/bash-completion/completions/guard-collector')}'
COMP_WORDS=(guard-collector --store-u); COMP_CWORD=1; _guard_collector; echo "\${COMPREPLY[*]}"`;
    const bash = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 30_000 });
    expect(bash.stderr).toBe('');
    expect(bash.stdout.trim()).toBe('--store-url');
  });

  it('the installed collector runs on its bundled Node 24 with the installed config and secrets, and enrolls', async () => {
    const node = join(root, 'opt/guard-collector/node/bin/node');
    expect(spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim()).toBe(
      `v${RUNTIME.platforms['linux-x64'].version}`,
    );
    // The installed config as it is; only what systemd would provide (credentials, state dir) and a
    // loopback port are given here.
    const etc = join(root, 'etc/guard-collector');
    const proc = spawn(
      node,
      [
        join(root, 'opt/guard-collector/app/bin/guard-collector.js'),
        '--config',
        join(etc, 'collector.json'),
        '--listen',
        '127.0.0.1:0',
        '--db',
        join(tempDir('tg-cdb-'), 'collector.db'),
        '--enroll-secret-file',
        join(etc, 'enroll-secret'),
        '--admin-token-file',
        join(etc, 'admin-token'),
      ],
      { env: packagedEnv(root), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    proc.stderr.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    try {
      const url = await waitFor(
        () => {
          if (proc.exitCode !== null)
            throw new WaitAborted(`guard-collector exited ${proc.exitCode}: ${out}`);
          return /guard-collector listening on (\S+)/.exec(out)?.[1];
        },
        'the packaged guard-collector to listen',
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      const secret = readFileSync(join(etc, 'enroll-secret'), 'utf8').trim();
      const enroll = await fetch(`${url}/v1/enroll`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          enroll_secret: secret,
          device: { id: 'tgcdeb-device', hostname: 'tgcdeb.test', os: 'linux', agent_version: V1 },
        }),
      });
      expect(enroll.status).toBe(200);
      expect(((await enroll.json()) as { device_token?: string }).device_token).toBeTruthy();
      const wrong = await fetch(`${url}/v1/enroll`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          enroll_secret: `${secret}x`,
          device: { id: 'tgcdeb-device2', hostname: 'tgcdeb.test', os: 'linux', agent_version: V1 },
        }),
      });
      expect(wrong.status).toBe(403);
    } finally {
      proc.kill('SIGTERM');
      await new Promise((res) => (proc.exitCode !== null ? res(null) : proc.once('exit', res)));
    }
  }, 90_000);
});

describe('guard-collector .deb upgrade and purge', () => {
  it('v1 → v2 keeps config, secrets and database and restarts the running service; purge removes them', () => {
    const r = join(tempDir('tg-cdeb-up-'), 'root');
    makeScratchRoot(r);
    expect(dpkgIn(r, ['-i', debV1]).status).toBe(0);
    const config = join(r, 'etc/guard-collector/collector.json');
    const edited = `${JSON.stringify({ listen: '0.0.0.0:443' })}\n`;
    writeFileSync(config, edited);
    const secret = readFileSync(join(r, 'etc/guard-collector/enroll-secret'), 'utf8');
    mkdirSync(join(r, 'var/lib/private/guard-collector'), { recursive: true });
    const db = join(r, 'var/lib/private/guard-collector/collector.db');
    writeFileSync(db, 'collector v1 database');

    const up = dpkgIn(r, ['-i', debV2]);
    expect(up.status, up.out).toBe(0);
    expect(readFileSync(config, 'utf8')).toBe(edited);
    expect(readFileSync(join(r, 'etc/guard-collector/enroll-secret'), 'utf8')).toBe(secret);
    expect(readFileSync(db, 'utf8')).toBe('collector v1 database');
    expect(JSON.parse(readFileSync(join(r, 'opt/guard-collector/app/package.json'), 'utf8')).version).toBe(
      V2,
    );
    const calls = systemctlCalls(r);
    // Upgrade: restarted onto v2 only if it runs (the new code migrates the DB as it opens it);
    // never stopped or disabled in between.
    expect(calls.filter((c) => c === 'try-restart guard-collector.service')).toHaveLength(1);
    expect(calls.some((c) => c.startsWith('stop') || c.includes('disable'))).toBe(false);

    const rm = dpkgIn(r, ['--remove', 'guard-collector']);
    expect(rm.status, rm.out).toBe(0);
    expect(existsSync(join(r, 'opt/guard-collector/node/bin/node'))).toBe(false);
    expect(readFileSync(db, 'utf8')).toBe('collector v1 database');
    expect(systemctlCalls(r)).toEqual(
      expect.arrayContaining(['stop guard-collector.service', `--root=${r} disable guard-collector.service`]),
    );
    const purge = dpkgIn(r, ['--purge', 'guard-collector']);
    expect(purge.status, purge.out).toBe(0);
    expect(existsSync(join(r, 'etc/guard-collector'))).toBe(false);
    expect(existsSync(join(r, 'var/lib/private/guard-collector'))).toBe(false);
  });
});
