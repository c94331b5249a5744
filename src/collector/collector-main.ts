/**
 * Owns the `guard-collector` program: parse flags and the config (collector-config.ts), start the
 * collector, print the URL it listens on (one stdout line, `guard-collector listening on <url>`,
 * which tests and scripts read when they ask for port 0), and close gracefully on SIGTERM/SIGINT.
 *
 * `--migrate-only`: open the configured store (SQLite or PostgreSQL), which migrates it, print
 * one line saying from which schema version to which, and exit — no secrets or listen address
 * needed. The package's unit runs it before every start (ExecStartPre), so an upgrade's restart
 * migrates first and the journal says what it did.
 *
 * Exit codes: 0 after a clean shutdown (or a done migration), 2 for bad config (message with key,
 * value and expectation on stderr, no stack trace), 1 when the collector cannot start (port taken,
 * DB unusable or of a newer schema, PostgreSQL unreachable; with the error code when there is
 * one), 3 with `--migrate-only` when the store's schema is newer than this build
 * (`GUARD_STORE_SCHEMA_NEWER`: upgrade the collector, never downgrade the database).
 */
import { readFileSync } from 'node:fs';
import { errorMessage, GuardError, isGuardError } from '../common/errors.js';
import { createRootLogger } from '../common/logger.js';
import { AGENT_VERSION } from '../common/version.js';
import { parseTrustedKeys, type TrustedKey } from '../policy/keys.js';
import {
  COLLECTOR_SETTINGS,
  type CollectorConfig,
  collectorEnvVar,
  collectorFlag,
  loadCollectorConfig,
  parseCollectorArgs,
  parseListen,
  readSecret,
  requireSecret,
} from './collector-config.js';
import { type StartCollectorOptions, startCollector } from './collector-server.js';
import { openStore, type StoreConnection } from './store/open-store.js';
import type { CollectorStorePort } from './store/port.js';

const EXIT_OK = 0;
const EXIT_START_FAILED = 1;
const EXIT_BAD_CONFIG = 2;
const EXIT_SCHEMA_NEWER = 3;

/** Runs guard-collector until SIGTERM/SIGINT. Resolves with the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let config: CollectorConfig;
  let options: StartCollectorOptions;
  try {
    const args = parseCollectorArgs(argv);
    if (args.help) {
      process.stdout.write(usage());
      return EXIT_OK;
    }
    if (args.version) {
      process.stdout.write(`guard-collector ${AGENT_VERSION}\n`);
      return EXIT_OK;
    }
    config = loadCollectorConfig(args);
    if (args.migrateOnly) return await migrateOnly(config);
    options = optionsFromConfig(config);
  } catch (err) {
    process.stderr.write(
      `guard-collector: ${isGuardError(err) ? `${err.message} [${err.code}]` : errorMessage(err)}\n`,
    );
    return EXIT_BAD_CONFIG;
  }

  const root = createRootLogger(config.log_level);
  // The handlers go in before the start: a SIGTERM that arrives while starting, or right after the
  // "listening" line (a supervisor or test reading it may signal before the next statement runs),
  // is a clean stop, never a kill by the default action.
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      root.info({ signal }, 'shutting down');
      resolve();
    };
    const onTerm = (): void => stop('SIGTERM');
    const onInt = (): void => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  let collector: Awaited<ReturnType<typeof startCollector>>;
  try {
    collector = await startCollector({ ...options, logger: root });
  } catch (err) {
    process.stderr.write(
      `guard-collector: cannot start: ${errorMessage(err)}${isGuardError(err) ? ` [${err.code}]` : ''}\n`,
    );
    return EXIT_START_FAILED;
  }
  process.stdout.write(`guard-collector listening on ${collector.url}\n`);
  await stopped;
  await collector.close();
  return EXIT_OK;
}

/** Opens (so migrates) the store of `config`, prints what was done, closes it; the exit code. */
async function migrateOnly(config: CollectorConfig): Promise<number> {
  let store: CollectorStorePort;
  try {
    store = await openStore({ dbFile: config.db, ...storeConnectionOf(config) });
  } catch (err) {
    process.stderr.write(
      `guard-collector: cannot migrate: ${errorMessage(err)}${isGuardError(err) ? ` [${err.code}]` : ''}\n`,
    );
    return isGuardError(err) && err.code === 'GUARD_STORE_SCHEMA_NEWER'
      ? EXIT_SCHEMA_NEWER
      : EXIT_START_FAILED;
  }
  const { from, to } = store.schema;
  await store.close();
  process.stdout.write(
    `guard-collector: ${store.kind} store ${store.location}: ${
      from === to
        ? `schema version ${to} is current, nothing to migrate`
        : `schema migrated from version ${from} to ${to} (${to - from} migration${to - from === 1 ? '' : 's'})`
    }\n`,
  );
  return EXIT_OK;
}

/** Where the store of `config` is and how to log in (reads the password and CA files). */
function storeConnectionOf(config: CollectorConfig): StoreConnection {
  return {
    url: config.store_url,
    password: config.store_password_file
      ? readFile('store_password_file', config.store_password_file).toString('utf8').trim()
      : undefined,
    ca: config.store_ca_file ? readFile('store_ca_file', config.store_ca_file) : undefined,
    poolSize: config.store_pool_size,
  };
}

