/**
 * Owns open marks: which files of banned npm packages guardd refuses to let anyone open, and the
 * record of each refusal. When the process path has identified a file as the script of a banned
 * package (a `script_packages` match acted on with a kill), the file itself gets a fanotify inode
 * mark with FAN_OPEN_PERM in the pre-exec listener's group (native/execperm markFile): from then on
 * every open of it by any process but guardd and its children is answered FAN_DENY by the native
 * thread at once, without JS, so node fails with EPERM before a line of the banned code runs,
 * however it was asked to load it (`import()` from `-e`, `require()` from another script, stdin
 * redirected from it, `/dev/fd/N`). It is the same idea as fapolicyd's for interpreters, on the
 * files guardd has identified rather than on every open (no mount-wide open mark: unmarked files
 * never wait on guardd). The package's `bin` targets (regular files inside its root, package.json
 * read again through safe-read.ts) are marked with it.
 *
 * A mark denies the file to everyone, so it is added only when the decision holds for everyone:
 * an enforced `block` rule without exceptions that matched on `script_package`, under the policy in
 * force (local mode and shadow policies never reach here: the listener is off in local mode and the
 * shadow never acts). And only on a file the user cannot turn into somebody else's:
 *   - the walk that identified it gave its identity (dev, ino); the native side opens it from its
 *     mount point down with no symlink, no magic link and no other mount on the way, O_PATH first,
 *     and marks only if the descriptor is that regular file and has exactly one link (a hard link
 *     to npm's own file would otherwise deny npm machine-wide);
 *   - only on a file owned by whoever owns the package.json that named the package: a user's own
 *     package.json is believed for their own process (script-package.ts), even beside files that
 *     are not theirs (in /tmp, root's or another user's): their `node <that file>` is killed, but
 *     the file is not marked (`foreign`), or anyone could deny anyone's file machine-wide;
 *   - only on a file system the listener marked (local, not network or FUSE: the same rule as for
 *     execs), never under guardd's own directories.
 * At most MAX_OPEN_MARKS files are marked (the kernel's fs.fanotify.max_user_marks is shared by
 * every root group): adding one more removes the oldest. Files owned by one user other than root
 * hold at most MAX_OPEN_MARKS_PER_OWNER of them (that user's oldest goes first), so a user who
 * plants fake packages named like a banned one cannot push out the marks of root's global
 * packages or of other users' files. A mark the eviction could not reach any
 * more (the file was renamed or replaced) stays in the kernel but out of the table, so it allows;
 * after MAX_OPEN_MARKS of those, every kernel mark is flushed and the table's files are marked
 * again (a user makes orphans at will by renaming their own marked files: that must not take the
 * marks of root's or other users' files with them). A new policy flushes every mark (files are
 * marked again as they are identified again); stopping guardd closes the group, which removes them.
 */
import { isAbsolute, relative, resolve, sep } from 'node:path';
import type { Logger } from '../common/logger.js';
import type { Decision, Matcher } from '../policy/matcher.js';
import type { Owner, ProcessObservation, ScriptPackage } from '../sensors/observation.js';
import { readPackageJsonAsync } from '../sensors/package-reader.js';
import { readCmdline, readLink, readStat, readUid, ttyPath } from '../sensors/process-sources/proc-files.js';
import { lstatUserPath, ReadGate } from '../sensors/safe-read.js';
import type { DeniedFile, Enforcer } from './enforcer.js';
import { assertNotProtected } from './owner-fs.js';
import { APP_DIR } from './quarantine-store.js';

/** Files marked at most (native/execperm MAX_FILE_MARKS is the same). */
export const MAX_OPEN_MARKS = 1024;
/** Marks on files of one owner other than root, at most. */
export const MAX_OPEN_MARKS_PER_OWNER = 64;
/** `bin` targets of one package marked at most (besides the script itself). */
const MAX_BIN_MARKS = 8;
/** (pid, start time, file) refusals remembered so each is reported once; bounded. */
const REPORTED_MAX = 4096;

/** The native side of open marks (native/execperm/execperm.c). */
export interface OpenMarkAddon {
  markFile(mountPoint: string, relPath: string, dev: number, ino: number): string;
  unmarkFile(mountPoint: string, relPath: string, dev: number, ino: number): string;
  flushFileMarks(): void;
}

