/**
 * Owns turning one exec permission request (the kernel asking before a program runs, see
 * src/enforcement/exec-deny.ts) into a `ProcessObservation`, so the pre-exec verdict goes through
 * the same matcher and the same decision as everything else. This is the one place the facts of a
 * pre-exec observation are gathered; a new fact a rule can use (content markers of the file in
 * hand) is added here.
 *
 * What is known at exec-permission time:
 *   - the file being exec'd: its path as opened (a hard link keeps its own name; a symlink is
 *     already resolved to its target), hence `name` = its basename and `exe` = that path;
 *   - the file's identity (dev, inode, size, mtime, ctime) and, when a rule names hashes, its
 *     SHA-256, read through guardd's own descriptor of the file (/proc/self/fd/N: a plain open,
 *     which raises no exec permission event), bounded like every hash (exe-hash.ts);
 *   - when a rule names content markers, the markers found in the file, read the same way and
 *     bounded like every scan (content-markers.ts), so a renamed or padded copy is refused too;
 *   - the process asking: pid, parent, start time, real uid (→ owner), controlling terminal.
 * What is NOT known: the new program's argv (the kernel asks before the arguments are copied
 * into the new image; /proc/<pid>/cmdline still shows the old program), so argv rules and the
 * script-package rule cannot decide here: they act after exec (the process sensor's kill).
 */
import { basename } from 'node:path';
import type { FileIdentity } from './content-markers.js';
import type { Owner, ProcessObservation } from './observation.js';
import { readStat, readUid, ttyPath } from './process-sources/proc-files.js';

/** One exec permission request as the native listener reports it. */
export interface ExecRequest {
  /** The process that called execve (it keeps its old program if the exec is refused); 0 when outside guardd's pid namespace. */
  readonly pid: number;
  /** The file's path as opened (readlink of guardd's descriptor); '' when the kernel gave none. */
  readonly path: string;
  /** guardd's descriptor of the file while the request is open; -1 when it is already closed. */
  readonly fd: number;
  /**
   * The file's identity as the native listener fstat'ed it when the request came (the verdict is
   * cached under it): a scan of a file that no longer has it answers `changed`, not a verdict.
   */
  readonly identity?: FileIdentity;
}

export interface PreExecObservationDeps {
  /** Root of procfs (tests may pass another). */
  readonly procRoot: string;
  /** uid → owner (name, groups, home). */
  readonly owner: (uid: number) => Owner;
  /** SHA-256 of the file at a path, bounded (ExeHasher.hash), or null. Called only when `needsSha256`. */
  readonly hash: (path: string, uid: number) => Promise<string | null>;
  /** Whether any rule of the policy in force names hashes (Matcher.needs.sha256). */
  readonly needsSha256: boolean;
  /**
   * The content markers found in the file at a path (ContentMarkerScanner.scan with the policy's
   * automaton), or null when it could not be scanned. Absent when no rule names markers.
   */
  readonly markers?: (
    path: string,
    uid: number,
    expected?: FileIdentity,
  ) => Promise<readonly string[] | null>;
}

const UNKNOWN_OWNER: Owner = { uid: -1, user: null, groups: [], home: null };

/**
 * The observation for one exec request. `sha256` is read through `/proc/self/fd/<fd>` only when
 * the policy needs it and the descriptor is still open. Never rejects.
 */
export async function preExecObservation(
  req: ExecRequest,
  deps: PreExecObservationDeps,
): Promise<ProcessObservation> {
  const stat = req.pid > 0 ? readStat(deps.procRoot, req.pid) : null;
  const uid = req.pid > 0 ? readUid(deps.procRoot, req.pid) : null;
  const owner = uid === null ? UNKNOWN_OWNER : deps.owner(uid);
  const file = req.fd >= 0 ? `/proc/self/fd/${req.fd}` : null;
  const hashing = deps.needsSha256 && file ? deps.hash(file, owner.uid).catch(() => null) : null;
  const scanning =
    deps.markers && file ? deps.markers(file, owner.uid, req.identity).catch(() => null) : null;
  const sha256 = deps.needsSha256 ? await hashing : undefined;
  const contentMarkers = deps.markers ? await scanning : undefined;
  return {
    kind: 'process',
    pid: req.pid,
    ppid: stat?.ppid ?? 0,
    startTime: stat?.startTime ?? 0,
    name: req.path ? basename(req.path) : '',
    exe: req.path || null,
    argv: [],
    owner,
    tty: stat ? ttyPath(stat.ttyNr) : null,
    ...(sha256 !== undefined ? { sha256 } : {}),
    ...(contentMarkers !== undefined ? { contentMarkers } : {}),
  };
}
