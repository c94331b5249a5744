/**
 * Owns the one table of settings: key, type, default, description (npm's `Definition`, osquery's
 * `FLAG`). The loader, `guardctl config`, and docs/config.md are all generated from this table so
 * they cannot drift. The environment variable of a key is derived, never listed: `TOOLGUARD_` +
 * the key upper-cased with dots as underscores (`collector.url` → `TOOLGUARD_COLLECTOR_URL`).
 *
 * Adding a setting: one entry here (kept grouped by area), then read it in the composition root
 * (src/daemon/deps.ts) and pass the value to the component that needs it.
 */
import { defaultPaths } from '../common/platform-paths.js';

/** How a value is parsed from a file (JSON) or from an environment variable (string). */
export type SettingKind = 'string' | 'integer' | 'boolean' | 'string[]' | 'enum';

export interface SettingDef<T> {
  readonly kind: SettingKind;
  /** The value when nothing sets it; a function when it depends on the platform. */
  readonly default: T | (() => T);
  readonly description: string;
  /** For `integer`: inclusive bounds. */
  readonly min?: number;
  readonly max?: number;
  /** For `enum`: the allowed values. */
  readonly values?: readonly string[];
  /** For `string`: what the value must match, and how to say so in an error. */
  readonly pattern?: { readonly re: RegExp; readonly expected: string };
  /** Never printed by `guardctl config` or logged: only whether it is set. */
  readonly secret?: boolean;
}

const str = (d: Omit<SettingDef<string>, 'kind'>): SettingDef<string> => ({ kind: 'string', ...d });
const int = (d: Omit<SettingDef<number>, 'kind'>): SettingDef<number> => ({ kind: 'integer', ...d });
const bool = (d: Omit<SettingDef<boolean>, 'kind'>): SettingDef<boolean> => ({ kind: 'boolean', ...d });
const list = (d: Omit<SettingDef<readonly string[]>, 'kind'>): SettingDef<readonly string[]> => ({
  kind: 'string[]',
  ...d,
});
const oneOf = <const V extends string>(
  values: readonly V[],
  d: Omit<SettingDef<NoInfer<V>>, 'kind' | 'values'>,
): SettingDef<V> => ({
  kind: 'enum',
  values,
  ...d,
});

const MiB = 1024 * 1024;