/** Turns the validated config into `startCollector` options (reads secret and PEM files). */
export function optionsFromConfig(config: CollectorConfig): StartCollectorOptions {
  const { host, port } = parseListen(config.listen);
  const hecToken = config.splunk_hec_url ? readSecret(config, 'splunk_hec_token') : '';
  if (config.splunk_hec_url) {
    try {
      new URL(config.splunk_hec_url);
    } catch {
      throw new Error(
        `config key "splunk_hec_url": got ${JSON.stringify(config.splunk_hec_url)}, expected an http(s) URL`,
      );
    }
    if (
      config.splunk_hec_channel &&
      !/^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$/i.test(config.splunk_hec_channel)
    )
      throw new Error(
        `config key "splunk_hec_channel": got ${JSON.stringify(config.splunk_hec_channel)}, expected a GUID (HEC refuses other channels)`,
      );
    if (hecToken === '')
      throw new Error(
        `config key "splunk_hec_token": not set, expected a token (splunk_hec_token_file or ${collectorEnvVar('splunk_hec_token')})`,
      );
  }
  const enrollSecret = requireSecret(config, 'enroll_secret');
  const adminToken = requireSecret(config, 'admin_token');
  // Every enrolled machine holds the enroll secret (root-readable there): as the admin token it
  // would open every device's events to any of them.
  if (adminToken === enrollSecret)
    throw new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      'config key "admin_token": the same value as enroll_secret, expected a different secret (every enrolled machine holds the enroll secret)',
      { key: 'admin_token' },
    );
  return {
    host,
    port,
    dbFile: config.db,
    store: storeConnectionOf(config),
    policyFile: config.policy_file,
    policyTrustedKeys: trustedKeysOf(config.policy_trusted_keys),
    policyThreshold: config.policy_threshold,
    enrollSecret,
    adminToken,
    tls: config.tls_cert
      ? { cert: readFile('tls_cert', config.tls_cert), key: readFile('tls_key', config.tls_key) }
      : undefined,
    silentAfterS: config.silent_after_s,
    retentionDays: config.retention_days,
    ingestWorkers: config.ingest_workers,
    limits: {
      maxBodyBytes: config.max_body_bytes,
      maxGzipRatio: config.max_gzip_ratio,
      maxInflightBytes: config.max_inflight_bytes,
      bodyTimeoutMs: config.body_timeout_ms,
      headersTimeoutMs: config.headers_timeout_ms,
      ratePerS: config.rate_limit,
      rateBurst: config.rate_burst,
      quotaWindowS: config.quota_window_s,
      quotaEvents: config.quota_events,
      quotaBytes: config.quota_bytes,
      enrollPerMin: config.enroll_rate_per_min,
      enrollBurst: config.enroll_burst,
      enrollFailuresPerHour: config.enroll_failures_per_hour,
      enrollFailureBurst: config.enroll_failure_burst,
    },
    forwarders: {
      ndjson: config.ndjson_out
        ? {
            file: config.ndjson_out,
            maxBytes: config.ndjson_max_bytes,
            keep: config.ndjson_keep,
            format: config.ndjson_format,
          }
        : undefined,
      splunkHec: config.splunk_hec_url
        ? {
            url: config.splunk_hec_url,
            token: hecToken,
            ca: config.splunk_hec_ca_file
              ? readFile('splunk_hec_ca_file', config.splunk_hec_ca_file)
              : undefined,
            sourcetype: config.splunk_sourcetype,
            source: config.splunk_source,
            index: config.splunk_index || undefined,
            format: config.splunk_format,
            ack: config.splunk_hec_ack === 'on',
            channel: config.splunk_hec_channel || undefined,
            ackTimeoutMs: config.splunk_hec_ack_timeout_s * 1000,
            gzip: config.splunk_hec_gzip === 'on',
          }
        : undefined,
    },
  };
}

/** The keys of `policy_trusted_keys` (comma-separated files); a bad file or key is a config error naming the key. */
function trustedKeysOf(list: string): TrustedKey[] {
  const files = list
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '');
  try {
    return parseTrustedKeys(files.map((f) => readFile('policy_trusted_keys', f).toString('utf8')));
  } catch (err) {
    if (err instanceof GuardError && err.code === 'GUARD_POLICY_KEY_INVALID')
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `config key "policy_trusted_keys": ${err.message}, expected Ed25519 public keys (PEM or base64)`,
        { key: 'policy_trusted_keys' },
      );
    throw err;
  }
}

function readFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(
      `config key "${key}": cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
    );
  }
}

function usage(): string {
  const lines = [
    'Usage: guard-collector [--config FILE] [--<setting> VALUE]…',
    '       guard-collector [--config FILE] [--<setting> VALUE]… --migrate-only',
    '',
    "  --migrate-only             migrate the store (db or store_url) to this version's schema, say what",
    '                             was done, and exit: 0 done, 3 the schema is newer than this build',
    '',
    'Settings (flag / environment variable; secrets only from a file or the environment):',
  ];
  for (const [key, def] of Object.entries(COLLECTOR_SETTINGS)) {
    const dflt = typeof def.default === 'function' ? def.default() : def.default;
    const flag = 'secret' in def && def.secret ? '(no flag)' : collectorFlag(key);
    lines.push(
      `  ${flag.padEnd(26)} ${collectorEnvVar(key)}`,
      `      ${def.description} Default: ${JSON.stringify(dflt)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
