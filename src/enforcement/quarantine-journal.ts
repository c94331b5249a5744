/**
 * Owns the quarantine journal: the `quarantine` table of the state DB, one row per entry with its
 * state and manifest (JSON). Writes are synchronous SQLite statements, so a state written here is
 * durable before the next file operation starts (the write-ahead the store's recovery relies on).
 */
import type { Db } from '../store/database.js';
import type { QuarantineEntry, QuarantineManifest, QuarantineState } from './quarantine-store.js';

interface Row {
  id: string;
  created_at: string;
  state: string;
  manifest: string;
}

function toEntry(row: Row): QuarantineEntry {
  return {
    id: row.id,
    state: row.state as QuarantineState,
    createdAt: row.created_at,
    manifest: JSON.parse(row.manifest) as QuarantineManifest,
  };
}

export class QuarantineJournal {
  private readonly insertStmt;
  private readonly updateStmt;
  private readonly getStmt;
  private readonly listStmt;
  private readonly byStateStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      'INSERT INTO quarantine(id, created_at, state, manifest) VALUES (?, ?, ?, ?)',
    );
    this.updateStmt = db.prepare('UPDATE quarantine SET state = ?, manifest = ? WHERE id = ?');
    this.getStmt = db.prepare<[string], Row>(
      'SELECT id, created_at, state, manifest FROM quarantine WHERE id = ?',
    );
    this.listStmt = db.prepare<[], Row>('SELECT id, created_at, state, manifest FROM quarantine ORDER BY id');
    this.byStateStmt = db.prepare<[string], Row>(
      'SELECT id, created_at, state, manifest FROM quarantine WHERE state = ? ORDER BY id',
    );
  }

  /** Records a new entry (the intent, before anything is touched). Throws on a duplicate id. */
  insert(id: string, createdAt: string, state: QuarantineState, m: QuarantineManifest): void {
    this.insertStmt.run(id, createdAt, state, JSON.stringify(m));
  }

  /** Replaces an entry's state and manifest. */
  save(id: string, state: QuarantineState, m: QuarantineManifest): void {
    this.updateStmt.run(state, JSON.stringify(m), id);
  }

  /** One entry, or null. */
  get(id: string): QuarantineEntry | null {
    const row = this.getStmt.get(id);
    return row ? toEntry(row) : null;
  }

  /** Every entry, oldest first. */
  list(): QuarantineEntry[] {
    return this.listStmt.all().map(toEntry);
  }

  /** Entries in `state`, oldest first. */
  inState(state: QuarantineState): QuarantineEntry[] {
    return this.byStateStmt.all(state).map(toEntry);
  }
}
