/**
 * Owns guard-collector's own settings table and loader (same shape as src/config/settings.ts, but a
 * separate program with a separate config): defaults, then the `--config FILE` JSON object, then
 * `TOOLGUARD_COLLECTOR_*` environment variables, then flags. Returns a frozen, validated config and
 * turns it into the `StartCollectorOptions` of `startCollector` (secret files are read here, once).
 *
 * Bad input is refused with the key, the bad value and what was expected (`GUARD_CONFIG_*`).
 * Secrets (`enroll_secret`, `admin_token`, `console_viewer_token`, `splunk_hec_token`) may come from a file or the
 * environment only — never a flag, because flags are visible to every user in `ps`.
 * Also owns guard-collector's command line (COLLECTOR_PROGRAM): the flags are generated from the
 * settings table and parsed with the shared commander setup (src/cli/program.ts); a flag that is
 * not a setting is one line in PROGRAM_OPTIONS.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProgram, type ProgramOption, type ProgramSpec } from '../cli/program.js';
import { GuardError } from '../common/errors.js';
import type { LogLevel } from '../common/logger.js';
import { defaultPaths } from '../common/platform-paths.js';
import { readJsonObjectFile } from '../config/load-config.js';
import { MAX_EVENT_BYTES } from '../events/event-types.js';
import type { HecHost } from './forwarders/splunk-hec-sink.js';
import { defaultIngestWorkers } from './parse-pool.js';
import { checkStoreUrl } from './store/open-store.js';

type Kind = 'string' | 'integer' | 'enum';

export interface CollectorSettingDef {
  readonly kind: Kind;
  readonly default: string | number | (() => string | number);
  readonly description: string;
  /** For `integer`: inclusive bounds. */
  readonly min?: number;
  readonly max?: number;
  /** For `enum`: the allowed values. */
  readonly values?: readonly string[];
  /** Never accepted as a flag, never printed: only from the config file, a file or the env. */
  readonly secret?: boolean;
}

const MiB = 1024 * 1024;

/** The collector's DB on Linux: service/linux/guard-collector.service's StateDirectory=guard-collector. */
const LINUX_COLLECTOR_DB = '/var/lib/guard-collector/collector.db';

const str = (d: Omit<CollectorSettingDef, 'kind'>): CollectorSettingDef => ({ kind: 'string', ...d });
const int = (d: Omit<CollectorSettingDef, 'kind'>): CollectorSettingDef => ({ kind: 'integer', ...d });
const oneOf = (
  values: readonly string[],
  d: Omit<CollectorSettingDef, 'kind' | 'values'>,
): CollectorSettingDef => ({
  kind: 'enum',
  values,
  ...d,
});