/** One mount of /proc/self/mountinfo as the listener sees it. */
export interface MountView {
  readonly mountPoint: string;
  /** Whether the listener marked this mount's file system for execs (local, not network/FUSE). */
  readonly attached: boolean;
}

/** What the native thread reports for a refused open. */
export interface OpenDeniedEvent {
  readonly pid: number;
  /** The file's path as guardd's descriptor of it reads. */
  readonly path: string;
  readonly identity: { readonly dev: number; readonly ino: number; readonly size: number };
}

export interface OpenMarksOptions {
  readonly addon: OpenMarkAddon;
  readonly logger: Logger;
  /** The matcher in force (a decision of another policy is not marked). */
  readonly matcher: () => Matcher | null;
  /** The mounts in mountinfo order (later mounts over earlier ones); empty before the listener started. */
  readonly mounts: () => readonly MountView[];
  /**
   * guardd's own directories (state, sockets, install): nothing under them is marked, nor under
   * the system directories owner-fs.ts protects (a package tree below them is not a system file).
   */
  readonly protectedDirs: readonly string[];
  /** Records a refusal (Enforcer.denied). */
  readonly denied: Enforcer['denied'];
  /** uid → owner (name, groups, home). */
  readonly owner: (uid: number) => Owner;
  /** Root of procfs (tests may pass another). */
  readonly procRoot?: string;
  /** False when `enforcement.open_marks` is off: nothing is ever marked. Default true. */
  readonly enabled?: boolean;
}

interface Marked {
  /** The file's owner as the walk saw it. */
  readonly owner: number;
  readonly mountPoint: string;
  readonly rel: string;
  readonly dev: number;
  readonly ino: number;
  readonly decision: Decision;
  readonly pkg: ScriptPackage;
}

export interface OpenMarksStatus {
  /** `off` when `enforcement.open_marks` is off. */
  readonly state: 'on' | 'off';
  /** Files marked now. */
  readonly marked: number;
  /** Marks added. */
  readonly added: number;
  /** Files not marked, by why (foreign, linked, not_file, changed, no_mount, protected, full, error:…). */
  readonly refused: Readonly<Record<string, number>>;
  /** Oldest marks removed to make room, and those whose file could not be reached to remove. */
  readonly evicted: number;
  readonly orphaned: number;
  /** Times every mark was dropped (new policy, or too many orphaned marks). */
  readonly flushes: number;
  /** Refused opens recorded as events (once per process and file). */
  readonly reported: number;
}

export class OpenMarks {
  private readonly marked = new Map<string, Marked>();
  private readonly reportedKeys = new Set<string>();
  private readonly refused: Record<string, number> = {};
  private added = 0;
  private evicted = 0;
  private orphaned = 0;
  private orphanedSinceFlush = 0;
  private flushes = 0;
  private reported = 0;
  private active = false;
  /** Admission of the package.json and `bin` target reads (one at a time, one per owner). */
  private readonly gate = new ReadGate('open_marks', 1, 1);

  constructor(private readonly options: OpenMarksOptions) {}

  /** The listener started: marks may be added from now on (unless open marks are off). */
  start(): void {
    this.active = this.options.enabled ?? true;
  }

  /** The listener stopped: closing its group removed every mark. */
  stop(): void {
    this.active = false;
    this.marked.clear();
    this.reportedKeys.clear();
  }

  /** A new policy: every mark goes (files are marked again when identified again). */
  policyChanged(): void {
    if (this.active && this.marked.size > 0) this.flush();
    this.marked.clear();
    this.reportedKeys.clear();
  }

  /**
   * A process is being blocked with `decision`: when that decision holds for everyone (see the
   * module comment), mark the script file the observation identified, on the next turn of the
   * event loop (after the kill's first steps), then the package's `bin` targets. Never throws.
   */
  consider(obs: ProcessObservation, decision: Decision): void {
    if (this.active) setImmediate(() => this.considerNow(obs, decision));
  }

  /**
   * `consider`, now: the script file at once; the `bin` targets once package.json has been read
   * off the event loop (the returned promise; it never rejects).
   */
  considerNow(obs: ProcessObservation, decision: Decision): Promise<void> {
    const pkg = obs.scriptPackage;
    if (!pkg?.scriptFile || !this.holds(decision)) return Promise.resolve();
    const { dev, ino } = pkg.scriptFile;
    const key = `${dev}:${ino}`;
    if (this.marked.has(key)) return Promise.resolve();
    this.markSafely(key, pkg, decision);
    return this.markBins(pkg, decision).catch((err: unknown) => {
      this.options.logger.error({ err, package: pkg.name }, 'marking bin targets failed');
    });
  }

