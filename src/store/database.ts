/**
 * Owns opening SQLite files: WAL mode, the durability setting, schema migrations keyed on
 * `PRAGMA user_version`, and recovery from a corrupt file (moved aside — kept for forensics,
 * never deleted — and recreated empty; the caller turns `recovered` into an event). Only a file
 * SQLite calls corrupt or not a database, or one failing the integrity check, is moved aside; one
 * it cannot open for another reason (locked by another process past the busy timeout, no
 * permission, a directory) is left where it is and refused with GUARD_STORE_IO — a live database
 * held by another guardd must never be mistaken for a broken one.
 */
import { existsSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { GuardError } from '../common/errors.js';
import { makeDirs } from '../common/private-dir.js';

export type Db = Database.Database;

export interface OpenDatabaseResult {
  readonly db: Db;
  /** Set when the file failed its integrity check and was replaced by an empty one. */
  readonly recovered: { readonly movedTo: string; readonly problem: string } | null;
}

export interface OpenDatabaseOptions {
  /** Migrations to apply (index i brings user_version from i to i+1). */
  readonly migrations: readonly string[];
  /**
   * `FULL` makes every commit durable across power loss (one fsync of the WAL per commit);
   * `NORMAL` in WAL mode survives any process crash (kill -9) but may lose the last commits on
   * power loss. Agents default to FULL: the outbox must not lose a block event.
   */
  readonly synchronous?: 'FULL' | 'NORMAL';
  /**
   * What is checked at open. `full` (default: the agent's few-MiB files) runs `integrity_check`,
   * which reads every page. `header` only reads the schema (a file that is not a database, or
   * whose first pages are garbage, still fails and is moved aside): for the collector, whose file
   * grows to many GiB — a full check took 3–6 minutes at 10 million events, past systemd's start
   * timeout — and where SQLite reports deeper damage when a query meets it (SQLITE_CORRUPT),
   * rather than having a whole fleet's history moved aside at a restart. docs/collector.md says
   * how to run the full check by hand.
   */
  readonly integrity?: 'full' | 'header';
}

/** Opens (creating if needed) the DB at `file`, checks its integrity and migrates it. */
export function openDatabase(file: string, options: OpenDatabaseOptions): OpenDatabaseResult {
  makeDirs(dirname(file), 0o700);
  let recovered: OpenDatabaseResult['recovered'] = null;
  let db: Db;
  try {
    db = openAndCheck(file, options.integrity ?? 'full');
  } catch (err) {
    const problem = (err as Error).message;
    if (!isCorrupt(err))
      throw new GuardError('GUARD_STORE_IO', `cannot open database ${file}: ${problem}`, { file });
    const movedTo = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(file + suffix)) renameSync(file + suffix, movedTo + suffix);
    }
    recovered = { movedTo, problem };
    try {
      db = openAndCheck(file, options.integrity ?? 'full');
    } catch (err2) {
      throw new GuardError('GUARD_STORE_IO', `cannot create database ${file}: ${(err2 as Error).message}`, {
        file,
      });
    }
  }
  db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
  db.pragma('foreign_keys = ON');
  migrate(db, options.migrations);
  return { db, recovered };
}

/** A failed integrity check (openAndCheck). */
class IntegrityError extends Error {}

/** Whether opening failed because the file is damaged (not because it is busy or out of reach). */
function isCorrupt(err: unknown): boolean {
  const code = String((err as { code?: unknown }).code ?? '');
  return err instanceof IntegrityError || /^SQLITE_(CORRUPT|NOTADB)/.test(code);
}

function openAndCheck(file: string, integrity: 'full' | 'header'): Db {
  const db = new Database(file);
  try {
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    if (integrity === 'header') {
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
      return db;
    }
    const rows = db.pragma('integrity_check') as { integrity_check: string }[];
    const ok = rows.length === 1 && rows[0]?.integrity_check === 'ok';
    if (!ok)
      throw new IntegrityError(
        `integrity_check: ${rows
          .map((r) => r.integrity_check)
          .join('; ')
          .slice(0, 500)}`,
      );
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

function migrate(db: Db, migrations: readonly string[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    throw new GuardError(
      'GUARD_STORE_IO',
      `database schema version ${current} is newer than this guardd knows (${migrations.length}); refusing to downgrade`,
    );
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** Small typed key-value access to the `state` table (device id, policy anti-rollback, counters). */
export class StateStore {
  private readonly getStmt;
  private readonly setStmt;

  constructor(private readonly db: Db) {
    this.getStmt = db.prepare<[string], { value: string }>('SELECT value FROM state WHERE key = ?');
    this.setStmt = db.prepare(
      'INSERT INTO state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
    );
  }

  /** The JSON value stored at `key`, or undefined. */
  get<T>(key: string): T | undefined {
    const row = this.getStmt.get(key);
    return row ? (JSON.parse(row.value) as T) : undefined;
  }

  /** Stores `value` (JSON-serialisable) at `key`; durable when the call returns. */
  set(key: string, value: unknown): void {
    this.setStmt.run(key, JSON.stringify(value));
  }

  /** Runs `fn` in one transaction. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }
}
