import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
