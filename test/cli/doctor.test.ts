/**
 * `guardctl doctor` against temp dirs: real files with real modes, real Unix sockets (the public one
 * answers `status` with the control protocol), a real HTTP collector on 127.0.0.1 whose Date header
 * the test controls, and a fake service manager (systemctl/launchctl/sc outputs). One run of the
 * built guardctl checks the exit code and --json end to end.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CommandResult,
  type DoctorProbes,
  defaultProbes,
  formatDoctor,
  httpGet,
  runDoctor,
} from '../../src/cli/commands/doctor.js';
import type { Platform } from '../../src/common/platform-paths.js';
import { loadConfig } from '../../src/config/load-config.js';
import { callDaemon } from '../../src/control/control-client.js';
import type { DaemonStatus, PolicyStatus } from '../../src/control/status.js';
import { tempDir } from '../helpers/tmp.js';

const REPO = resolve(import.meta.dirname, '../..');
const NOW = Date.parse('2026-11-24T10:00:00Z');
const uid = process.getuid?.() ?? 0;

function goodStatus(over: Partial<PolicyStatus> = {}, enrolled = true): DaemonStatus {
  return {
    running: true,
    pid: 4242,
    version: '0.1.0',
    started_at: '2026-11-24T09:00:00Z',
    local_mode: false,
    device_id: 'dev-1',
    hostname: 'host-1',
    policy: {
      state: 'ok',
      version: 12,
      issued_at: '2026-11-24T00:00:00Z',
      expires_at: '2026-12-08T00:00:00Z',
      sha256: 'ab'.repeat(32),
      mode: 'enforce',
      rules: 3,
      source: 'collector',
      last_fetch_at: '2026-11-24T09:55:00Z',
      last_error: null,
      ...over,
    },
    sensors: [],
    enforcement: { blocked: 0, quarantined: 0, denied: 0, warned: 0, audited: 0, failed: 0 },
    outbox: { depth: 0, bytes: 0, dropped_total: 0 },
    shipper: {
      collector_url: 'http://127.0.0.1',
      enrolled,
      last_success_at: '2026-11-24T09:59:00Z',
      last_error: enrolled ? null : 'enroll: 401',
      shipped_total: 10,
    },
  };
}

/** A fake service manager: answers per "cmd args…" line; unknown commands "exit 1". */
function fakeRun(answers: Record<string, Partial<CommandResult>>): DoctorProbes['run'] {
  return async (cmd, args) => ({ status: 1, stdout: '', stderr: '', ...answers[[cmd, ...args].join(' ')] });
}
const systemdOk = fakeRun({
  'systemctl is-enabled toolguard.service': { status: 0, stdout: 'enabled\n' },
  'systemctl is-active toolguard.service': { status: 0, stdout: 'active\n' },
});

// --- a healthy installation in a temp dir ---------------------------------------------------------
const base = tempDir('tg-doc-');
const etc = join(base, 'etc');
const state = join(base, 'state');
const run = join(base, 'run');
const configFile = join(etc, 'config.json');
const secretFile = join(etc, 'enroll-secret');
const sockets = { public: join(run, 'guardd.sock'), admin: join(run, 'admin.sock') };
let collector: HttpServer;
let collectorUrl: string;
/** What the collector's /healthz answers: status and the Date header it sends. */
const collectorReply = { status: 200, date: new Date(NOW).toUTCString() };
const servers: Server[] = [];
const daemonReply: DaemonStatus = goodStatus();

function writeConfig(extra: Record<string, unknown> = {}): void {
  writeFileSync(
    configFile,
    JSON.stringify({
      paths: { state_dir: state, socket_dir: run },
      collector: { url: collectorUrl, enroll_secret_file: secretFile },
      ...extra,
    }),
  );
  chmodSync(configFile, 0o644);
}

