/**
 * Owns choosing and opening the collector's store (the one registry line per store): `store_url`
 * empty or a file path → SQLite (sqlite-store.ts), `postgres://` / `postgresql://` → PostgreSQL
 * (postgres-store.ts). The password and the TLS CA of PostgreSQL come from files, never from the
 * URL (a URL with a password is refused: flags and the environment are visible to others, and
 * URLs end up in logs).
 */
import { GuardError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { CollectorStorePort } from './port.js';
import { PostgresCollectorStore, SECRET_URL_PARAMS } from './postgres-store.js';
import { SqliteCollectorStore } from './sqlite-store.js';

/** How to reach the store (collector-config.ts's `store_*` settings, files already read). */
export interface StoreConnection {
  /** '' = SQLite at `dbFile`; a path = SQLite there; `postgres://user@host:port/db` = PostgreSQL. */
  readonly url?: string;
  /** PostgreSQL password (read from `store_password_file`). */
  readonly password?: string;
  /** PEM CA of the PostgreSQL server (read from `store_ca_file`): TLS with full verification. */
  readonly ca?: string | Buffer;
  /** PostgreSQL connections per collector. */
  readonly poolSize?: number;
}

/** True for a PostgreSQL URL. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(url);
}

/**
 * Checks a `store_url`: a PostgreSQL URL must parse and carry no password. Throws
 * `GUARD_CONFIG_INVALID_VALUE` (the value is never echoed: it may hold a password).
 */
export function checkStoreUrl(url: string): void {
  if (!isPostgresUrl(url)) return;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      'config key "store_url": not a valid URL, expected postgres://user@host:port/database',
      { key: 'store_url' },
    );
  }
  // pg also takes a password from the query (`?password=`, and `?sslpassword=` for the key)
  if (u.password !== '' || SECRET_URL_PARAMS.some((k) => u.searchParams.has(k)))
    throw new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      'config key "store_url": holds a password, expected none (put it in the file named by store_password_file)',
      { key: 'store_url' },
    );
}

/** Opens the store `connection` names (SQLite at `dbFile` by default); migrates it. */
export async function openStore(
  connection: StoreConnection & { readonly dbFile: string },
  logger?: Logger,
): Promise<CollectorStorePort> {
  const url = connection.url ?? '';
  if (isPostgresUrl(url)) {
    checkStoreUrl(url);
    return PostgresCollectorStore.open({
      url,
      password: connection.password,
      ca: connection.ca,
      poolSize: connection.poolSize,
      logger,
    });
  }
  const store = new SqliteCollectorStore({ file: url === '' ? connection.dbFile : url });
  if (store.recovered)
    logger?.error(store.recovered, 'collector DB failed its integrity check; moved aside and recreated');
  return store;
}