/** The collector's settings. Flag = `--` + key with `_` as `-`; env = `TOOLGUARD_COLLECTOR_` + KEY. */
export const COLLECTOR_SETTINGS = {
  listen: str({
    default: '127.0.0.1:8443',
    description: 'host:port to listen on (port 0 = any free port; the actual URL is printed on start).',
  }),
  allowed_hosts: str({
    default: '',
    description:
      'Comma-separated host names clients reach the collector by (agents, browsers, scrapers, the load balancer); a request whose Host header names another is refused (421), so a web page cannot read /metrics or reach the console through DNS rebinding. IP addresses are always accepted. Empty = any host.',
  }),
  db: str({
    // Linux: the packaged unit's StateDirectory, so a collector started by hand and the service use
    // the same DB (and never guardd's root-only /var/lib/toolguard).
    default: () =>
      process.platform === 'linux' ? LINUX_COLLECTOR_DB : join(defaultPaths().stateDir, 'collector.db'),
    description: "The collector's SQLite database (WAL; created if missing), when store_url is empty.",
  }),
  store_url: str({
    default: '',
    description:
      'Where the collector stores its data: empty = SQLite at db; a file path = SQLite there; postgres://user@host:port/database = PostgreSQL shared by several collectors (no password in the URL: store_password_file).',
  }),
  store_password_file: str({
    default: '',
    description: 'File holding the PostgreSQL password of store_url (empty = none, e.g. peer/cert auth).',
  }),
  store_ca_file: str({
    default: '',
    description:
      'PEM CA of the PostgreSQL server: connect with TLS, verifying its certificate and host name against it (empty = as the URL says, sslmode).',
  }),
  store_pool_size: int({
    default: 10,
    min: 2,
    max: 200,
    description:
      'PostgreSQL connections per collector (group commits, token lookups, forwarders, admin, one listener).',
  }),
  policy_file: str({
    default: '',
    description:
      'A signed policy envelope served at GET /v1/policy (re-read when it changes; "sign, copy, done"); never written by the collector. Policies published through the admin API live in the database; the higher version of the two is served.',
  }),
  policy_trusted_keys: str({
    default: '',
    description:
      'Comma-separated public key files (PEM or base64 Ed25519) a policy published through POST /v1/admin/policy must verify against; empty = publications are checked for shape and schema only and recorded unverified.',
  }),
  policy_threshold: int({
    default: 1,
    min: 1,
    max: 16,
    description: 'Distinct policy_trusted_keys that must have signed a published policy.',
  }),
  enroll_secret: str({
    default: '',
    secret: true,
    description: 'Enrollment secret agents present to POST /v1/enroll (prefer enroll_secret_file).',
  }),
  enroll_secret_file: str({ default: '', description: 'File holding the enrollment secret.' }),
  admin_token: str({
    default: '',
    secret: true,
    description: 'Bearer token of the admin API (GET /v1/devices, /v1/events); prefer admin_token_file.',
  }),
  admin_token_file: str({ default: '', description: 'File holding the admin token.' }),
  console_viewer_token: str({
    default: '',
    secret: true,
    description:
      "Login of the browser console's read-only role (viewer; the admin token logs in as admin); empty = no viewer login; prefer console_viewer_token_file.",
  }),
  console_viewer_token_file: str({ default: '', description: 'File holding the console viewer token.' }),
  console_session_ttl_s: int({
    default: 8 * 3600,
    min: 60,
    max: 7 * 86_400,
    description: 'A console login session ends this long after it began (a work day by default).',
  }),
  tls_cert: str({ default: '', description: 'PEM certificate (chain) file; with tls_key, serve HTTPS.' }),
  tls_key: str({ default: '', description: 'PEM private key file of tls_cert.' }),
  ndjson_out: str({
    default: '',
    description: 'Forward every stored event as one JSON line to this file (rotated); empty = off.',
  }),
  ndjson_format: oneOf(['raw', 'ocsf', 'ecs'], {
    default: 'raw',
    description: 'Lines of the NDJSON sink: the event as received, or its OCSF or ECS mapping.',
  }),
  ndjson_max_bytes: int({
    default: 100 * MiB,
    min: 4096,
    max: 64 * 1024 * MiB,
    description: 'The NDJSON file is rotated (file → file.1 …) before it would exceed this size.',
  }),
  ndjson_keep: int({ default: 5, min: 1, max: 1000, description: 'Rotated NDJSON files kept.' }),
  splunk_hec_url: str({
    default: '',
    description: 'Splunk HEC base URL (https://splunk:8088); events go to /services/collector/event.',
  }),
  splunk_hec_token: str({ default: '', secret: true, description: 'Splunk HEC token (prefer the file).' }),
  splunk_hec_token_file: str({ default: '', description: 'File holding the Splunk HEC token.' }),
  splunk_hec_ca_file: str({
    default: '',
    description: 'PEM CA pinned for the HEC endpoint; empty = system CAs.',
  }),
  splunk_sourcetype: str({ default: 'toolguard:event', description: 'HEC sourcetype of forwarded events.' }),
  splunk_source: str({ default: 'toolguard', description: 'HEC source of forwarded events.' }),
  splunk_index: str({
    default: '',
    description: "Splunk index of forwarded events; empty = the token's default index.",
  }),
  splunk_hec_ack: oneOf(['off', 'on'], {
    default: 'off',
    description:
      'Indexer acknowledgement: events count as delivered only once HEC acknowledges them as indexed (the token must have it on).',
  }),
  splunk_hec_channel: str({
    default: '',
    description:
      'X-Splunk-Request-Channel GUID sent with every HEC request; empty = a random UUID per start.',
  }),
  splunk_hec_ack_timeout_s: int({
    default: 120,
    min: 1,
    max: 600,
    description: 'With acknowledgement: events not acknowledged within this many seconds are sent again.',
  }),
  splunk_hec_gzip: oneOf(['on', 'off'], { default: 'on', description: 'Gzip HEC request bodies.' }),
  splunk_format: oneOf(['raw', 'ocsf', 'ecs'], {
    default: 'raw',
    description: 'HEC event payload: the event as received, or its OCSF or ECS mapping.',
  }),
  splunk_host: oneOf(['device_id', 'hostname'], {
    default: 'device_id',
    description:
      "HEC host of forwarded events: the device's id (checked against its token at ingest, unique) or the hostname the device reports (readable, but any device can report any name).",
  }),
  silent_after_s: int({
    default: 900,
    min: 10,
    max: 30 * 86_400,
    description: 'A device not seen for this long is flagged silent (3 missed 5-minute heartbeats).',
  }),
  retention_days: int({
    default: 0,
    min: 0,
    max: 36_500,
    description:
      'Delete events received more than this many days ago (hourly), never before every forwarder delivered them; 0 = keep forever.',
  }),
  rate_limit: int({
    default: 10,
    min: 1,
    max: 100_000,
    description: 'Sustained requests per second allowed per device token (429 + Retry-After beyond).',
  }),
  rate_burst: int({
    default: 40,
    min: 1,
    max: 1_000_000,
    description: 'Burst of requests per device token.',
  }),
  quota_window_s: int({
    default: 3600,
    min: 1,
    max: 7 * 86_400,
    description:
      'Window of the per-device quotas: each device may send quota_events events and quota_bytes bytes per window (refilled continuously).',
  }),
  quota_events: int({
    // A normal agent sends a heartbeat every 5 minutes and a handful of block/warn/install events
    // an hour (well under 100 events/hour). 100,000 also lets an agent that was offline drain a full
    // default outbox (64 MiB ≈ 100,000 events of ~650 bytes) within one window.
    default: 100_000,
    min: 1,
    max: 1_000_000_000,
    description:
      'Events each device may send per quota window (429 + Retry-After beyond; refilled continuously).',
  }),
  quota_bytes: int({
    // = the agent's default outbox cap (outbox.max_bytes): a full outbox drains within one window,
    // while normal traffic (heartbeats, ~0.5 KiB each, plus a few events) is under 100 KiB/hour.
    default: 64 * MiB,
    min: 1024,
    max: 1024 * 1024 * MiB,
    description:
      'Event body bytes (after gzip decompression) each device may send per quota window (429 + Retry-After beyond).',
  }),
  enroll_rate_per_min: int({
    // An MDM rollout behind one NAT address enrolls hundreds of machines within minutes; agents
    // honour Retry-After, so 60 at once and 2 a second more enroll 1,000 machines in ~8 minutes.
    default: 120,
    min: 1,
    max: 6_000_000,
    description: 'Enroll attempts per minute allowed per source address (429 + Retry-After beyond).',
  }),
  enroll_burst: int({
    default: 60,
    min: 1,
    max: 1_000_000,
    description: 'Enroll attempts a source address may make at once after being idle.',
  }),
  enroll_failures_per_hour: int({
    // An honest agent fails only while its secret is wrong (a typo, a rotation): a few tries. This
    // caps guessing at ~1,440 tries a day per address (was ~8,600 a second).
    default: 60,
    min: 1,
    max: 3_600_000,
    description:
      'Failed enroll attempts (wrong secret) per hour allowed per source address; past them every attempt from it gets 429 + Retry-After.',
  }),
  enroll_failure_burst: int({
    default: 10,
    min: 1,
    max: 1_000_000,
    description: 'Failed enroll attempts a source address may make at once.',
  }),
  max_body_bytes: int({
    default: 8 * MiB,
    // A body must hold one event of the largest size agents send, or such events are refused
    // (413) and set aside by the agent: a developer could hide blocks with a padded command line.
    min: MAX_EVENT_BYTES + 1,
    max: 256 * MiB,
    description: 'Largest accepted events body, measured after gzip decompression (413 beyond).',
  }),
  max_gzip_ratio: int({
    default: 200,
    min: 10,
    max: 100_000,
    description: 'Largest decompressed/compressed ratio of a gzip body (NDJSON events compress ~5-20x).',
  }),
  max_inflight_bytes: int({
    default: 128 * MiB,
    min: 1 * MiB,
    max: 16 * 1024 * MiB,
    description: 'Body bytes buffered across all requests at once; 503 + Retry-After beyond (memory bound).',
  }),
  ingest_workers: int({
    default: () => defaultIngestWorkers(),
    min: 0,
    max: 16,
    description:
      'Threads that parse and validate event bodies beside the main thread (HTTP, SQLite); 0 = on the main thread. The default is CPUs − 1, at most 2.',
  }),
  body_timeout_ms: int({
    default: 30_000,
    min: 100,
    max: 600_000,
    description: 'Time limit for receiving a whole request body (slowloris).',
  }),
  headers_timeout_ms: int({
    default: 10_000,
    min: 100,
    max: 600_000,
    description: 'Time limit for receiving the request headers (slowloris).',
  }),
  log_level: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    default: 'info',
    description: 'Log level (logs go to stderr).',
  }),
} as const satisfies Record<string, CollectorSettingDef>;