beforeAll(async () => {
  mkdirSync(etc, { mode: 0o755 });
  mkdirSync(state, { mode: 0o700 });
  mkdirSync(run, { mode: 0o755 });
  chmodSync(etc, 0o755);
  chmodSync(state, 0o700);
  chmodSync(run, 0o755);
  writeFileSync(secretFile, 'secret', { mode: 0o600 });
  collector = createHttpServer((req, res) => {
    res.sendDate = false;
    res.writeHead(req.url === '/healthz' ? collectorReply.status : 404, { Date: collectorReply.date });
    res.end('ok');
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  const addr = collector.address();
  collectorUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  writeConfig();
  // The daemon's sockets: the public one speaks the control protocol for `status`.
  const pub = createServer((c) => {
    c.setEncoding('utf8');
    c.once('data', (line: string) => {
      const req = JSON.parse(line) as { id: number };
      c.end(`${JSON.stringify({ id: req.id, ok: true, result: daemonReply })}\n`);
    });
  });
  const admin = createServer((c) => c.end());
  await new Promise<void>((r) => pub.listen(sockets.public, r));
  await new Promise<void>((r) => admin.listen(sockets.admin, r));
  chmodSync(sockets.admin, 0o600);
  servers.push(pub, admin);
});

afterAll(async () => {
  await new Promise((r) => collector.close(r));
  for (const s of servers) await new Promise((r) => s.close(r));
});

/** Real filesystem, sockets, HTTP and config loading; fake service manager and clock. */
function probes(over: Partial<DoctorProbes> = {}): DoctorProbes {
  const real = defaultProbes({
    args: [],
    options: {},
    json: false,
    sockets,
    configFile,
    call: (method, params) => callDaemon(sockets.public, method, params ?? {}, 5_000),
  });
  return {
    ...real,
    platform: 'linux',
    ownerUid: uid,
    run: systemdOk,
    loadConfig: (file) => loadConfig({ file, required: false, env: {}, managedPreferencesFile: null }),
    now: () => NOW,
    ...over,
  };
}

const byId = (checks: readonly { id: string; status: string }[]): Record<string, string> =>
  Object.fromEntries(checks.map((c) => [c.id, c.status]));

describe('doctor on a healthy installation', () => {
  it('every check is OK', async () => {
    const report = await runDoctor(probes());
    expect(byId(report.checks)).toEqual({
      service: 'OK',
      files: 'OK',
      sockets: 'OK',
      config: 'OK',
      policy: 'OK',
      collector: 'OK',
      enrollment: 'OK',
      clock: 'OK',
    });
    expect(report.ok).toBe(true);
    const text = formatDoctor(report);
    expect(text).toMatch(/^OK {4}service {5}toolguard\.service enabled and active$/m);
    expect(text).toContain('doctor: 0 failed, 0 warnings, 8 ok');
  });
});

describe('doctor finds what is wrong and says how to fix it', () => {
  it('no config file: the config check does not call it valid', async () => {
    const missing = join(dirname(configFile), 'absent.json');
    const report = await runDoctor(probes({ configFile: missing }));
    const config = report.checks.find((c) => c.id === 'config');
    expect(config).toMatchObject({ status: 'SKIP', detail: `no ${missing}: the defaults are in use` });
  });

  it('loose modes on the state dir, the enroll secret and the config dir fail with chmod fixes', async () => {
    chmodSync(state, 0o755);
    chmodSync(secretFile, 0o644);
    chmodSync(etc, 0o777);
    try {
      const files = (await runDoctor(probes())).checks.find((c) => c.id === 'files');
      expect(files?.status).toBe('FAIL');
      expect(files?.detail).toContain(`state dir ${state} has mode 755, want 700`);
      expect(files?.detail).toContain(`enroll secret ${secretFile} is readable by others`);
      expect(files?.detail).toContain(`config dir ${etc} is writable by group/others`);
      expect(files?.fix).toContain(`sudo chmod 700 '${state}'`);
      expect(files?.fix).toContain(`sudo chmod go-rwx '${secretFile}'`);
    } finally {
      chmodSync(state, 0o700);
      chmodSync(secretFile, 0o600);
      chmodSync(etc, 0o755);
    }
  });

  it('files owned by someone else fail', async () => {
    const files = (await runDoctor(probes({ ownerUid: uid + 1 }))).checks.find((c) => c.id === 'files');
    expect(files?.status).toBe('FAIL');
    expect(files?.detail).toContain(`is owned by uid ${uid}`);
  });

  it('no daemon: sockets and policy fail, enrollment is skipped, exit status not ok', async () => {
    const none = join(base, 'nosock');
    mkdirSync(none, { recursive: true });
    const gone = { public: join(none, 'guardd.sock'), admin: join(none, 'admin.sock') };
    const report = await runDoctor(
      probes({
        sockets: gone,
        daemonStatus: () => callDaemon<DaemonStatus>(gone.public, 'status', {}, 5_000),
      }),
    );
    const c = byId(report.checks);
    expect(c.sockets).toBe('FAIL');
    expect(c.policy).toBe('FAIL');
    expect(c.enrollment).toBe('SKIP');
    expect(report.ok).toBe(false);
    expect(formatDoctor(report)).toContain('fix: sudo systemctl restart toolguard');
  });

  it.each([
    ['none', { state: 'none' as const, version: null }, 'FAIL'],
    ['stale', { state: 'stale' as const, expires_at: '2026-11-20T00:00:00Z' }, 'FAIL'],
    ['expiring within a day', { expires_at: '2026-11-24T20:00:00Z' }, 'WARN'],
    ['not refreshed for hours', { last_fetch_at: '2026-11-23T10:00:00Z' }, 'WARN'],
    [
      'a rejected newer policy',
      {
        last_error: {
          code: 'GUARD_POLICY_SIGNATURE_INVALID',
          message: 'bad sig',
          at: '2026-11-24T09:00:00Z',
        },
      },
      'WARN',
    ],
  ])('policy %s → %s', async (_what, over, want) => {
    const report = await runDoctor(probes({ daemonStatus: async () => goodStatus(over) }));
    expect(byId(report.checks).policy).toBe(want);
  });

  it('not enrolled fails with the shipper error', async () => {
    const report = await runDoctor(probes({ daemonStatus: async () => goodStatus({}, false) }));
    const e = report.checks.find((c) => c.id === 'enrollment');
    expect(e?.status).toBe('FAIL');
    expect(e?.detail).toContain('enroll: 401');
  });

  it.each([
    [0, 'OK'],
    [-30, 'OK'],
    [120, 'WARN'],
    [-3600, 'FAIL'],
  ])("clock %i s off the collector's Date → %s", async (skewS, want) => {
    collectorReply.date = new Date(NOW - skewS * 1000).toUTCString();
    try {
      const clock = (await runDoctor(probes())).checks.find((c) => c.id === 'clock');
      expect(clock?.status).toBe(want);
      if (skewS !== 0)
        expect(clock?.detail).toContain(`${Math.abs(skewS)} s ${skewS > 0 ? 'ahead of' : 'behind'}`);
    } finally {
      collectorReply.date = new Date(NOW).toUTCString();
    }
  });

  it('collector answering 503, or not listening, fails; the clock check is then skipped', async () => {
    collectorReply.status = 503;
    try {
      const c = byId((await runDoctor(probes())).checks);
      expect(c.collector).toBe('FAIL');
      expect(c.clock).toBe('OK'); // a 503 still carries a Date
    } finally {
      collectorReply.status = 200;
    }
    const dead = await runDoctor(
      probes({
        httpGet: (url, opts) => httpGet(url.replace(/:\d+\//, ':1/'), opts),
      }),
    );
    expect(byId(dead.checks).collector).toBe('FAIL');
    expect(byId(dead.checks).clock).toBe('SKIP');
  });

  it('an invalid config fails with its error code and skips the collector checks', async () => {
    const bad = join(etc, 'bad.json');
    writeFileSync(bad, JSON.stringify({ collector: { timeout_ms: 'soon' } }));
    const report = await runDoctor(probes({ configFile: bad }));
    const cfg = report.checks.find((c) => c.id === 'config');
    expect(cfg?.status).toBe('FAIL');
    expect(cfg?.detail).toContain('GUARD_CONFIG_INVALID_VALUE');
    expect(byId(report.checks).collector).toBe('SKIP');
  });

  it('a probe that throws becomes a FAIL of its check, never a crash', async () => {
    const report = await runDoctor(
      probes({
        stat: () => {
          throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
        },
      }),
    );
    expect(report.checks.find((c) => c.id === 'files')?.detail).toContain('check crashed: EACCES');
    expect(report.checks).toHaveLength(8);
  });
});

describe('service check per platform', () => {
  const svc = async (
    platform: Platform,
    answers: Record<string, Partial<CommandResult>>,
  ): Promise<string> => {
    const report = await runDoctor(probes({ platform, run: fakeRun(answers) }));
    const c = report.checks.find((x) => x.id === 'service');
    return `${c?.status} ${c?.detail}`;
  };

  it.each([
    [
      'linux enabled but failed',
      'linux',
      {
        'systemctl is-enabled toolguard.service': { status: 0, stdout: 'enabled\n' },
        'systemctl is-active toolguard.service': { status: 3, stdout: 'failed\n' },
      },
      'FAIL toolguard.service is enabled but failed',
    ],
    [
      'linux not installed',
      'linux',
      {
        'systemctl is-enabled toolguard.service': {
          status: 1,
          stderr: 'Failed to get unit file state for toolguard.service: No such file or directory',
        },
      },
      'FAIL toolguard.service is not installed',
    ],
    [
      'linux without systemd',
      'linux',
      {
        'systemctl is-enabled toolguard.service': {
          status: 1,
          stderr: "System has not been booted with systemd as init system (PID 1). Can't operate.",
        },
      },
      'WARN systemd is not running here',
    ],
    [
      'linux installed in a container without systemd',
      'linux',
      {
        'systemctl is-enabled toolguard.service': { status: 0, stdout: 'enabled\n' },
        'systemctl is-active toolguard.service': {
          status: 1,
          stderr: 'System has not been booted with systemd as init system (PID 1).',
        },
      },
      'WARN toolguard.service is enabled, but systemd is not running here',
    ],
    [
      'linux without systemctl',
      'linux',
      { 'systemctl is-enabled toolguard.service': { status: null, error: 'systemctl: ENOENT' } },
      'WARN cannot ask systemd: systemctl: ENOENT',
    ],
    [
      'macOS running',
      'darwin',
      {
        'launchctl print system/io.toolguard.guardd': {
          status: 0,
          stdout: 'system/io.toolguard.guardd = {\n\tstate = running\n',
        },
      },
      'OK io.toolguard.guardd loaded and running',
    ],
    ['macOS not loaded', 'darwin', {}, 'FAIL io.toolguard.guardd is not loaded in launchd'],
    [
      'Windows running, auto start',
      'win32',
      {
        'sc query toolguard': { status: 0, stdout: 'STATE              : 4  RUNNING' },
        'sc qc toolguard': { status: 0, stdout: 'START_TYPE         : 2   AUTO_START' },
      },
      'OK service "toolguard" automatic and running',
    ],
    [
      'Windows stopped',
      'win32',
      {
        'sc query toolguard': { status: 0, stdout: 'STATE              : 1  STOPPED' },
        'sc qc toolguard': { status: 0, stdout: 'START_TYPE         : 2   AUTO_START' },
      },
      'FAIL service "toolguard" is not running',
    ],
  ])('%s', async (_what, platform, answers, want) => {
    expect(await svc(platform as Platform, answers)).toBe(want);
  });
});

describe('guardctl doctor (built CLI)', () => {
  it('exits 8 with --json listing every check when something fails', () => {
    const dir = tempDir('tg-doc-cli-');
    const cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify({ paths: { state_dir: join(dir, 'state'), socket_dir: dir } }));
    const res = spawnSync(
      process.execPath,
      [join(REPO, 'bin/guardctl.js'), '--json', '--config', cfg, 'doctor'],
      {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, TOOLGUARD_PATHS_SOCKET_DIR: '' },
      },
    );
    expect(res.status, res.stderr).toBe(8);
    const report = JSON.parse(res.stdout) as { ok: boolean; checks: { id: string; status: string }[] };
    expect(report.ok).toBe(false);
    expect(report.checks.map((c) => c.id)).toEqual([
      'service',
      'files',
      'sockets',
      'config',
      'policy',
      'collector',
      'enrollment',
      'clock',
    ]);
    expect(byId(report.checks)).toMatchObject({
      files: 'FAIL',
      sockets: 'FAIL',
      policy: 'FAIL',
      collector: 'WARN',
    });
  });

  it('a config that cannot be read is the config check failing, not a crash', () => {
    const dir = tempDir('tg-doc-cli2-');
    const cfg = join(dir, 'config.json');
    writeFileSync(cfg, '{ not json');
    const res = spawnSync(
      process.execPath,
      [join(REPO, 'bin/guardctl.js'), '--socket-dir', dir, '--config', cfg, 'doctor'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(res.status, res.stderr).toBe(8);
    expect(res.stdout).toMatch(/^FAIL {2}config {6}.*GUARD_CONFIG_UNREADABLE/m);
  });
});