export const SETTINGS = {
  // device identity
  'device.id': str({
    default: '',
    description: 'Device id; empty = generated once and kept in the state DB.',
    // The collector accepts exactly these ids; anything else could never enroll and would ship nothing.
    pattern: {
      re: /^(?:[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})?$/,
      expected: 'up to 128 letters, digits and . _ : @ - (starting with a letter or digit)',
    },
  }),
  'device.tags': list({
    default: [],
    description: 'Device tags that policy exceptions can name (e.g. "ai-lab").',
  }),

  // paths
  'paths.state_dir': str({
    default: () => defaultPaths().stateDir,
    description:
      'Root-owned state: DB, quarantine, policy cache, the single-instance lock (guardd.lock). It and every directory above it must be writable by root only (refused otherwise, GUARD_CONFIG_UNSAFE_DIR).',
  }),
  'paths.socket_dir': str({
    default: () => defaultPaths().socketDir,
    description:
      'Directory of the control sockets guardd.sock (public) and admin.sock (root). It and every directory above it must be writable by root only (refused otherwise, GUARD_CONFIG_UNSAFE_DIR).',
  }),
  'paths.bootstrap_policy': str({
    default: '',
    description:
      'Signed policy file shipped by MDM, used until the first successful fetch. Empty = <state_dir>/bootstrap-policy.dsse.json.',
  }),

  // collector
  'collector.url': str({
    default: '',
    description: 'Base URL of guard-collector (https://…). Empty = events stay in the local outbox.',
  }),
  'collector.enroll_secret': str({
    default: '',
    secret: true,
    description: 'Enrollment secret (prefer enroll_secret_file).',
  }),
  'collector.enroll_secret_file': str({
    default: '',
    description: 'File holding the enrollment secret (root-only readable).',
  }),
  'collector.ca_file': str({
    default: '',
    description: "PEM CA bundle pinned for the collector's TLS certificate; empty = system CAs.",
  }),
  'collector.timeout_ms': int({
    default: 15_000,
    min: 100,
    max: 300_000,
    description: 'Time limit of one request to the collector.',
  }),

  // policy
  'policy.url': str({
    default: '',
    description: 'Where the signed policy is fetched; empty = <collector.url>/v1/policy.',
  }),
  'policy.trusted_keys': list({
    default: [],
    description: 'Ed25519 public keys trusted to sign the policy (PEM or raw 32-byte base64).',
  }),
  'policy.threshold': int({
    default: 1,
    min: 1,
    max: 16,
    description: 'Distinct trusted keys that must sign a policy.',
  }),
  'policy.refresh_cron': str({
    default: '*/5 * * * *',
    description: 'node-cron schedule of policy fetches (a random jitter is added).',
  }),
  'policy.refresh_jitter_s': int({
    default: 60,
    min: 0,
    max: 3600,
    description: 'Up to this many seconds of random delay before each scheduled fetch.',
  }),
  'policy.max_bytes': int({
    default: 1 * MiB,
    min: 1024,
    max: 64 * MiB,
    description: 'Size cap of a downloaded policy envelope.',
  }),
  'policy.fetch_timeout_ms': int({
    default: 10_000,
    min: 100,
    max: 300_000,
    description: 'Time limit of one policy download, body included.',
  }),
  'policy.clock_skew_s': int({
    default: 300,
    min: 0,
    max: 86_400,
    description: 'Allowed clock skew when checking issued_at / expires_at.',
  }),

  // sensors
  'sensors.process.enabled': bool({ default: true, description: 'Watch process launches.' }),
  'sensors.process.interval_ms': int({
    default: 0,
    min: 0,
    max: 60_000,
    description: 'Process scan interval; 0 = the source default (Linux /proc: 100 ms, ps-list: 1000 ms).',
  }),
  'sensors.process.source': oneOf(['auto', 'procfs', 'ps-list', 'eslogger', 'windows-start'] as const, {
    default: 'auto',
    description:
      'Process source; auto = procfs on Linux, eslogger on macOS, windows-start (WMI process start trace) on Windows; the last two poll with ps-list while their program does not run.',
  }),
  'sensors.process.exec_events': oneOf(['auto', 'off'] as const, {
    default: 'auto',
    description:
      'Exec events: Linux process events connector with the procfs source (root with CAP_NET_ADMIN; the /proc scan then runs every 1000 ms as the safety sweep), eslogger on macOS, the WMI process start trace on Windows (ps-list then sweeps every 5000 ms); off = polling only.',
  }),
  'sensors.process.exec_program': str({
    default: '',
    description:
      'The program the eslogger or windows-start source runs; empty = /usr/bin/eslogger (macOS) or %SystemRoot%\\System32\\WindowsPowerShell\\v1.0\\powershell.exe (Windows). For tests and unusual installs.',
  }),
  'sensors.install.enabled': bool({
    default: true,
    description: 'Watch installed packages and path artifacts.',
  }),
  'sensors.install.rescan_cron': str({
    default: '17 * * * *',
    description: 'node-cron schedule of the full rescan of install roots.',
  }),
  'sensors.install.extra_roots': list({
    default: [],
    description:
      'Extra global node_modules directories to watch; one missing at start is watched from when it is created.',
  }),
  'sensors.install.homes': list({
    default: [],
    description: "Home directories to scan; empty = every local user's home from the OS.",
  }),
  'sensors.install.system_roots': bool({
    default: true,
    description:
      'Also watch the system-wide prefixes (/usr/lib/node_modules, /usr/local/lib/node_modules, Homebrew, Program Files\\nodejs). Local mode turns this off.',
  }),

  // enforcement
  'enforcement.warn_interval_s': int({
    default: 3600,
    min: 0,
    max: 604_800,
    description: 'A warning for the same user and rule is shown at most once per this interval.',
  }),
  'enforcement.exec_deny': oneOf(['auto', 'off'] as const, {
    default: 'auto',
    description:
      'Pre-exec deny (Linux): refuse the exec of a blocked program before it runs (fanotify FAN_OPEN_EXEC_PERM). auto = on when guardd runs as root on Linux and the execperm addon loads (never in --local mode); off = processes are only killed after they start.',
  }),
  'enforcement.open_marks': oneOf(['auto', 'off'] as const, {
    default: 'auto',
    description:
      'Open marks (Linux, with pre-exec deny on): once guardd has identified a file as the script of a package a block rule bans by script_packages (enforced, no exceptions), every open of that file by any process other than guardd is refused (fanotify FAN_OPEN_PERM on that file only), so node cannot load it however it is asked to. auto = on whenever pre-exec deny is on; off = such scripts are only killed after they start.',
  }),
  'enforcement.exec_deny_deadline_ms': int({
    default: 200,
    min: 20,
    max: 2000,
    description:
      'Longest time an exec waits for the pre-exec verdict. A file not yet decided by then is allowed (and counted as a deadline miss); the post-exec kill still applies to it. Bounds how long any exec on the machine can wait for guardd.',
  }),
  'enforcement.notify_desktop': bool({
    default: true,
    description: "Send desktop notifications to the owning user's session.",
  }),
  'enforcement.notify_terminal': bool({
    default: true,
    description: "Write the rule message to the process's controlling terminal.",
  }),

  // outbox and shipping
  'outbox.max_bytes': int({
    default: 64 * MiB,
    min: 64 * 1024,
    max: 4096 * MiB,
    description:
      'Size cap of the local event outbox; past it the oldest unshipped events are dropped and counted.',
  }),
  'shipper.batch_max_events': int({
    default: 500,
    min: 1,
    max: 10_000,
    description: 'Events per batch at most.',
  }),
  'shipper.batch_max_bytes': int({
    default: 1 * MiB,
    min: 1024,
    max: 16 * MiB,
    description: 'Uncompressed bytes per batch at most.',
  }),
  'shipper.interval_ms': int({
    default: 5_000,
    min: 50,
    max: 3_600_000,
    description: 'Pause between sends while nothing urgent is queued.',
  }),
  'shipper.backoff_max_s': int({
    default: 300,
    min: 1,
    max: 86_400,
    description: 'Cap of the exponential backoff after failures.',
  }),
  'shipper.heartbeat_cron': str({
    default: '*/5 * * * *',
    description: 'node-cron schedule of agent.heartbeat events.',
  }),

  // logging
  'log.level': oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, {
    default: 'info',
    description: 'Log level of guardd (logs go to stderr / the service journal).',
  }),
} as const satisfies Record<string, SettingDef<unknown>>;

export type SettingKey = keyof typeof SETTINGS;

/** The validated, frozen config: one value per settings key. */
export type Config = {
  readonly [K in SettingKey]: ValueOf<(typeof SETTINGS)[K]>;
};

/** The value type of a setting, read from its default (what `infer` on the whole def widens). */
type ValueOf<D> = D extends { readonly default: infer T } ? (T extends () => infer R ? R : T) : never;

/** The environment variable that sets `key`. */
export function envVarOf(key: string): string {
  return `TOOLGUARD_${key.toUpperCase().replace(/\./g, '_')}`;
}
