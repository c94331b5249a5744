/**
 * `guardctl doctor`: what an admin checks after a rollout, each as OK / WARN / FAIL / SKIP with the
 * fix — service registered and running (systemctl / launchctl / sc), owners and modes of config,
 * state and sockets, sockets present, config valid, policy signature accepted and fresh (from the
 * daemon's status on the public socket), collector reachable (GET /healthz) and this device enrolled,
 * clock skew against the collector's HTTP `Date`. Exit 8 when any check FAILs.
 *
 * Every probe of the machine goes through `DoctorProbes`, so tests run the checks against temp dirs,
 * a real HTTP server on loopback and a fake service manager.
 */
import { execFile } from 'node:child_process';
import { readFileSync, type Stats, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { dirname } from 'node:path';
import { errorMessage, isGuardError } from '../../common/errors.js';
import { currentPlatform, defaultPaths, type Platform } from '../../common/platform-paths.js';
import { loadConfig } from '../../config/load-config.js';
import type { Config } from '../../config/settings.js';
import type { DaemonStatus } from '../../control/status.js';
import type { CommandContext, GuardctlCommand } from '../command.js';
import { EXIT } from '../error-message.js';
import { isLocalModeConfig } from '../local-mode-config.js';

/** A policy that expires sooner than this is reported (WARN) so a broken refresh is caught in time. */
const POLICY_EXPIRY_WARN_MS = 24 * 3600 * 1000;
/** No successful policy fetch for this long (default schedule: every 5 min) means refresh is broken. */
const POLICY_FETCH_STALE_MS = 6 * 3600 * 1000;
/** Clock skew above this is worth a WARN even though the policy check still tolerates it. */
const CLOCK_SKEW_WARN_S = 60;
/** Upper bound of one service-manager command and of the /healthz request. */
const PROBE_TIMEOUT_MS = 5_000;

export type CheckStatus = 'OK' | 'WARN' | 'FAIL' | 'SKIP';

export interface DoctorCheck {
  /** Stable id for --json consumers: service, files, sockets, config, policy, collector, enrollment, clock. */
  readonly id: string;
  readonly status: CheckStatus;
  /** What was found, one line. */
  readonly detail: string;
  /** What to do about it (null when OK). */
  readonly fix: string | null;
}

export interface DoctorReport {
  readonly ok: boolean;
  readonly checks: readonly DoctorCheck[];
}

export interface CommandResult {
  /** Exit status, or null when killed/timed out. */
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Set when the command could not be run at all (e.g. ENOENT: no systemctl here). */
  readonly error?: string;
}

/** Everything doctor asks the machine. Each member resolves (never hangs) within its own bound. */
export interface DoctorProbes {
  readonly platform: Platform;
  readonly configFile: string;
  readonly sockets: { readonly public: string; readonly admin: string };
  /** uid that must own config, state and sockets (0 = root; local mode: the local dir's owner). */
  readonly ownerUid: number;
  /**
   * The config is a local-mode one (`guardd --local`, `npm start`): no system service to check,
   * the collector is embedded in guardd, and fixes say `npm start`, not systemctl.
   */
  readonly localMode?: boolean;
  /** Runs a service-manager command (systemctl, launchctl, sc). */
  run(cmd: string, args: readonly string[]): Promise<CommandResult>;
  /** lstat, or null when the path does not exist. Other errors throw. */
  stat(path: string): Stats | null;
  /** Loads and validates the config (throws GuardError GUARD_CONFIG_*). */
  loadConfig(file: string): Config;
  /** The daemon's `status` over the public socket (throws GUARD_CONTROL_* when not running). */
  daemonStatus(): Promise<DaemonStatus>;
  /** GET `url`; resolves with the status code and the Date header, rejects on network/TLS/timeout. */
  httpGet(
    url: string,
    opts: { caFile: string; timeoutMs: number },
  ): Promise<{ status: number; date: string | null }>;
  /** Current time, ms since the epoch. */
  now(): number;
}

export const doctorCommand: GuardctlCommand = {
  name: 'doctor',
  summary: 'Check the installation: service, file modes, sockets, config, policy, collector, clock',
  examples: ['guardctl doctor', 'guardctl --json doctor | jq \'.checks[] | select(.status != "OK")\''],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const report = await runDoctor(defaultProbes(ctx));
    return {
      data: report,
      text: formatDoctor(report),
      exitCode: report.ok ? EXIT.OK : EXIT.CHECK_FAILED,
    };
  },
};

