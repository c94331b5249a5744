/**
 * Owns the `guard-collector` program: parse flags and the config (collector-config.ts), start the
 * collector, print the URL it listens on (one stdout line, `guard-collector listening on <url>`,
 * which tests and scripts read when they ask for port 0), and close gracefully on SIGTERM/SIGINT.
 *
 * Exit codes (the one table of src/cli/error-message.ts, errors printed like guardctl's): 0 after a
 * clean shutdown, 2 for a usage error, 6 for bad config (message with key, value and expectation,
 * and a hint, no stack trace), 4 when the system refuses a directory or a port (not root, a port
 * below 1024), 11 when the database's schema is newer than this build, 1 when the collector cannot
 * start otherwise (port taken, DB unusable, PostgreSQL unreachable; with the error code when there
 * is one).
 *
 * `--migrate-only`: open the configured store (SQLite or PostgreSQL), which migrates it, print
 * one line saying from which schema version to which, and exit 0 — no secrets or listen address
 * needed; 11 (SCHEMA_NEWER) when the store's schema is newer than this build (upgrade the
 * collector, never downgrade the database), 4 when the system refuses the database's directory,
 * 6 for bad config, 1 when the store cannot be opened otherwise. The package's
 * unit runs it before every start (ExecStartPre), so an upgrade's restart migrates first and
 * the journal says what it did.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { EXIT } from '../cli/error-message.js';
import { reportError, startFailure } from '../cli/program.js';
import { errorMessage, GuardError, isGuardError } from '../common/errors.js';
import { createRootLogger } from '../common/logger.js';
import { parseTrustedKeys, type TrustedKey } from '../policy/keys.js';
import { parseAllowedHosts } from './allowed-hosts.js';
import {
  type CollectorConfig,
  collectorEnvVar,
  loadCollectorConfig,
  parseCollectorArgs,
  parseListen,
  readSecret,
  requireSecret,
} from './collector-config.js';
import { type StartCollectorOptions, startCollector } from './collector-server.js';
import { openStore, type StoreConnection } from './store/open-store.js';
import type { CollectorStorePort } from './store/port.js';

/** Runs guard-collector until SIGTERM/SIGINT. Resolves with the process exit code. */
export async function main(argv: string[]): Promise<number> {
  let config: CollectorConfig;
  let options: StartCollectorOptions;
  let configFile: string | undefined;
  try {
    const args = parseCollectorArgs(argv);
    if (args.ended !== null) return args.ended;
    configFile = args.configFile;
    config = loadCollectorConfig(args);
    if (args.migrateOnly) return await migrateOnly(config, configFile);
    options = optionsFromConfig(config);
  } catch (err) {
    return reportError(err, { program: 'guard-collector', configFile });
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
    return reportError(startFailure(sqliteDirRefused(err, config)), {
      program: 'guard-collector',
      configFile,
    });
  }
  process.stdout.write(`guard-collector listening on ${collector.url}\n`);
  await stopped;
  await collector.close();
  return EXIT.OK;
}

/**
 * SQLite says only "unable to open database file": when the DB's directory exists but this user
 * may not write it (the collector started as the wrong user), the failure is the system's refusal
 * (EACCES, exit 4 with how to run it), not a broken store.
 */
function sqliteDirRefused(err: unknown, config: CollectorConfig): unknown {
  if (!isGuardError(err, 'GUARD_STORE_IO') || /^postgres(ql)?:/.test(config.store_url)) return err;
  const dir = dirname(config.store_url || config.db);
  try {
    accessSync(dir, constants.W_OK);
    return err;
  } catch (denied) {
    if ((denied as NodeJS.ErrnoException).code !== 'EACCES') return err;
    return Object.assign(new Error(`${err.message}: ${dir} is not writable by this user`), {
      code: 'EACCES',
    });
  }
}

/** Opens (so migrates) the store of `config`, prints what was done, closes it; the exit code. */
async function migrateOnly(config: CollectorConfig, configFile: string | undefined): Promise<number> {
  let store: CollectorStorePort;
  try {
    store = await openStore({ dbFile: config.db, ...storeConnectionOf(config) });
  } catch (err) {
    return reportError(startFailure(sqliteDirRefused(err, config)), {
      program: 'guard-collector',
      configFile,
    });
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
  return EXIT.OK;
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
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `config key "splunk_hec_url": got ${JSON.stringify(config.splunk_hec_url)}, expected an http(s) URL`,
        { key: 'splunk_hec_url' },
      );
    }
    if (
      config.splunk_hec_channel &&
      !/^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$/i.test(config.splunk_hec_channel)
    )
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `config key "splunk_hec_channel": got ${JSON.stringify(config.splunk_hec_channel)}, expected a GUID (HEC refuses other channels)`,
        { key: 'splunk_hec_channel' },
      );
    if (hecToken === '')
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `config key "splunk_hec_token": not set, expected a token (splunk_hec_token_file or ${collectorEnvVar('splunk_hec_token')})`,
        { key: 'splunk_hec_token' },
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
  // Optional; when set, held to the same length as the others and distinct from both (a viewer
  // token equal to the admin token would make every viewer an admin).
  const viewerToken =
    readSecret(config, 'console_viewer_token') === '' ? '' : requireSecret(config, 'console_viewer_token');
  if (viewerToken !== '' && (viewerToken === adminToken || viewerToken === enrollSecret))
    throw new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      'config key "console_viewer_token": the same value as admin_token or enroll_secret, expected a different secret',
      { key: 'console_viewer_token' },
    );
  return {
    host,
    port,
    allowedHosts: parseAllowedHosts(config.allowed_hosts),
    dbFile: config.db,
    store: storeConnectionOf(config),
    policyFile: config.policy_file,
    policyTrustedKeys: trustedKeysOf(config.policy_trusted_keys),
    policyThreshold: config.policy_threshold,
    enrollSecret,
    adminToken,
    consoleViewerToken: viewerToken,
    consoleSessionTtlS: config.console_session_ttl_s,
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
            host: config.splunk_host,
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
    throw new GuardError(
      'GUARD_CONFIG_UNREADABLE',
      `config key "${key}": cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
      { key },
    );
  }
}