/** What a forwarder writes: the event as received, or its OCSF / ECS mapping. */
export type ForwardFormat = 'raw' | 'ocsf' | 'ecs';

export type CollectorSettingKey = keyof typeof COLLECTOR_SETTINGS;

export interface CollectorConfig {
  readonly listen: string;
  readonly allowed_hosts: string;
  readonly db: string;
  readonly store_url: string;
  readonly store_password_file: string;
  readonly store_ca_file: string;
  readonly store_pool_size: number;
  readonly policy_file: string;
  readonly policy_trusted_keys: string;
  readonly policy_threshold: number;
  readonly enroll_secret: string;
  readonly enroll_secret_file: string;
  readonly admin_token: string;
  readonly admin_token_file: string;
  readonly console_viewer_token: string;
  readonly console_viewer_token_file: string;
  readonly console_session_ttl_s: number;
  readonly tls_cert: string;
  readonly tls_key: string;
  readonly ndjson_out: string;
  readonly ndjson_format: ForwardFormat;
  readonly ndjson_max_bytes: number;
  readonly ndjson_keep: number;
  readonly splunk_hec_url: string;
  readonly splunk_hec_token: string;
  readonly splunk_hec_token_file: string;
  readonly splunk_hec_ca_file: string;
  readonly splunk_sourcetype: string;
  readonly splunk_source: string;
  readonly splunk_index: string;
  readonly splunk_hec_ack: 'off' | 'on';
  readonly splunk_hec_channel: string;
  readonly splunk_hec_ack_timeout_s: number;
  readonly splunk_hec_gzip: 'on' | 'off';
  readonly splunk_format: ForwardFormat;
  readonly splunk_host: HecHost;
  readonly silent_after_s: number;
  readonly retention_days: number;
  readonly rate_limit: number;
  readonly rate_burst: number;
  readonly quota_window_s: number;
  readonly quota_events: number;
  readonly quota_bytes: number;
  readonly enroll_rate_per_min: number;
  readonly enroll_burst: number;
  readonly enroll_failures_per_hour: number;
  readonly enroll_failure_burst: number;
  readonly max_body_bytes: number;
  readonly max_gzip_ratio: number;
  readonly max_inflight_bytes: number;
  readonly ingest_workers: number;
  readonly body_timeout_ms: number;
  readonly headers_timeout_ms: number;
  readonly log_level: LogLevel;
}