/** Runs every check in order; never throws (a probe that throws becomes that check's FAIL). */
export async function runDoctor(p: DoctorProbes): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const guard = async (id: string, fn: () => Promise<DoctorCheck> | DoctorCheck): Promise<void> => {
    try {
      checks.push(await fn());
    } catch (err) {
      checks.push({ id, status: 'FAIL', detail: `check crashed: ${errorMessage(err)}`, fix: null });
    }
  };
  await guard('service', () => checkService(p));

  let config: Config | null = null;
  let configError: string | null = null;
  try {
    config = p.loadConfig(p.configFile);
  } catch (err) {
    configError = isGuardError(err) ? `${err.message} [${err.code}]` : errorMessage(err);
  }
  await guard('files', () => checkFiles(p, config));
  await guard('sockets', () => checkSockets(p));
  let configMissing = false;
  try {
    configMissing = p.stat(p.configFile) === null;
  } catch {
    // the files check reports what stat said
  }
  checks.push(
    config && configMissing
      ? // nothing to validate: the files check says what a missing config means
        { id: 'config', status: 'SKIP', detail: `no ${p.configFile}: the defaults are in use`, fix: null }
      : config
        ? { id: 'config', status: 'OK', detail: `${p.configFile} is valid`, fix: null }
        : {
            id: 'config',
            status: 'FAIL',
            detail: configError ?? 'invalid',
            fix: `Fix ${p.configFile} (keys and types: docs/config.md); guardd refuses to start with it.`,
          },
  );

  let status: DaemonStatus | null = null;
  let statusError: string | null = null;
  try {
    status = await p.daemonStatus();
  } catch (err) {
    statusError = errorMessage(err);
  }
  await guard('policy', () => checkPolicy(p, status, statusError));
  let collectorDate: string | null = null;
  await guard('collector', async () => {
    const r = await checkCollector(p, config);
    collectorDate = r.date;
    return r.check;
  });
  await guard('enrollment', () => checkEnrollment(config, status, statusError));
  await guard('clock', () => checkClock(p, config, collectorDate));
  return { ok: !checks.some((c) => c.status === 'FAIL'), checks };
}

