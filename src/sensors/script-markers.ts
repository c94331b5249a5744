/**
 * Owns "which content markers are in the code an interpreter was told to run": for a process
 * whose executable is an interpreter (script-package.ts `isInterpreter`), the files on its
 * command line — the script argument and node's `--require`/`--import`/`--loader` paths
 * (`loadedFileArguments`) — are located as the process's user reaches them (relative to its
 * working directory, links followed component by component, every directory searchable by that
 * user: `ScriptPackageResolver.locate`) and scanned for the policy's markers
 * (`ContentMarkerScanner.scan` with the user's credentials: no link followed at the last
 * component, only what that user may read). This is what identifies a banned package's bundle
 * when it is copied, renamed, or its package.json edited, whatever the file is called.
 *
 * Every file is the user's: the resolver's and the scanner's gates and deadlines bound what a
 * FIFO or a stalled mount costs (a process matched without those markers), and at most
 * MAX_SCRIPT_FILES files are looked at per process. Code that is not a file on the command line
 * (`-e`, stdin, `/dev/fd/N`, a bare `--import pkg`, a `require()` inside another script) is out of
 * reach here (docs/process-detection.md).
 */
import { isAbsolute, resolve } from 'node:path';
import type { MarkerAutomaton } from '../policy/content-markers.js';
import type { ContentMarkerScanner } from './content-markers.js';
import { loadedFileArguments, type ScriptPackageResolver } from './script-package.js';

/**
 * Files scanned per process at most: a script and a few preloads. More preloads than this is
 * unusual; each costs a path walk and a scan of up to the scanner's byte bound.
 */
export const MAX_SCRIPT_FILES = 4;

/** Directories whose links mean something else in guardd than in the process (per-process views). */
const MAGIC_DIRS = ['/proc/', '/dev/'];

/** The interpreter process whose script files are scanned. */
export interface ScriptProcess {
  readonly exe: string | null;
  readonly name: string;
  readonly argv: readonly string[];
  readonly uid: number | null;
  /** Its working directory (read only when a path is relative), or null when unknown. */
  readonly cwd: () => string | null;
  /** Its real gid and supplementary groups (read only when a path is walked). */
  readonly groups: () => readonly number[] | null;
}

export interface ScriptMarkersResult {
  /** Marker keys found in any of the files; null when no file could be scanned. */
  readonly found: readonly string[] | null;
  /** Files located and handed to the scanner. */
  readonly files: number;
  /**
   * Some file got no answer in time (its walk or scan found no free slot, or ran out of time:
   * the user's own burst or stalled mount): `found` may be missing its markers, so ask again.
   */
  readonly stalled: boolean;
}

/**
 * Scans the files `proc` (an interpreter, as `interpreter` says) was told to run for
 * `automaton`'s markers. Never rejects; resolves within the resolver's and the scanner's
 * deadlines whatever the user's files do.
 */
export async function scanScriptFiles(
  interpreter: string,
  proc: ScriptProcess,
  resolver: ScriptPackageResolver,
  scanner: ContentMarkerScanner,
  automaton: MarkerAutomaton,
): Promise<ScriptMarkersResult> {
  const args = loadedFileArguments(interpreter, proc.argv, MAX_SCRIPT_FILES);
  if (args.length === 0) return { found: null, files: 0, stalled: false };
  let groups: readonly number[] | null | undefined;
  const cred = () => {
    if (groups === undefined) groups = proc.groups();
    return groups;
  };
  let workDir: string | null | undefined;
  const found = new Set<string>();
  let scanned = 0;
  let files = 0;
  let stalled = false;
  for (const arg of args) {
    // Longer than PATH_MAX or holding NUL: names no file.
    if (arg.length > 4096 || arg.includes('\u0000')) continue;
    let path = arg;
    if (!isAbsolute(arg)) {
      if (workDir === undefined) workDir = proc.cwd();
      if (!workDir) continue;
      path = resolve(workDir, arg);
    }
    // /dev/fd/N, /dev/stdin, /proc/self/…: links the kernel resolves per process, which guardd
    // would follow into its own descriptors. What the process reads there is out of reach.
    if (MAGIC_DIRS.some((d) => path.startsWith(d))) continue;
    const real = await resolver.locate(path, proc.uid, cred);
    if (real === 'stalled') stalled = true;
    if (real === null || real === 'stalled') continue;
    // The same through the user's own links (`~/x.js -> /proc/self/maps`, `-> /proc/<pid>/…` of
    // another user's process): the walk resolved them in guardd, whose open is not the user's.
    if (MAGIC_DIRS.some((d) => real.startsWith(d))) continue;
    files++;
    const r = await scanner.scan(real, automaton, proc.uid ?? -1, undefined, {
      uid: proc.uid,
      groups: cred(),
    });
    if (r.outcome === 'busy' || r.outcome === 'timeout') stalled = true;
    if (r.found === null) continue;
    scanned++;
    for (const k of r.found) found.add(k);
  }
  return { found: scanned > 0 ? [...found] : null, files, stalled };
}
