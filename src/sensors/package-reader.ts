/**
 * Owns reading a package.json from disk as hostile input. Anything a user can write may sit in a
 * global node_modules: a huge file, a FIFO, a symlink to /dev/zero, invalid JSON, non-string
 * fields. The reader never waits on a FIFO, never reads more than the cap, never throws: it returns
 * either the few fields the install sensor needs or a stable `reason` the sensor counts as skipped.
 * `readPackageJsonAsync` (what the daemon uses) also survives a stalled mount (safe-read.ts).
 */
import * as nodeFs from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { ReadGate, readUserFile } from './safe-read.js';

/**
 * package.json files larger than this are refused: real ones are a few KiB (the largest on the
 * npm registry are well under 256 KiB); 1 MiB leaves room while bounding memory per read.
 */
export const MAX_PACKAGE_JSON_BYTES = 1024 * 1024;
/** npm's own limit on package name length. */
const MAX_NAME_CHARS = 214;
/** At most this many bin entries are kept (a real package has a handful). */
const MAX_BIN_ENTRIES = 64;

export type PackageReadFailure =
  | 'missing'
  | 'not_file'
  | 'too_large'
  | 'unreadable'
  | 'permission_denied'
  | 'not_json'
  | 'not_object'
  | 'no_name';

export interface PackageInfo {
  readonly name: string;
  /** A valid semver string, or null when missing or invalid. */
  readonly version: string | null;
  /** Bin name → script path relative to the package (from `bin`, string or object form). */
  readonly bin: Readonly<Record<string, string>>;
}

export type PackageReadResult =
  | { readonly ok: true; readonly info: PackageInfo; readonly mtimeMs: number; readonly size: number }
  | { readonly ok: false; readonly reason: PackageReadFailure; readonly detail?: string };

/** The fs calls the reader makes; injectable so tests can produce EACCES on a root-run CI. */
export type PackageReaderFs = Pick<typeof nodeFs, 'openSync' | 'fstatSync' | 'readSync' | 'closeSync'>;

// O_NOFOLLOW: a package.json that is a symlink is refused (it could point at /dev/zero or a secret).
// O_NONBLOCK: opening a FIFO must not hang the daemon. Both are 0 (absent) on Windows.
const OPEN_FLAGS =
  nodeFs.constants.O_RDONLY | (nodeFs.constants.O_NOFOLLOW ?? 0) | (nodeFs.constants.O_NONBLOCK ?? 0);

/** Install-tree reads in flight at once, and per owner: a stalled tree pins one pool thread. */
const INSTALL_READ_MAX_IN_FLIGHT = 2;
const INSTALL_READ_MAX_PER_KEY = 1;
/**
 * The gate of every call into users' install trees: the install sensor's (install-reads.ts) and
 * the quarantine's own looks there (one per process: the pool is shared).
 */
export const installReadGate = new ReadGate(
  'install_package_json',
  INSTALL_READ_MAX_IN_FLIGHT,
  INSTALL_READ_MAX_PER_KEY,
);

/**
 * Reads `<dir>/package.json` off the event loop through safe-read.ts (non-blocking open, no
 * link followed, regular files only, size cap, deadline, gated by `key`, the tree owner's uid).
 * What the daemon's loop uses. Never rejects; a stall is `unreadable` with detail `timeout`/`busy`.
 */
export async function readPackageJsonAsync(
  dir: string,
  key: string | number,
  gate: ReadGate = installReadGate,
): Promise<PackageReadResult> {
  const file = await readUserFile(join(dir, 'package.json'), { maxBytes: MAX_PACKAGE_JSON_BYTES, gate, key });
  if (!file.ok) {
    const reason: PackageReadFailure =
      file.reason === 'missing' || file.reason === 'too_large' || file.reason === 'permission_denied'
        ? file.reason
        : file.reason === 'not_file' || file.reason === 'symlink'
          ? 'not_file'
          : 'unreadable';
    return { ok: false, reason, detail: file.detail ?? file.reason };
  }
  const parsed = parseManifest(file.data.toString('utf8'));
  if (!parsed.ok) return parsed;
  return { ok: true, info: parsed.info, mtimeMs: file.facts.mtimeMs, size: file.facts.size };
}

/**
 * Reads `<dir>/package.json` synchronously. Never throws, never waits on a FIFO, but a stalled
 * mount blocks the caller, so guardd itself does not use it (it uses `readPackageJsonAsync`);
 * kept for one-shot tools and the table tests of the reader's answers.
 */
export function readPackageJson(dir: string, fs: PackageReaderFs = nodeFs): PackageReadResult {
  const file = join(dir, 'package.json');
  let fd: number;
  try {
    fd = fs.openSync(file, OPEN_FLAGS);
  } catch (err) {
    return { ok: false, reason: failureOf(err), detail: (err as NodeJS.ErrnoException).code ?? '' };
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return { ok: false, reason: 'not_file' };
    if (st.size > MAX_PACKAGE_JSON_BYTES)
      return { ok: false, reason: 'too_large', detail: `${st.size} bytes` };
    // Read up to cap + 1 regardless of the reported size: a file growing under us is still bounded.
    const buf = Buffer.alloc(Math.min(MAX_PACKAGE_JSON_BYTES + 1, Math.max(st.size, 0) + 1));
    let total = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, total, buf.length - total, null);
      if (n <= 0) break;
      total += n;
      if (total >= buf.length) break;
    }
    if (total > MAX_PACKAGE_JSON_BYTES) return { ok: false, reason: 'too_large' };
    const parsed = parseManifest(buf.subarray(0, total).toString('utf8'));
    if (!parsed.ok) return parsed;
    return { ok: true, info: parsed.info, mtimeMs: st.mtimeMs, size: total };
  } catch (err) {
    return { ok: false, reason: failureOf(err), detail: (err as NodeJS.ErrnoException).code ?? '' };
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // closing a descriptor we opened cannot meaningfully fail; nothing to do.
    }
  }
}

/** Parses package.json text into the fields the sensor needs. Exported for table tests. */
export function parseManifest(
  text: string,
): { ok: true; info: PackageInfo } | { ok: false; reason: PackageReadFailure } {
  let raw: unknown;
  try {
    raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch {
    return { ok: false, reason: 'not_json' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return { ok: false, reason: 'not_object' };
  const o = raw as Record<string, unknown>;
  const name = o.name;
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_CHARS)
    return { ok: false, reason: 'no_name' };
  const version = typeof o.version === 'string' ? semver.valid(o.version) : null;
  return { ok: true, info: { name, version, bin: binsOf(name, o.bin) } };
}

function binsOf(name: string, bin: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const add = (k: string, v: unknown): void => {
    // A bin name with a path separator (or `.`/`..`) would let a package name a link outside the
    // bin dir, whichever form named it. defineProperty: `__proto__` is a name like any other here,
    // kept as an own key instead of reaching the object's prototype setter.
    if (typeof v === 'string' && k && !/[\\/]|^\.\.?$/.test(k))
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  };
  if (typeof bin === 'string') {
    // String form: the bin is named after the package (without its scope).
    add(name.replace(/^@[^/]+\//, ''), bin);
  } else if (typeof bin === 'object' && bin !== null && !Array.isArray(bin)) {
    for (const [k, v] of Object.entries(bin).slice(0, MAX_BIN_ENTRIES)) add(k, v);
  }
  return out;
}

function failureOf(err: unknown): PackageReadFailure {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
  if (code === 'EACCES' || code === 'EPERM') return 'permission_denied';
  if (code === 'ELOOP' || code === 'EISDIR' || code === 'ENXIO') return 'not_file';
  return 'unreadable';
}
