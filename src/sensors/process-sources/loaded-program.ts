/**
 * Owns finding the program a dynamic loader run directly is running (`ld-linux-x86-64.so.2 ./tool`,
 * Linux procfs). The kernel exec'd the loader, so the process's exe, comm and /proc/<pid>/exe are
 * the loader's: every rule on the executable (name, path, hash, content markers) would look at the
 * loader and never at the tool. The tool itself is only opened and mapped by the loader; this finds
 * it among the process's file mappings and hands back its path and a path that opens exactly the
 * mapped file (/proc/<pid>/map_files/<range>: a kernel-made link, like /proc/<pid>/exe, so a rename
 * or a swap of the user's path after the mapping changes nothing).
 *
 * Which mapping is the program: the loader's first non-option argument, resolved against the
 * process's cwd (lexically: the user's path is never stat'ed — it may lead onto a stalled mount of
 * theirs), when a mapping has exactly that path; otherwise the one executable mapping that is
 * neither the loader nor a shared library in a system library dir, when there is exactly one. A
 * program reached through a symlink while another non-system library is mapped is not identified
 * (left open: the observation stays the loader's), and argv is the process's own memory: a library
 * the user preloads can rewrite it to name another mapped file before it is read (left open).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { basename, isAbsolute, resolve } from 'node:path';
import { loadedProgram } from '../dynamic-loader.js';

/** Directories of system shared libraries (a mapping there named *.so* is a library, not the tool). */
const SYSTEM_LIB_DIRS = [
  '/lib/',
  '/lib64/',
  '/lib32/',
  '/usr/lib/',
  '/usr/lib64/',
  '/usr/lib32/',
  '/usr/libx32/',
];
/** /proc/<pid>/maps read at most (bytes): a loader process holds a few dozen mappings. */
const MAPS_MAX_BYTES = 1024 * 1024;

export interface MappedFile {
  /** Address range as /proc/<pid>/map_files names it (`start-end`). */
  readonly range: string;
  readonly path: string;
}

/** Executable file mappings of a maps text, first mapping of each path. */
export function executableMappings(maps: string): MappedFile[] {
  const out: MappedFile[] = [];
  const seen = new Set<string>();
  for (const line of maps.split('\n')) {
    // start-end perms offset dev inode path (path may hold spaces; absent for anonymous mappings)
    const m = /^([0-9a-f]+-[0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s+(\/.*)$/.exec(line);
    if (!m || (m[2] as string)[2] !== 'x' || m[3] === '0') continue;
    let path = m[4] as string;
    if (path.endsWith(' (deleted)')) path = path.slice(0, -10);
    if (seen.has(path)) continue;
    seen.add(path);
    out.push({ range: m[1] as string, path });
  }
  return out;
}

/** The mapping of the program a loader runs (module doc), or null. Pure. */
export function pickProgram(
  mappings: readonly MappedFile[],
  loaderExe: string,
  argv: readonly string[],
  cwd: string | null,
): MappedFile | null {
  const others = mappings.filter((m) => m.path !== loaderExe);
  // null also for `ld.so --list/--verify tool` (ldd): the tool is mapped, not run.
  const prog = loadedProgram(argv);
  if (prog === null) return null;
  const arg = prog.path;
  if (isAbsolute(arg) || cwd !== null) {
    const want = isAbsolute(arg) ? resolve(arg) : resolve(cwd as string, arg);
    const exact = others.find((m) => m.path === want);
    if (exact) return exact;
  }
  const candidates = others.filter(
    (m) => !(SYSTEM_LIB_DIRS.some((d) => m.path.startsWith(d)) && /\.so(\.|$)/.test(basename(m.path))),
  );
  return candidates.length === 1 ? (candidates[0] as MappedFile) : null;
}

/** /proc/<pid>/maps (of thread `tid` when given), bounded; null when unreadable. */
export function readMaps(taskDir: string): string | null {
  let fd = -1;
  try {
    fd = openSync(`${taskDir}/maps`, 'r');
    const buf = Buffer.alloc(MAPS_MAX_BYTES);
    let total = 0;
    for (let i = 0; i < 4096 && total < buf.length; i++) {
      const n = readSync(fd, buf, total, buf.length - total, null);
      if (n <= 0) break;
      total += n;
    }
    return buf.subarray(0, total).toString('utf8');
  } catch {
    return null;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}
