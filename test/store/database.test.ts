import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { isGuardError } from '../../src/common/errors.js';
import { openDatabase, StateStore } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();

describe('openDatabase', () => {
  it('creates a WAL database at the latest schema and keeps state across opens', () => {
    const file = join(dir, 'a.db');
    const first = openDatabase(file, { migrations: MIGRATIONS });
    expect(first.recovered).toBeNull();
    expect(first.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(first.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    new StateStore(first.db).set('device_id', 'dev-1');
    first.db.close();
    const again = openDatabase(file, { migrations: MIGRATIONS });
    expect(new StateStore(again.db).get('device_id')).toBe('dev-1');
    again.db.close();
  });

  it('moves a corrupt file aside (kept, not deleted) and recreates it', () => {
    const file = join(dir, 'corrupt.db');
    writeFileSync(file, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(8192, 0xab)]));
    const { db, recovered } = openDatabase(file, { migrations: MIGRATIONS });
    expect(recovered).not.toBeNull();
    expect(recovered?.movedTo).toMatch(/corrupt\.db\.corrupt-/);
    expect(existsSync(recovered!.movedTo)).toBe(true);
    expect(readdirSync(dir).some((f) => f.startsWith('corrupt.db.corrupt-'))).toBe(true);
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    db.close();
  });

  it("'header' (the collector's check) still moves a file that is not a database aside, but opens one damaged deep inside", () => {
    const garbage = join(dir, 'hdr-garbage.db');
    writeFileSync(garbage, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(8192, 0xab)]));
    const g = openDatabase(garbage, { migrations: MIGRATIONS, integrity: 'header' });
    expect(g.recovered).not.toBeNull();
    g.db.close();

    // A database whose last page (an index page of a 2,000-row table) is overwritten: the schema
    // reads fine, integrity_check does not.
    const deep = join(dir, 'hdr-deep.db');
    const make = new Database(deep);
    make.pragma('journal_mode = DELETE');
    make.exec('CREATE TABLE t(a TEXT); CREATE INDEX t_a ON t(a);');
    const ins = make.prepare('INSERT INTO t VALUES (?)');
    make.transaction(() => {
      for (let i = 0; i < 2000; i++) ins.run(`row-${i}-${'x'.repeat(50)}`);
    })();
    const pageSize = make.pragma('page_size', { simple: true }) as number;
    make.close();
    const bytes = readFileSync(deep);
    bytes.fill(0xab, bytes.length - pageSize + 100);
    writeFileSync(deep, bytes);
    const copy = `${deep}.copy`;
    copyFileSync(deep, copy);

    const header = openDatabase(deep, { migrations: [], integrity: 'header' });
    expect(header.recovered).toBeNull();
    header.db.close();
    const full = openDatabase(copy, { migrations: [] });
    expect(full.recovered?.problem).toMatch(/integrity_check|malformed/);
    full.db.close();
  });

  it('leaves a database it cannot open for another reason where it is (GUARD_STORE_IO): locked by another process, a directory', () => {
    // A live database another guardd holds (here: an exclusive transaction past the 5 s busy
    // timeout) was once taken for a corrupt one and moved aside from under it.
    const held = join(dir, 'held.db');
    const holder = new Database(held);
    holder.pragma('journal_mode = DELETE');
    holder.exec('CREATE TABLE t(a); INSERT INTO t VALUES (1);');
    holder.exec('BEGIN EXCLUSIVE');
    const codeOf = (file: string): string => {
      try {
        openDatabase(file, { migrations: MIGRATIONS }).db.close();
        return 'opened';
      } catch (err) {
        return isGuardError(err) ? err.code : `other: ${(err as Error).message}`;
      }
    };
    try {
      expect(codeOf(held)).toBe('GUARD_STORE_IO');
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    expect(readdirSync(dir).filter((f) => f.startsWith('held.db.corrupt-'))).toEqual([]);
    expect(new Database(held, { readonly: true }).prepare('SELECT a FROM t').get()).toEqual({ a: 1 });

    const folder = join(dir, 'folder.db');
    mkdirSync(folder);
    expect(codeOf(folder)).toBe('GUARD_STORE_IO');
    expect(statSync(folder).isDirectory()).toBe(true);
    expect(readdirSync(dir).filter((f) => f.startsWith('folder.db.corrupt-'))).toEqual([]);
  }, 20_000);

  it('refuses a database from a newer guardd instead of downgrading it', () => {
    const file = join(dir, 'newer.db');
    openDatabase(file, { migrations: MIGRATIONS }).db.close();
    let code = '';
    try {
      openDatabase(file, { migrations: MIGRATIONS.slice(0, 0) });
    } catch (err) {
      code = isGuardError(err) ? err.code : 'other';
    }
    expect(code).toBe('GUARD_STORE_IO');
  });
});