  /** Whether `decision` is one a mark may carry out (for everyone, under the policy in force). */
  private holds(decision: Decision): boolean {
    const matcher = this.options.matcher();
    return (
      this.active &&
      matcher !== null &&
      decision.reason === 'script_package' &&
      decision.rule.action === 'block' &&
      decision.mode === 'enforce' &&
      decision.policyVersion === matcher.policyVersion &&
      !matcher.exceptedRules.has(decision.rule.id)
    );
  }

  private markSafely(key: string, pkg: ScriptPackage, decision: Decision): void {
    try {
      this.mark(key, pkg, decision);
    } catch (err) {
      this.count('error');
      this.options.logger.error({ err, path: pkg.script }, 'open mark failed');
    }
  }

  /**
   * The package's `bin` targets (package.json read again through safe-read.ts, its name still the
   * package's), each a regular file lexically inside the package root (the native open refuses a
   * symlink anywhere on the way, so it is physically there too), at most MAX_BIN_MARKS.
   */
  private async markBins(pkg: ScriptPackage, decision: Decision): Promise<void> {
    const owner = pkg.scriptFile?.owner ?? -1;
    const read = await readPackageJsonAsync(pkg.root, owner, this.gate);
    if (!read.ok || read.info.name !== pkg.name) return;
    let n = 0;
    for (const target of Object.values(read.info.bin)) {
      if (n >= MAX_BIN_MARKS) break;
      const path = resolve(pkg.root, target);
      if (path === pkg.root || !within(path, pkg.root)) continue;
      const st = await lstatUserPath(path, this.gate, owner);
      if (!st.ok || !st.value.isFile() || !this.holds(decision)) continue;
      n++;
      const key = `${st.value.dev}:${st.value.ino}`;
      if (this.marked.has(key)) continue;
      this.markSafely(
        key,
        {
          ...pkg,
          script: path,
          scriptFile: {
            dev: st.value.dev,
            ino: st.value.ino,
            owner: st.value.uid,
            packageOwner: pkg.scriptFile?.packageOwner ?? -1,
          },
        },
        decision,
      );
    }
  }

  private mark(key: string, pkg: ScriptPackage, decision: Decision): void {
    const file = pkg.scriptFile;
    const mount = mountOf(this.options.mounts(), pkg.script);
    let why: string | null = null;
    if (!file || !isAbsolute(pkg.script) || pkg.script.includes('\u0000')) why = 'not_file';
    else if (file.owner !== file.packageOwner) why = 'foreign';
    else if (this.isProtected(pkg.script)) why = 'protected';
    else if (!mount?.attached) why = 'no_mount';
    if (why !== null || !file || !mount) {
      this.count(why ?? 'not_file');
      return;
    }
    const rel = relative(mount.mountPoint, pkg.script);
    if (file.owner !== 0 && this.ownedBy(file.owner) >= MAX_OPEN_MARKS_PER_OWNER)
      this.evictOldest(file.owner);
    else if (this.marked.size >= MAX_OPEN_MARKS) this.evictOldest();
    const r = this.options.addon.markFile(mount.mountPoint, rel, file.dev, file.ino);
    if (r === 'marked' || r === 'already') {
      this.added++;
      this.marked.set(key, {
        owner: file.owner,
        mountPoint: mount.mountPoint,
        rel,
        dev: file.dev,
        ino: file.ino,
        decision,
        pkg,
      });
      this.options.logger.info(
        { path: pkg.script, package: pkg.name, rule: decision.rule.id },
        'open mark added',
      );
      return;
    }
    this.count(r);
    this.options.logger.info({ path: pkg.script, package: pkg.name, why: r }, 'not marked');
  }

  private isProtected(path: string): boolean {
    try {
      assertNotProtected(path, [APP_DIR, ...this.options.protectedDirs], path);
      return false;
    } catch {
      return true;
    }
  }

  private ownedBy(owner: number): number {
    let n = 0;
    for (const m of this.marked.values()) if (m.owner === owner) n++;
    return n;
  }