/** Text for people: one line per check, its fix indented under it, then a summary. */
export function formatDoctor(report: DoctorReport): string {
  const lines: string[] = [];
  for (const c of report.checks) {
    lines.push(`${c.status.padEnd(5)} ${c.id.padEnd(11)} ${c.detail}`);
    if (c.fix && c.status !== 'OK') lines.push(`${' '.repeat(18)}fix: ${c.fix}`);
  }
  const count = (s: CheckStatus): number => report.checks.filter((c) => c.status === s).length;
  lines.push(
    `doctor: ${count('FAIL')} failed, ${count('WARN')} warnings, ${count('OK')} ok${count('SKIP') ? `, ${count('SKIP')} skipped` : ''}`,
  );
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function checkService(p: DoctorProbes): Promise<DoctorCheck> {
  const id = 'service';
  if (p.localMode)
    return {
      id,
      status: 'SKIP',
      detail: 'local mode (`npm start`): guardd runs in the foreground, not as a system service',
      fix: null,
    };
  if (p.platform === 'linux') {
    const enabled = await p.run('systemctl', ['is-enabled', 'toolguard.service']);
    if (enabled.error)
      return {
        id,
        status: 'WARN',
        detail: `cannot ask systemd: ${enabled.error}`,
        fix: 'Run doctor on the host, not in a container.',
      };
    const state = enabled.stdout.trim();
    if (enabled.status !== 0 && /not been booted with systemd|Failed to connect to bus/i.test(enabled.stderr))
      return {
        id,
        status: 'WARN',
        detail: 'systemd is not running here',
        fix: 'Start guardd by other means, or run doctor on a systemd host.',
      };
    if (state === 'not-found' || /No such file|not-found|does not exist/i.test(enabled.stderr))
      return {
        id,
        status: 'FAIL',
        detail: 'toolguard.service is not installed',
        fix: 'Install the toolguard package (docs/install.md).',
      };
    const active = await p.run('systemctl', ['is-active', 'toolguard.service']);
    const activeState = active.stdout.trim() || 'unknown';
    // is-enabled reads unit files and works without systemd as init; is-active needs it.
    if (active.status !== 0 && /not been booted with systemd|Failed to connect to bus/i.test(active.stderr))
      return {
        id,
        status: 'WARN',
        detail: `toolguard.service is ${state}, but systemd is not running here`,
        fix: 'Start guardd by other means, or run doctor on a systemd host.',
      };
    if (state !== 'enabled')
      return {
        id,
        status: 'FAIL',
        detail: `toolguard.service is ${state || 'not enabled'} (${activeState})`,
        fix: 'sudo systemctl enable --now toolguard',
      };
    if (activeState !== 'active')
      return {
        id,
        status: 'FAIL',
        detail: `toolguard.service is enabled but ${activeState}`,
        fix: 'sudo systemctl restart toolguard; journalctl -u toolguard -n 50',
      };
    return { id, status: 'OK', detail: 'toolguard.service enabled and active', fix: null };
  }
  if (p.platform === 'darwin') {
    const r = await p.run('launchctl', ['print', 'system/io.toolguard.guardd']);
    if (r.error || r.status !== 0)
      return {
        id,
        status: 'FAIL',
        detail: 'io.toolguard.guardd is not loaded in launchd',
        fix: 'sudo launchctl bootstrap system /Library/LaunchDaemons/io.toolguard.guardd.plist',
      };
    if (!/state = running/.test(r.stdout))
      return {
        id,
        status: 'FAIL',
        detail: 'io.toolguard.guardd is loaded but not running',
        fix: 'sudo launchctl kickstart -k system/io.toolguard.guardd; see /Library/Logs/toolguard/guardd.log',
      };
    return { id, status: 'OK', detail: 'io.toolguard.guardd loaded and running', fix: null };
  }
  const q = await p.run('sc', ['query', 'toolguard']);
  if (q.error || q.status !== 0)
    return {
      id,
      status: 'FAIL',
      detail: 'service "toolguard" is not installed',
      fix: 'Install the toolguard MSI (docs/deploy/intune.md).',
    };
  const qc = await p.run('sc', ['qc', 'toolguard']);
  if (!/AUTO_START/.test(qc.stdout))
    return {
      id,
      status: 'FAIL',
      detail: 'service "toolguard" does not start automatically',
      fix: 'sc config toolguard start= auto',
    };
  if (!/RUNNING/.test(q.stdout))
    return {
      id,
      status: 'FAIL',
      detail: 'service "toolguard" is not running',
      fix: 'sc start toolguard; see %ProgramData%\\toolguard\\logs',
    };
  return { id, status: 'OK', detail: 'service "toolguard" automatic and running', fix: null };
}

function checkFiles(p: DoctorProbes, config: Config | null): DoctorCheck {
  const id = 'files';
  if (p.platform === 'win32')
    return { id, status: 'SKIP', detail: 'Windows uses ACLs (set by the MSI), not modes', fix: null };
  const problems: string[] = [];
  const fixes: string[] = [];
  const owner = p.ownerUid === 0 ? 'root' : String(p.ownerUid);
  const checkPath = (
    path: string,
    what: string,
    want: {
      mode?: number;
      noGroupOtherWrite?: boolean;
      noGroupOtherAccess?: boolean;
      dir?: boolean;
      optional?: boolean;
    },
  ): void => {
    const st = p.stat(path);
    if (!st) {
      if (!want.optional) {
        problems.push(`${what} ${path} is missing`);
        fixes.push(
          want.dir
            ? `sudo mkdir -p${want.mode ? ` -m ${want.mode.toString(8)}` : ''} '${path}'`
            : `create ${path}`,
        );
      }
      return;
    }
    const mode = st.mode & 0o7777;
    if (st.uid !== p.ownerUid) {
      problems.push(`${what} ${path} is owned by uid ${st.uid}, not ${owner}`);
      fixes.push(`sudo chown ${owner} '${path}'`);
    }
    if (want.mode !== undefined && mode !== want.mode) {
      problems.push(`${what} ${path} has mode ${mode.toString(8)}, want ${want.mode.toString(8)}`);
      fixes.push(`sudo chmod ${want.mode.toString(8)} '${path}'`);
    } else if (want.noGroupOtherAccess && (mode & 0o077) !== 0) {
      problems.push(`${what} ${path} is readable by others (mode ${mode.toString(8)})`);
      fixes.push(`sudo chmod go-rwx '${path}'`);
    } else if (want.noGroupOtherWrite && (mode & 0o022) !== 0) {
      problems.push(`${what} ${path} is writable by group/others (mode ${mode.toString(8)})`);
      fixes.push(`sudo chmod go-w '${path}'`);
    }
  };
  const configStat = p.stat(p.configFile);
  checkPath(dirname(p.configFile), 'config dir', { noGroupOtherWrite: true, dir: true });
  if (configStat) checkPath(p.configFile, 'config', { noGroupOtherWrite: true });
  const stateDir = config?.['paths.state_dir'] ?? defaultPaths(p.platform).stateDir;
  // On macOS the state dir doubles as the config dir (guardctl must read config.json): 0755 there.
  checkPath(
    stateDir,
    'state dir',
    p.platform === 'darwin' ? { noGroupOtherWrite: true, dir: true } : { mode: 0o700, dir: true },
  );
  const secretFile = config?.['collector.enroll_secret_file'];
  if (secretFile) checkPath(secretFile, 'enroll secret', { noGroupOtherAccess: true });
  checkPath(dirname(p.sockets.public), 'socket dir', { noGroupOtherWrite: true, dir: true });
  if (problems.length > 0)
    return { id, status: 'FAIL', detail: problems.join('; '), fix: fixes.join(' && ') };
  return {
    id,
    status: configStat ? 'OK' : 'WARN',
    detail: configStat
      ? `config, state dir${secretFile ? ', enroll secret' : ''} and socket dir have safe owners and modes`
      : `no ${p.configFile}: defaults in use`,
    fix: configStat ? null : `Have your MDM write ${p.configFile} (docs/deploy/).`,
  };
}

function checkSockets(p: DoctorProbes): DoctorCheck {
  const id = 'sockets';
  if (p.platform === 'win32')
    return { id, status: 'SKIP', detail: 'named pipes are checked through the policy check', fix: null };
  const pub = p.stat(p.sockets.public);
  const admin = p.stat(p.sockets.admin);
  const restart = p.localMode
    ? 'restart `npm start`'
    : p.platform === 'darwin'
      ? 'sudo launchctl kickstart -k system/io.toolguard.guardd'
      : 'sudo systemctl restart toolguard';
  if (!pub?.isSocket() || !admin?.isSocket())
    return {
      id,
      status: 'FAIL',
      detail: `${!pub?.isSocket() ? p.sockets.public : p.sockets.admin} is missing or not a socket`,
      fix: `${restart} (guardd creates both sockets at start)`,
    };
  if ((admin.mode & 0o022) !== 0 || admin.uid !== p.ownerUid)
    return {
      id,
      status: 'FAIL',
      detail: `${p.sockets.admin} is usable by non-root users (uid ${admin.uid}, mode ${(admin.mode & 0o777).toString(8)})`,
      fix: `${restart}; if it persists, report it: the admin socket must be root-only`,
    };
  return {
    id,
    status: 'OK',
    detail: `${p.sockets.public} and ${p.sockets.admin} (root-only) present`,
    fix: null,
  };
}

function checkPolicy(p: DoctorProbes, s: DaemonStatus | null, err: string | null): DoctorCheck {
  const id = 'policy';
  if (!s)
    return {
      id,
      status: 'FAIL',
      detail: `guardd does not answer: ${err}`,
      fix: p.localMode
        ? 'Start it with `npm start` in the checkout and re-run doctor.'
        : 'Start the service (see the service check) and re-run doctor.',
    };
  const pol = s.policy;
  if (pol.state === 'none')
    return {
      id,
      status: 'FAIL',
      detail: `no signed policy accepted yet: nothing is enforced${pol.last_error ? ` (last error: ${pol.last_error.message} [${pol.last_error.code}])` : ''}`,
      fix: 'Check policy.trusted_keys matches the signing key and the collector serves /v1/policy; see `guardctl status`.',
    };
  if (pol.state === 'stale')
    return {
      id,
      status: 'FAIL',
      detail: `policy v${pol.version} expired at ${pol.expires_at}; the last good policy is still enforced`,
      fix: 'Publish a freshly signed policy on the collector; check the device can reach it.',
    };
  const expiresIn = pol.expires_at ? Date.parse(pol.expires_at) - p.now() : Number.POSITIVE_INFINITY;
  const lastFetch = pol.last_fetch_at ? Date.parse(pol.last_fetch_at) : null;
  const warnings: string[] = [];
  if (expiresIn < POLICY_EXPIRY_WARN_MS)
    warnings.push(`expires in ${Math.max(0, Math.round(expiresIn / 3_600_000))} h`);
  if (lastFetch !== null && p.now() - lastFetch > POLICY_FETCH_STALE_MS)
    warnings.push(`not refreshed since ${pol.last_fetch_at}`);
  if (pol.last_error) warnings.push(`last error: ${pol.last_error.message} [${pol.last_error.code}]`);
  const base = `signature OK, v${pol.version} (${pol.rules} rules, ${pol.mode}), expires ${pol.expires_at}`;
  if (warnings.length > 0)
    return {
      id,
      status: 'WARN',
      detail: `${base}; ${warnings.join('; ')}`,
      fix: 'Re-sign and publish the policy before it expires; check policy fetches in the guardd log.',
    };
  return { id, status: 'OK', detail: base, fix: null };
}

async function checkCollector(
  p: DoctorProbes,
  config: Config | null,
): Promise<{ check: DoctorCheck; date: string | null }> {
  const id = 'collector';
  if (!config) return { check: { id, status: 'SKIP', detail: 'config invalid', fix: null }, date: null };
  const base = config['collector.url'];
  if (!base)
    return {
      check: {
        id,
        status: 'WARN',
        detail: 'collector.url not set: events stay in the local outbox',
        fix: 'Set collector.url in the config.',
      },
      date: null,
    };
  const url = `${base.replace(/\/+$/, '')}/healthz`;
  try {
    const res = await p.httpGet(url, {
      caFile: config['collector.ca_file'],
      timeoutMs: Math.min(config['collector.timeout_ms'], PROBE_TIMEOUT_MS),
    });
    if (res.status !== 200)
      return {
        check: {
          id,
          status: 'FAIL',
          detail: `GET ${url} answered ${res.status}`,
          fix: p.localMode
            ? 'The collector is embedded in `npm start`: restart it.'
            : 'Check the collector service and its load balancer (docs/deploy/collector.md).',
        },
        date: res.date,
      };
    return { check: { id, status: 'OK', detail: `GET ${url} answered 200`, fix: null }, date: res.date };
  } catch (err) {
    return {
      check: {
        id,
        status: 'FAIL',
        detail: `GET ${url} failed: ${errorMessage(err)}`,
        fix: p.localMode
          ? 'The collector is embedded in `npm start` and stops with it: start `npm start` again.'
          : 'Check DNS, firewall/proxy and TLS (collector.ca_file) from this machine to the collector.',
      },
      date: null,
    };
  }
}

function checkEnrollment(config: Config | null, s: DaemonStatus | null, err: string | null): DoctorCheck {
  const id = 'enrollment';
  if (!config?.['collector.url']) return { id, status: 'SKIP', detail: 'no collector configured', fix: null };
  if (!s) return { id, status: 'SKIP', detail: `guardd does not answer (${err})`, fix: null };
  if (!s.shipper.enrolled)
    return {
      id,
      status: 'FAIL',
      detail: `not enrolled with ${config['collector.url']}${s.shipper.last_error ? ` (last error: ${s.shipper.last_error})` : ''}`,
      fix: 'Check collector.enroll_secret_file holds the current enrollment secret (root-only file) and the guardd log.',
    };
  return {
    id,
    status: 'OK',
    detail: `enrolled as ${s.device_id}; last successful ship: ${s.shipper.last_success_at ?? 'never'}`,
    fix: null,
  };
}

function checkClock(p: DoctorProbes, config: Config | null, date: string | null): DoctorCheck {
  const id = 'clock';
  if (!date)
    return { id, status: 'SKIP', detail: 'no Date header from the collector to compare with', fix: null };
  const theirs = Date.parse(date);
  if (Number.isNaN(theirs))
    return {
      id,
      status: 'WARN',
      detail: `collector sent an unparseable Date "${date.slice(0, 60)}"`,
      fix: null,
    };
  const skewS = Math.round((p.now() - theirs) / 1000);
  const allowed = config?.['policy.clock_skew_s'] ?? 300;
  const detail = `local clock is ${Math.abs(skewS)} s ${skewS >= 0 ? 'ahead of' : 'behind'} the collector`;
  const fix = 'Enable time sync (timedatectl set-ntp true / sntp / w32tm /resync).';
  // The HTTP Date has 1 s resolution: skews under 2 s are indistinguishable from none.
  if (Math.abs(skewS) > allowed)
    return {
      id,
      status: 'FAIL',
      detail: `${detail}: over policy.clock_skew_s (${allowed} s), policies may be refused`,
      fix,
    };
  if (Math.abs(skewS) > CLOCK_SKEW_WARN_S) return { id, status: 'WARN', detail, fix };
  return { id, status: 'OK', detail, fix: null };
}

// ---------------------------------------------------------------------------------------------

/** The real machine: service managers, the filesystem, the daemon's public socket, HTTP(S). */
export function defaultProbes(ctx: CommandContext): DoctorProbes {
  const localMode = isLocalModeConfig(ctx.configFile);
  return {
    platform: currentPlatform(),
    configFile: ctx.configFile,
    sockets: ctx.sockets,
    // Local mode's files belong to whoever ran `npm start` (the config's owner), not root.
    ownerUid: localMode ? ownerOf(ctx.configFile) : 0,
    localMode,
    run: runCommand,
    stat: (path) => {
      try {
        return statSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    loadConfig: (file) => loadConfig({ file, required: false }),
    daemonStatus: () => ctx.call<DaemonStatus>('status'),
    httpGet,
    now: () => Date.now(),
  };
}

function ownerOf(path: string): number {
  try {
    return statSync(path).uid;
  } catch {
    return process.getuid?.() ?? 0;
  }
}

function runCommand(cmd: string, args: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      [...args],
      { timeout: PROBE_TIMEOUT_MS, encoding: 'utf8', windowsHide: true },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: unknown }) | null;
        if (e && typeof e.code === 'string')
          resolve({ status: null, stdout: '', stderr: '', error: `${cmd}: ${e.code}` });
        else resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
      },
    );
  });
}

/** GET with a hard deadline, optional pinned CA; only the status and Date header are read. */
export function httpGet(
  url: string,
  opts: { caFile: string; timeoutMs: number },
): Promise<{ status: number; date: string | null }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const ca = opts.caFile ? readFileSync(opts.caFile) : undefined;
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      { method: 'GET', timeout: opts.timeoutMs, ...(ca ? { ca } : {}) },
      (res) => {
        res.resume();
        resolve({
          status: res.statusCode ?? 0,
          date: typeof res.headers.date === 'string' ? res.headers.date : null,
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