/** The environment variable of a collector setting. */
export function collectorEnvVar(key: string): string {
  return `TOOLGUARD_COLLECTOR_${key.toUpperCase()}`;
}

/** The flag of a collector setting (`policy_file` → `--policy-file`). */
export function collectorFlag(key: string): string {
  return `--${key.replace(/_/g, '-')}`;
}

const KEYS = new Set(Object.keys(COLLECTOR_SETTINGS));

/**
 * guard-collector's options besides the settings (one line each; read them from `ParsedArgs.options`
 * under commander's camelCase name). Every setting is also a `--<setting> VALUE` flag, generated
 * below; a secret only as a hidden flag that is refused with the way to pass it instead.
 */
const PROGRAM_OPTIONS: readonly ProgramOption[] = [
  { flags: '--config <file>', description: 'JSON file with settings (one flat object, the keys below)' },
  {
    flags: '--migrate-only',
    description:
      "migrate the store (db or store_url) to this version's schema, say what was done, and exit: 0 done, 11 the schema is newer than this build (upgrade the collector, never downgrade the database), 1 the store cannot be opened, 4 this user may not write the database's directory, 6 bad config",
  },
];

/** guard-collector's command line, generated from its settings table (and cli-reference's source). */
export const COLLECTOR_PROGRAM: ProgramSpec = {
  name: 'guard-collector',
  summary: 'The toolguard collector: enrolls agents, stores their events, serves the policy',
  description: `guard-collector receives the agents' events over HTTPS, keeps them (SQLite or PostgreSQL), serves the signed policy and forwards events to SIEMs. Settings come from defaults, then --config FILE, then TOOLGUARD_COLLECTOR_<KEY> environment variables, then the flags; secrets (${Object.entries(
    COLLECTOR_SETTINGS,
  )
    .filter(([, d]) => (d as CollectorSettingDef).secret)
    .map(([k]) => k)
    .join(
      ', ',
    )}) only from the config file, a *_file or the environment, never a flag (flags are visible to every user in ps). It prints one line on stdout, "guard-collector listening on <url>"; SIGTERM/SIGINT stop it cleanly.`,
  section: 8,
  options: [
    ...PROGRAM_OPTIONS,
    ...(Object.entries(COLLECTOR_SETTINGS) as [string, CollectorSettingDef][]).map(([key, def]) => {
      const dflt = typeof def.default === 'function' ? def.default() : def.default;
      return {
        flags: `${collectorFlag(key)} <${def.kind === 'integer' ? 'n' : (def.values?.join('|') ?? 'value')}>`,
        description: `${def.description} Default: ${JSON.stringify(dflt)} (${collectorEnvVar(key)})`,
        ...(def.secret ? { hidden: true } : {}),
      };
    }),
  ],
  examples: [
    'TOOLGUARD_COLLECTOR_ENROLL_SECRET_FILE=/etc/guard-collector/enroll-secret guard-collector --listen 127.0.0.1:0 --db ./collector.db',
    'guard-collector --config /etc/guard-collector/collector.json --listen 0.0.0.0:8443 --tls-cert tls.crt --tls-key tls.key',
    'guard-collector --store-url postgres://guard@db.example.com/toolguard --store-password-file /etc/guard-collector/pg-password',
  ],
  exitCodes: ['OK', 'UNEXPECTED', 'USAGE', 'FORBIDDEN', 'CONFIG', 'SCHEMA_NEWER'],
};

