/**
 * Owns the device identity file (`identity.json` in paths.state_dir, root only, 0600): this
 * machine's device id and the device token the collector issued for it. It is kept apart from the
 * state DB so that a lost or corrupt DB (moved aside and recreated by openDatabase) does not make
 * the machine a new device at the collector: guardd comes back with the same id, re-enrolls it
 * (a new enrollment generation resets the collector's per-enrollment seq guards, since the new
 * outbox counts seq from 1 again) and the collector keeps one device with one history.
 *
 * Why a file and not an id derived from /etc/machine-id: the token has to survive too and cannot
 * be derived; machine-id is copied along with cloned VM and golden images (one id for many
 * laptops); and macOS and Windows have no such file. A file the installer does not ship and guardd
 * writes once is unique per installation and the same on every platform.
 *
 * Writes are atomic (temp file in the same directory, fsync, rename, fsync of the directory), so a
 * crash leaves either the old or the new file. An unreadable or malformed file is treated as
 * absent, and the caller falls back to the legacy copy in the state DB.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** File name under paths.state_dir. */
export const IDENTITY_FILE = 'identity.json';

/** An identity file larger than this is not read (it holds three short strings). */
const MAX_IDENTITY_BYTES = 16 * 1024;

type IdentityRecord = Record<string, string | null>;

/**
 * The identity as a small key-value record (`device_id`, and the keys the collector client keeps
 * its token under). `set` writes the whole file atomically before it returns.
 */
export class DeviceIdentity {
  private record: IdentityRecord;

  private constructor(
    private readonly file: string,
    record: IdentityRecord,
    /** True once the file is known to hold `record` (read at open, or written). */
    private onDisk: boolean,
  ) {
    this.record = record;
  }

  /** Reads `<stateDir>/identity.json`; a missing, unreadable or malformed file reads as empty. */
  static open(stateDir: string): DeviceIdentity {
    const file = join(stateDir, IDENTITY_FILE);
    const record = readRecord(file);
    return new DeviceIdentity(file, record ?? {}, record !== null);
  }

  get path(): string {
    return this.file;
  }

  /** The value at `key` (same contract as StateStore.get). */
  get<T>(key: string): T | undefined {
    return Object.hasOwn(this.record, key) ? (this.record[key] as T) : undefined;
  }

  /** Stores `value` (a string or null) at `key`; durable when it returns. Unchanged values are not rewritten. */
  set(key: string, value: unknown): void {
    const v = typeof value === 'string' ? value : null;
    if (this.record[key] === v && this.onDisk) return;
    const next = { ...this.record, [key]: v };
    writeAtomic(this.file, `${JSON.stringify(next, null, 2)}\n`);
    this.record = next;
    this.onDisk = true;
  }
}

function readRecord(file: string): IdentityRecord | null {
  let text: string;
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_IDENTITY_BYTES) return null;
    text = buf.toString('utf8');
  } catch {
    return null;
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
    const out: IdentityRecord = {};
    for (const [k, x] of Object.entries(v)) if (typeof x === 'string' || x === null) out[k] = x;
    return out;
  } catch {
    return null;
  }
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    unlinkSync(tmp); // left by a crash of an earlier process with the same pid
  } catch {}
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw err;
  }
  try {
    const dfd = openSync(dirname(file), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // directories cannot be opened for fsync on Windows; the rename is still atomic there
  }
}
