/**
 * Owns the NDJSON file forwarder: appends one JSON object per line (the event as received, or its
 * OCSF or ECS mapping) to a file that Vector (`file` source), Fluent Bit (`tail`) and Filebeat (`filestream`)
 * tail. Rotation by size, the way those tailers expect: `out.ndjson` → `out.ndjson.1` → … →
 * `out.ndjson.<keep>` (the oldest is deleted), then a fresh `out.ndjson` is created; tailers follow
 * the renamed inode to its end, then pick up the new file.
 *
 * Lines are at most NDJSON_MAX_LINE_BYTES: a longer event has its command line cut (line-fit.ts).
 *
 * Each delivery is written in one `write` and `fdatasync`ed before the runner advances its cursor,
 * so a line acknowledged to the cursor is on disk. A line is never split across two files.
 *
 * Only whole lines: a write that fails part-way (disk full, I/O error) is cut back to where it
 * started before the error is returned, so the retry does not append to half a line. A crash
 * (kill -9, power loss) in the middle of a write can still leave a torn last line; the first open
 * after a restart finds it (the file does not end in a newline), cuts it off and rotates, so a
 * tailer that already read the torn bytes never sees them joined to the next line. The events of
 * that write were not acknowledged to the cursor, so they are written again: the output holds
 * every event, some twice (same `id`), and every line parses.
 */
import { mkdirSync } from 'node:fs';
import { type FileHandle, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { StoredEventRow } from '../collector-store.js';
import type { ForwarderSink } from './forwarder.js';
import { fitLine } from './line-fit.js';

export interface NdjsonFileSinkOptions {
  /** The live file path; rotated files get `.1`, `.2`, … */
  readonly file: string;
  /** Rotate before the live file would exceed this many bytes. */
  readonly maxBytes: number;
  /** Rotated files kept (the live file not counted). */
  readonly keep: number;
  /** Maps a stored event to the object written (default: the event as received). */
  readonly transform?: (event: Record<string, unknown>) => unknown;
  /** Longest line written, newline excluded (default NDJSON_MAX_LINE_BYTES); longer command lines are cut. */
  readonly maxLineBytes?: number;
}

/**
 * Longest line the sink writes (bytes, without the newline): 64 KiB. Vector's `file` source
 * accepts 100 KiB by default (`max_line_bytes`); Fluent Bit's `tail` needs `Buffer_Max_Size` at
 * least this (its 32k default stops the file being tailed); Filebeat takes up to 10 MiB. Events
 * are longer only through their command line, which line-fit.ts cuts (argv summarised, or the
 * OCSF cmd_line / ECS process.args cut and marked truncated).
 */
export const NDJSON_MAX_LINE_BYTES = 64 * 1024;

export class NdjsonFileSink implements ForwarderSink {
  readonly name = 'ndjson';
  private fh: FileHandle | null = null;
  private size = 0;
  private ino = 0;
  /** Torn last lines cut off at open since this sink was created (crash recovery). */
  tornLinesRepaired = 0;

  constructor(private readonly options: NdjsonFileSinkOptions) {
    mkdirSync(dirname(options.file), { recursive: true });
  }

  async deliver(events: readonly StoredEventRow[]): Promise<undefined> {
    const max = this.options.maxLineBytes ?? NDJSON_MAX_LINE_BYTES;
    const lines: string[] = [];
    for (const e of events) {
      if (this.options.transform) lines.push(fitLine(this.options.transform(JSON.parse(e.body)), max));
      else lines.push(Buffer.byteLength(e.body) <= max ? e.body : fitLine(JSON.parse(e.body), max));
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
        try {
          await writeAll(fh, Buffer.from(chunk));
          await fh.datasync();
        } catch (err) {
          // never leave part of a line behind for the retry to append to
          await fh.truncate(this.size).catch(() => {});
          await fh.close().catch(() => {});
          this.fh = null;
          throw err;
        }
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
    // a+: appends, and reads for the torn-line check
    this.fh = await open(this.options.file, 'a+', 0o640);
    const st = await this.fh.stat();
    this.size = st.size;
    this.ino = st.ino;
    const whole = await wholeLinesEnd(this.fh, st.size);
    if (whole < st.size) {
      // a torn last line (crash mid-write): drop it, then start a new file so a tailer holding
      // the torn bytes in its buffer never glues them to the next line
      await this.fh.truncate(whole);
      this.tornLinesRepaired++;
      this.size = whole;
      if (whole > 0) {
        await this.rotate();
        await this.ensureOpen();
      }
    }
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

/** Writes all of `buf` (a write to a file may be short). */
async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    if (bytesWritten <= 0) throw new Error('write made no progress');
    off += bytesWritten;
  }
}

/** Bytes read backwards per step when looking for the last newline of a torn file. */
const TAIL_SCAN_CHUNK_BYTES = 64 * 1024;

/** Offset just past the last `\n` of the first `size` bytes (0 when there is none). */
async function wholeLinesEnd(fh: FileHandle, size: number): Promise<number> {
  if (size === 0) return 0;
  const last = Buffer.alloc(1);
  await fh.read(last, 0, 1, size - 1);
  if (last[0] === 0x0a) return size;
  const buf = Buffer.alloc(TAIL_SCAN_CHUNK_BYTES);
  let end = size - 1;
  while (end > 0) {
    const start = Math.max(0, end - buf.length);
    const { bytesRead } = await fh.read(buf, 0, end - start, start);
    const nl = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (nl >= 0) return start + nl + 1;
    end = start;
  }
  return 0;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