  /** Removes the oldest mark (of `owner`'s files when given). */
  private evictOldest(owner?: number): void {
    let key: string | undefined;
    let m: Marked | undefined;
    for (const [k, v] of this.marked) {
      if (owner !== undefined && v.owner !== owner) continue;
      key = k;
      m = v;
      break;
    }
    if (key === undefined || m === undefined) return;
    this.marked.delete(key);
    this.evicted++;
    let r: string;
    try {
      r = this.options.addon.unmarkFile(m.mountPoint, m.rel, m.dev, m.ino);
    } catch {
      r = 'error';
    }
    if (r === 'removed') return;
    // Still in the kernel, no longer in the table: it allows, but holds one of the group's marks.
    this.orphaned++;
    if (++this.orphanedSinceFlush >= MAX_OPEN_MARKS) this.rebuild();
  }

  /** Drops every kernel mark (the orphans with them), then marks the table's files again. */
  private rebuild(): void {
    const kept = [...this.marked];
    this.flush();
    for (const [key, m] of kept) {
      let r: string;
      try {
        r = this.options.addon.markFile(m.mountPoint, m.rel, m.dev, m.ino);
      } catch {
        r = 'error';
      }
      if (r === 'marked' || r === 'already') this.marked.set(key, m);
      else this.count(r);
    }
  }

  private flush(): void {
    try {
      this.options.addon.flushFileMarks();
    } catch (err) {
      this.options.logger.error({ err }, 'flushing open marks failed');
    }
    this.flushes++;
    this.orphanedSinceFlush = 0;
    this.marked.clear();
  }

  private count(why: string): void {
    this.refused[why] = (this.refused[why] ?? 0) + 1;
  }

  /**
   * The native thread refused an open of a marked file: record it as one `process.denied` event
   * per process and file, with the rule that marked it. Resolves, never rejects.
   */
  async onDenied(ev: OpenDeniedEvent): Promise<void> {
    const key = `${ev.identity.dev}:${ev.identity.ino}`;
    const m = this.marked.get(key);
    if (!m) return; // flushed since (a new policy): the refusal was for the old one
    const procRoot = this.options.procRoot ?? '/proc';
    const stat = ev.pid > 0 ? readStat(procRoot, ev.pid) : null;
    const seen = `${ev.pid}:${stat?.startTime ?? 0}:${key}`;
    if (this.reportedKeys.has(seen)) return;
    if (this.reportedKeys.size >= REPORTED_MAX) this.reportedKeys.clear();
    this.reportedKeys.add(seen);
    const uid = ev.pid > 0 ? readUid(procRoot, ev.pid) : null;
    const exe = ev.pid > 0 ? readLink(procRoot, ev.pid, 'exe') : null;
    const argv = ev.pid > 0 ? (readCmdline(procRoot, ev.pid)?.argv ?? []) : [];
    const obs: ProcessObservation = {
      kind: 'process',
      pid: ev.pid,
      ppid: stat?.ppid ?? 0,
      startTime: stat?.startTime ?? 0,
      name: stat?.comm ?? '',
      exe,
      argv,
      owner: uid === null ? { uid: -1, user: null, groups: [], home: null } : this.options.owner(uid),
      tty: stat ? ttyPath(stat.ttyNr) : null,
      scriptPackage: m.pkg,
    };
    const file: DeniedFile = { dev: ev.identity.dev, ino: ev.identity.ino, size: ev.identity.size };
    this.reported++;
    await this.options.denied(obs, m.decision, {
      latencyMs: 0,
      cached: true,
      fileKey: key,
      file,
      opened: ev.path || m.pkg.script,
    });
  }

  status(): OpenMarksStatus {
    return {
      state: (this.options.enabled ?? true) ? 'on' : 'off',
      marked: this.marked.size,
      added: this.added,
      refused: { ...this.refused },
      evicted: this.evicted,
      orphaned: this.orphaned,
      flushes: this.flushes,
      reported: this.reported,
    };
  }
}

/** The mount `path` lies on: the longest mount point containing it, the later of two equal ones. */
export function mountOf(mounts: readonly MountView[], path: string): MountView | null {
  let best: MountView | null = null;
  for (const m of mounts) {
    if (!within(path, m.mountPoint)) continue;
    if (best === null || m.mountPoint.length >= best.mountPoint.length) best = m;
  }
  return best;
}

/** Whether `path` is `dir` or below it (both absolute, normalised). */
function within(path: string, dir: string): boolean {
  if (dir === '/' || dir === '') return path.startsWith('/');
  const d = dir.endsWith(sep) ? dir.slice(0, -1) : dir;
  return path === d || path.startsWith(`${d}${sep}`);
}