export interface ParsedArgs {
  readonly configFile?: string;
  /** Settings given as flags, by setting key (strings, checked by loadCollectorConfig). */
  readonly values: Readonly<Record<string, string>>;
  /** The options of PROGRAM_OPTIONS, by commander's camelCase name. */
  readonly options: Readonly<Record<string, unknown>>;
  /** Set when parsing ended the run (--help or --version printed): the exit code. */
  readonly ended: number | null;
  /** `--migrate-only`: migrate the store, say what was done, exit (collector-main.ts). */
  readonly migrateOnly: boolean;
}

/**
 * Parses guard-collector's command line (commander, src/cli/program.ts). Throws GUARD_CLI_USAGE
 * for an unknown flag or a missing value, GUARD_CONFIG_INVALID_VALUE for a secret given as a flag.
 */
export function parseCollectorArgs(argv: readonly string[]): ParsedArgs {
  const program = createProgram(COLLECTOR_PROGRAM);
  const ended = program.parseSync(argv);
  const options = program.command.opts<Record<string, unknown>>();
  const values: Record<string, string> = {};
  for (const option of program.command.options) {
    const key = option.long?.slice(2).replace(/-/g, '_') ?? '';
    const value = options[option.attributeName()];
    const def = (COLLECTOR_SETTINGS as Record<string, CollectorSettingDef>)[key];
    if (!def || typeof value !== 'string') continue;
    if (def.secret)
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `"${key}" is a secret and is not accepted as a flag (visible in ps); use ${collectorFlag(key)}-file or ${collectorEnvVar(key)}`,
        { key },
      );
    values[key] = value;
  }
  const configFile = typeof options.config === 'string' ? options.config : undefined;
  return { configFile, values, options, ended, migrateOnly: options.migrateOnly === true };
}

