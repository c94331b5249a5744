/**
 * Owns the SQLite implementation of the storage port (port.ts): the embedded default, one
 * collector process on one file. The schema, migrations, durability and idempotency are
 * collector-store.ts's (`CollectorStore`, synchronous better-sqlite3); this adapter gives them the
 * port's async shape and adds the forwarder claim, which in one process is the runner itself
 * (one runner per sink; SQLite has one writer, so rid order is commit order and "rid > cursor"
 * never skips a row).
 */
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { GuardError } from '../../common/errors.js';
import type { CollectorStoreOptions } from '../collector-store.js';
import { COLLECTOR_MIGRATIONS, CollectorStore } from '../collector-store.js';
import type {
  BatchToStore,
  ClaimLimits,
  ClaimOutcome,
  CollectorStorePort,
  CoverageCounts,
  DeviceRow,
  EnrolledDevice,
  EnrollingDevice,
  EventQuery,
  InsertResult,
  NewPolicyPublication,
  PolicyPublicationRow,
  StoredEventRow,
} from './port.js';

/** Rows read per step while filling a forwarder batch, so the byte cap also bounds what is read. */
const READ_CHUNK = 50;

export class SqliteCollectorStore implements CollectorStorePort {
  readonly kind = 'sqlite' as const;
  readonly location: string;
  readonly schema: { readonly from: number; readonly to: number };
  /** The synchronous engine (sqlite-only tests and tools; the collector itself uses the port). */
  readonly engine: CollectorStore;
  /** Sinks whose delivery runs right now in this process (a second runner of one sink gets `busy`). */
  private readonly claimed = new Set<string>();

  /**
   * Opens (creating or migrating) the database. Throws `GUARD_STORE_SCHEMA_NEWER` for a database
   * of a newer collector (left untouched), `GUARD_STORE_IO` when it cannot be opened.
   */
  constructor(options: CollectorStoreOptions) {
    const from = refuseNewerSchema(options.file);
    this.engine = new CollectorStore(options);
    this.location = options.file;
    this.schema = { from: this.engine.recovered ? 0 : from, to: COLLECTOR_MIGRATIONS.length };
  }

  /** Set when the DB failed its integrity check at open and was moved aside. */
  get recovered(): CollectorStore['recovered'] {
    return this.engine.recovered;
  }

  get onStored(): (() => void) | null {
    return this.engine.onStored;
  }
  set onStored(f: (() => void) | null) {
    this.engine.onStored = f;
  }

  async deviceForTokenHash(tokenHash: string): Promise<EnrolledDevice | undefined> {
    return this.engine.deviceForTokenHash(tokenHash);
  }

  async enrollDevice(device: EnrollingDevice, tokenHash: string, now: string): Promise<number> {
    return this.engine.enrollDevice(device, tokenHash, now);
  }

  async insertGroup(batches: readonly BatchToStore[]): Promise<InsertResult[]> {
    return this.engine.insertGroup(batches);
  }

  async queryEvents(q: EventQuery): Promise<StoredEventRow[]> {
    return this.engine.queryEvents(q);
  }

  async deliverNext(
    sink: string,
    limits: ClaimLimits,
    deliver: (events: readonly StoredEventRow[]) => Promise<void>,
  ): Promise<ClaimOutcome> {
    if (this.claimed.has(sink)) return { kind: 'busy' };
    this.claimed.add(sink);
    try {
      const rows = this.nextBatch(sink, limits);
      if (rows.length === 0) return { kind: 'empty' };
      await deliver(rows);
      this.engine.setCursor(sink, (rows[rows.length - 1] as StoredEventRow).rid);
      return { kind: 'delivered', events: rows.length };
    } finally {
      this.claimed.delete(sink);
    }
  }

  /** The next events after the cursor: at most `maxEvents`, and at most `maxBytes` of bodies (but at least one). */
  private nextBatch(sink: string, limits: ClaimLimits): StoredEventRow[] {
    const rows: StoredEventRow[] = [];
    let bytes = 0;
    let after = this.engine.cursorOf(sink);
    for (;;) {
      const want = Math.min(READ_CHUNK, limits.maxEvents - rows.length);
      const chunk = this.engine.eventsAfter(after, want);
      for (const row of chunk) {
        if (rows.length > 0 && bytes + row.body.length > limits.maxBytes) return rows;
        rows.push(row);
        bytes += row.body.length;
        after = row.rid;
      }
      if (chunk.length < want || rows.length >= limits.maxEvents) return rows;
    }
  }

  async forwarderLag(sink: string): Promise<number> {
    return Math.max(0, this.engine.maxRid() - this.engine.cursorOf(sink));
  }

  async pruneEvents(receivedBefore: string, sinks: readonly string[], limit: number): Promise<number> {
    // events past every sink's cursor are still owed to that sink
    const protectAbove =
      sinks.length === 0 ? Number.MAX_SAFE_INTEGER : Math.min(...sinks.map((s) => this.engine.cursorOf(s)));
    return this.engine.pruneEvents(receivedBefore, protectAbove, limit);
  }

  async listDevices(
    afterId: string | undefined,
    limit: number,
    silentBefore?: { readonly before: string; readonly silent: boolean },
  ): Promise<DeviceRow[]> {
    return this.engine.listDevices(afterId, limit, silentBefore);
  }

  async deviceCounts(silentBefore: string): Promise<{ total: number; silent: number }> {
    return this.engine.deviceCounts(silentBefore);
  }

  async coverageCounts(): Promise<CoverageCounts[]> {
    return this.engine.coverageCounts();
  }

  async recordPolicyPublication(p: NewPolicyPublication): Promise<void> {
    this.engine.recordPolicyPublication(p);
  }

  async listPolicyPublications(limit: number, beforeId?: number): Promise<PolicyPublicationRow[]> {
    return this.engine.listPolicyPublications(limit, beforeId);
  }

  async healthy(): Promise<boolean> {
    return this.engine.healthy();
  }

  async close(): Promise<void> {
    this.engine.close();
  }
}

/**
 * The schema version `file` holds (0 when missing or unreadable); throws `GUARD_STORE_SCHEMA_NEWER`
 * when it is newer than COLLECTOR_MIGRATIONS.
 */
function refuseNewerSchema(file: string): number {
  if (!existsSync(file)) return 0;
  let version: number;
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      version = db.pragma('user_version', { simple: true }) as number;
    } finally {
      db.close();
    }
  } catch {
    return 0; // unreadable or corrupt: the engine's open reports or recovers it
  }
  if (version > COLLECTOR_MIGRATIONS.length)
    throw new GuardError(
      'GUARD_STORE_SCHEMA_NEWER',
      `the collector database ${file} has schema version ${version}, newer than this collector knows (${COLLECTOR_MIGRATIONS.length}); upgrade the collector, never downgrade the database`,
      { found: version, known: COLLECTOR_MIGRATIONS.length },
    );
  return version;
}
