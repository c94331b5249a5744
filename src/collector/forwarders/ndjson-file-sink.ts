/**
 * Owns the NDJSON file forwarder: appends one JSON object per line (the event as received, or its
 * OCSF mapping) to a file that Vector (`file` source), Fluent Bit (`tail`) and Filebeat (`filestream`)
 * tail. Rotation by size, the way those tailers expect: `out.ndjson` → `out.ndjson.1` → … →
 * `out.ndjson.<keep>` (the oldest is deleted), then a fresh `out.ndjson` is created; tailers follow
 * the renamed inode to its end, then pick up the new file.
 *
 * Each delivery is written in one `write` and `fdatasync`ed before the runner advances its cursor,
 * so a line acknowledged to the cursor is on disk. A line is never split across two files.
 */
import { mkdirSync } from 'node:fs';
import { type FileHandle, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { StoredEventRow } from '../collector-store.js';
import type { ForwarderSink } from './forwarder.js';

export interface NdjsonFileSinkOptions {
  /** The live file path; rotated files get `.1`, `.2`, … */
  readonly file: string;
  /** Rotate before the live file would exceed this many bytes. */
  readonly maxBytes: number;
  /** Rotated files kept (the live file not counted). */
  readonly keep: number;
  /** Maps a stored event to the object written (default: the event as received). */
  readonly transform?: (event: Record<string, unknown>) => unknown;
}

export class NdjsonFileSink implements ForwarderSink {
  readonly name = 'ndjson';
  private fh: FileHandle | null = null;
  private size = 0;
  private ino = 0;

  constructor(private readonly options: NdjsonFileSinkOptions) {
    mkdirSync(dirname(options.file), { recursive: true });
  }

  async deliver(events: readonly StoredEventRow[]): Promise<undefined> {
    const lines: string[] = [];
    for (const e of events) {
      if (this.options.transform) lines.push(JSON.stringify(this.options.transform(JSON.parse(e.body))));
      else lines.push(e.body);
    }
    // Write in pieces that fit the size cap, rotating between them (one piece per file at most).
    let i = 0;
    while (i < lines.length) {
      await this.ensureOpen();
      let chunk = '';
      let bytes = 0;
      while (i < lines.length) {
        const line = `${lines[i]}\n`;
        const n = Buffer.byteLength(line);
        if (this.size + bytes + n > this.options.maxBytes && this.size + bytes > 0) break;
        chunk += line;
        bytes += n;
        i++;
      }
      if (bytes > 0) {
        const fh = this.fh as FileHandle;
        await fh.write(chunk);
        await fh.datasync();
        this.size += bytes;
      }
      if (i < lines.length) await this.rotate();
    }
  }

  private async ensureOpen(): Promise<void> {
    if (this.fh) {
      // Moved or deleted by someone else (logrotate, an operator)? Then write to a new file at the
      // path instead of appending to a file nobody tails any more.
      const atPath = await stat(this.options.file).catch(() => null);
      if (atPath && atPath.ino === this.ino) return;
      await this.fh.close().catch(() => {});
      this.fh = null;
    }
    this.fh = await open(this.options.file, 'a', 0o640);
    const st = await this.fh.stat();
    this.size = st.size;
    this.ino = st.ino;
  }

  private async rotate(): Promise<void> {
    await this.fh?.close();
    this.fh = null;
    const { file, keep } = this.options;
    await rm(`${file}.${keep}`, { force: true });
    for (let n = keep - 1; n >= 1; n--) {
      const from = `${file}.${n}`;
      if (await exists(from)) await rename(from, `${file}.${n + 1}`);
    }
    await rename(file, `${file}.1`);
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = null;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