/** Loads and validates the collector config. Throws `GuardError` with a `GUARD_CONFIG_*` code. */
export function loadCollectorConfig(
  args: ParsedArgs,
  env: Readonly<Record<string, string | undefined>> = process.env,
): CollectorConfig {
  const values: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(COLLECTOR_SETTINGS) as [string, CollectorSettingDef][]) {
    values[key] = typeof def.default === 'function' ? def.default() : def.default;
  }
  if (args.configFile) {
    for (const [key, raw] of Object.entries(readJsonObjectFile(args.configFile) ?? {})) {
      if (key === '$schema' || key === '//') continue;
      if (!KEYS.has(key)) throw unknownKey(key, `file ${args.configFile}`);
      values[key] = check(key, raw, `file ${args.configFile}`);
    }
  }
  for (const key of KEYS) {
    const raw = env[collectorEnvVar(key)];
    if (raw !== undefined && raw !== '') values[key] = check(key, fromString(key, raw), collectorEnvVar(key));
  }
  for (const [key, raw] of Object.entries(args.values))
    values[key] = check(key, fromString(key, raw), collectorFlag(key));
  parseListen(values.listen as string);
  checkStoreUrl(values.store_url as string);
  if ((values.tls_cert === '') !== (values.tls_key === ''))
    throw new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      'config keys "tls_cert" and "tls_key": expected both or neither',
      {
        key: values.tls_cert === '' ? 'tls_cert' : 'tls_key',
      },
    );
  return Object.freeze(values) as unknown as CollectorConfig;
}

/** Parses `host:port` (IPv6 as `[::1]:8443`). Throws `GUARD_CONFIG_INVALID_VALUE`. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65_535)
    throw new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      `config key "listen": got ${JSON.stringify(listen)}, expected host:port (port 0-65535)`,
      { key: 'listen' },
    );
  return { host: (m[1] ?? m[2]) as string, port };
}

/** Reads a secret: the file wins over the inline value; trailing whitespace is trimmed. */
export function readSecret(
  config: CollectorConfig,
  key: 'enroll_secret' | 'admin_token' | 'splunk_hec_token' | 'console_viewer_token',
): string {
  const fileKey = `${key}_file` as const;
  const file = config[fileKey];
  if (file !== '') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new GuardError(
        'GUARD_CONFIG_UNREADABLE',
        `config key "${fileKey}": cannot read ${file}: ${(err as Error).message}`,
        { key: fileKey },
      );
    }
    return text.trim();
  }
  return config[key];
}

/** Shortest accepted enroll secret / admin token: guessing 16 random characters is hopeless. */
export const MIN_SECRET_CHARS = 16;

/** Reads a required secret and refuses it when missing or too short. */
export function requireSecret(
  config: CollectorConfig,
  key: 'enroll_secret' | 'admin_token' | 'console_viewer_token',
): string {
  const value = readSecret(config, key);
  if (value.length < MIN_SECRET_CHARS)
    throw new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      `config key "${key}": ${value === '' ? 'not set' : `${value.length} characters`}, expected at least ${MIN_SECRET_CHARS} characters (set ${key}_file or ${collectorEnvVar(key)})`,
      { key },
    );
  return value;
}

function unknownKey(key: string, source: string): GuardError {
  return new GuardError(
    'GUARD_CONFIG_UNKNOWN_KEY',
    `unknown config key "${key}" (${source}); known keys: ${[...KEYS].join(', ')}`,
    { key, source },
  );
}

function fromString(key: string, raw: string): unknown {
  const def = (COLLECTOR_SETTINGS as Record<string, CollectorSettingDef>)[key] as CollectorSettingDef;
  if (def.kind === 'integer' && /^-?\d+$/.test(raw.trim())) return Number(raw.trim());
  return raw;
}

function check(key: string, value: unknown, source: string): unknown {
  const def = (COLLECTOR_SETTINGS as Record<string, CollectorSettingDef>)[key] as CollectorSettingDef;
  const bad = (expected: string): GuardError => {
    const shown = def.secret ? 'a value of the wrong type' : JSON.stringify(value)?.slice(0, 80);
    return new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      `config key "${key}" (${source}): got ${shown}, expected ${expected}`,
      { key, source, expected },
    );
  };
  switch (def.kind) {
    case 'string':
      if (typeof value !== 'string') throw bad('a string');
      return value;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) throw bad('an integer');
      if ((def.min !== undefined && value < def.min) || (def.max !== undefined && value > def.max))
        throw bad(`an integer from ${def.min} to ${def.max}`);
      return value;
    case 'enum':
      if (typeof value !== 'string' || !def.values?.includes(value))
        throw bad(`one of ${def.values?.join(', ')}`);
      return value;
  }
}
