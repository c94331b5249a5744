/**
 * `guard-collector --migrate-only` as the real program (bin/guard-collector.js → dist/): it
 * migrates the configured store — a SQLite file of an older schema, a fresh PostgreSQL database —
 * says from which version to which, exits 0, says "current" the second time, needs no secrets, and
 * exits 11 with GUARD_STORE_SCHEMA_NEWER (touching nothing) on a schema newer than the build.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { COLLECTOR_MIGRATIONS } from '../../src/collector/collector-store.js';
import { PG_MIGRATIONS } from '../../src/collector/store/postgres-store.js';
import { openDatabase } from '../../src/store/database.js';
import { collectorTempDir } from '../helpers/collector.js';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.js';

const BIN = fileURLToPath(new URL('../../bin/guard-collector.js', import.meta.url));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs guard-collector with `args` and no secrets in its environment. */
function run(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { PATH: process.env.PATH ?? '' }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

let server: TestPostgres;
beforeAll(async () => {
  server = await startTestPostgres();
});

describe('guard-collector --migrate-only', () => {
  it('SQLite: migrates a database of an older schema, then finds it current; a newer one exits 11', async () => {
    const file = join(collectorTempDir('tg-migr-'), 'collector.db');
    const older = COLLECTOR_MIGRATIONS.length - 1;
    openDatabase(file, { migrations: COLLECTOR_MIGRATIONS.slice(0, older) }).db.close();

    const first = await run(['--db', file, '--migrate-only']);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toBe(
      `guard-collector: sqlite store ${file}: schema migrated from version ${older} to ${COLLECTOR_MIGRATIONS.length} (1 migration)\n`,
    );
    const db = new Database(file, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(COLLECTOR_MIGRATIONS.length);
    db.close();

    const again = await run(['--db', file, '--migrate-only']);
    expect(again).toMatchObject({ code: 0 });
    expect(again.stdout).toContain(
      `schema version ${COLLECTOR_MIGRATIONS.length} is current, nothing to migrate`,
    );

    const w = new Database(file);
    w.pragma('user_version = 99');
    w.close();
    const newer = await run(['--db', file, '--migrate-only']);
    expect(newer.code).toBe(11);
    expect(newer.stdout).toBe('');
    expect(newer.stderr).toMatch(
      /schema version 99, newer than this collector.*\[GUARD_STORE_SCHEMA_NEWER\]/,
    );
    const r = new Database(file, { readonly: true });
    expect(r.pragma('user_version', { simple: true })).toBe(99);
    r.close();
    // and --help says so (it once said 3)
    expect((await run(['--help'])).stdout).toContain(`${newer.code} the schema is newer than this build`);
  });

  it('PostgreSQL: migrates a fresh database from 0, then finds it current; a newer one exits 11', async () => {
    const url = await server.createDatabase();
    const dbFile = join(collectorTempDir('tg-migr-'), 'unused.db');
    const args = ['--db', dbFile, '--store-url', url, '--migrate-only'];
    const first = await run(args);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toBe(
      `guard-collector: postgres store ${url}: schema migrated from version 0 to ${PG_MIGRATIONS.length} (${PG_MIGRATIONS.length} migration${PG_MIGRATIONS.length === 1 ? '' : 's'})\n`,
    );
    const again = await run(args);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`schema version ${PG_MIGRATIONS.length} is current, nothing to migrate`);

    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('UPDATE collector_schema SET version = version + 1');
      const newer = await run(args);
      expect(newer.code).toBe(11);
      expect(newer.stderr).toMatch(/newer than this collector.*\[GUARD_STORE_SCHEMA_NEWER\]/);
      expect((await c.query('SELECT version FROM collector_schema')).rows).toEqual([
        { version: PG_MIGRATIONS.length + 1 },
      ]);
    } finally {
      await c.end();
    }
  });

  it('an unknown flag next to it is still a usage error (exit 2), and nothing is opened', async () => {
    const file = join(collectorTempDir('tg-migr-'), 'collector.db');
    const r = await run(['--db', file, '--migrate-only', '--no-such-flag', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('[GUARD_CLI_USAGE]');
  });
});
