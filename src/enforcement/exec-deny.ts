/**
 * Owns pre-exec deny on Linux: the JS side of the native listener native/execperm (fanotify
 * FAN_OPEN_EXEC_PERM). The kernel asks before any marked file is exec'd; the native thread answers
 * repeats from its verdict cache and guardd's own children at once, and hands every other request
 * here: build the observation (src/sensors/pre-exec-observation.ts), take the same pure verdict as
 * every other path (decide.ts), answer the kernel (`block` → deny, anything else → allow), then
 * act: a refused exec is recorded by the enforcer as one `process.denied` event per attempt and
 * the user is told why.
 *
 * Safety, because an unanswered request blocks an exec machine-wide:
 *   - the native thread answers every request within the deadline even when this event loop is
 *     busy or stopped (FAN_ALLOW, counted as a deadline miss); a verdict that comes late still fills
 *     the cache for the next exec of the same file;
 *   - an allow for a file written while its exec waited (a writer's open broke the read lease the
 *     native thread holds while it waits, or its identity moved between request and answer) is
 *     turned into a refusal by the native thread: what was read here is of no version the exec
 *     would run;
 *   - refusals the native thread answers itself (from its cache, open marks) are reported here
 *     within a bound of number and rate, so a user's loop of them cannot crowd the decisions out
 *     of the queue they share (a decision dropped or late is an allow);
 *   - if guardd dies, the kernel closes the fanotify descriptor and allows every pending request;
 *   - only local, non-network, non-FUSE file systems are marked (MOUNT_SKIP_FSTYPES): reading a
 *     file there (for its hash) can wait on a remote server or on a user's own FUSE daemon, and a
 *     FUSE daemon that execs would wait on itself;
 *   - a verdict that depends on who runs the program (a rule with exceptions, a match not acted on)
 *     is never cached: the cache key is the file (identity + path), not the user;
 *   - an allow is cached (by the native thread) only for a file whose ctime has settled
 *     (src/sensors/file-facts.ts): coarse timestamps let a file's owner put other bytes under a
 *     younger identity.
 *
 * The same fanotify group also carries open marks on banned packages' script files (FAN_OPEN_PERM
 * on those inodes only, answered by the native thread from its table): which files, and the
 * record of each refused open, are open-marks.ts's; this listener owns the group, hands it the
 * mount table and its `open_denied` reports, and flushes it on a new policy.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { GuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { parseMountinfo } from '../common/mountinfo.js';
import { nativeAddonPath } from '../common/native-addon.js';
import type { Decision, Matcher } from '../policy/matcher.js';
import { cacheableMount } from '../sensors/mount-trust.js';
import type { ProcessObservation } from '../sensors/observation.js';
import type { ExecRequest } from '../sensors/pre-exec-observation.js';
import type { Verdict } from './decide.js';
import type { DeniedFile, Enforcer } from './enforcer.js';
import { type MountView, OpenMarks, type OpenMarksStatus } from './open-marks.js';

/** The addon (where: src/common/native-addon.ts). */
export const EXECPERM_ADDON_PATH = nativeAddonPath('execperm');

/** File identity as the native thread read it from the request's descriptor. */
export interface ExecIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  /** The unique id of the mount it was reached through (Linux 6.8+; 0 before): mount-trust.ts. */
  readonly mount: number;
  /** The verdict cache key: identity, mount and a hash of the path it was opened by. */
  readonly key: string;
}

/** What the native thread posts to JS. */
export type ExecPermEvent =
  | ({
      readonly kind: 'decide';
      readonly id: number;
      readonly identity: ExecIdentity;
      /** The mount's id in /proc/self/mountinfo (held by the request's descriptor); -1 unknown. */
      readonly mountId: number;
    } & ExecRequest)
  | ({ readonly kind: 'denied_cached'; readonly id: number; readonly identity: ExecIdentity } & ExecRequest)
  | { readonly kind: 'mounts_changed' }
  | ({ readonly kind: 'open_denied'; readonly identity: ExecIdentity } & ExecRequest);

/** The native thread's counters since start. */
export type ExecPermCounters = {
  /** Exec permission requests read from the kernel. */
  events: number;
  /** Answered from the verdict cache (no JS). */
  cache_hits: number;
  allowed: number;
  denied: number;
  /** Answered FAN_ALLOW because JS had not decided within the deadline. */
  deadline_misses: number;
  /** Kernel queue overflow, a full pending table or a full JS queue: allowed at once. */
  overflow: number;
  /** Requests from guardd and its children, allowed at once. */
  self_allowed: number;
  /** Requests handed to JS to decide. */
  posted: number;
  /** JS verdicts that came after the deadline (they still fill the cache). */
  late_responses: number;
  /** Requests whose file could not be stat'ed (allowed). */
  unreadable: number;
  /** Changes of guardd's mount table seen by the native thread. */
  mount_changes: number;
  /** …folded into a notice JS had not taken yet (it reads the whole table when it does). */
  mount_notices_folded: number;
  /** Requests waiting for JS right now. */
  waiting: number;
  /** How long ago the native thread last went round its loop (ms); ≤ 1 s when it is healthy. */
  loop_age_ms: number;
  /** Open permission requests on files with an open mark (open-marks.ts). */
  open_events: number;
  /** …answered FAN_DENY. */
  open_denied: number;
  /** …from guardd or its children, allowed. */
  open_self_allowed: number;
  /**
   * Refused opens not reported to JS (128 refusal reports already waiting for it or 500 a second
   * already posted — or the opener's user's half of either — or its queue was full).
   */
  open_reports_dropped: number;
  /**
   * Execs denied from the verdict cache and not reported to JS, for the same bounds: a user's loop
   * of refused execs must not crowd out the next decision (it would be allowed, as overflow or at
   * the deadline). Still refused and counted in `denied`.
   */
  deny_reports_dropped: number;
  /**
   * Execs refused because their file was written while the exec waited for its decision (a writer
   * broke the read lease held meanwhile, the file was open for writing at the request, or its
   * identity moved between the request and the answer): what was read of it is of no version the
   * exec would run.
   */
  changed_denied: number;
  /** Files with an open mark now. */
  file_marks: number;
  /**
   * Files whose execs the kernel allows without asking now (kernel-cached allows: an inode mark
   * ignoring FAN_OPEN_EXEC_PERM on a root-only file allowed twice from the cache; native/execperm).
   * Emptied by a new policy.
   */
  ignore_marks: number;
  /** Kernel-cached allows added since start. */
  ignore_marks_added: number;
  /** Kernel-cached allows the kernel refused to add (its mark limit): those files keep asking. */
  ignore_mark_errors: number;
  /**
   * Kernel-cached allows taken back because a writer of the file closed it (a write through a
   * shared mapping or by AIO does not make the kernel drop the mark itself).
   */
  ignore_marks_dropped: number;
};

/** The native addon's surface (native/execperm/execperm.c). */
export interface ExecPermAddon {
  /**
   * `skipFstypes`: MOUNT_SKIP_RULES, the mounts a kernel-cached allow's path walk never stats (a
   * user's FUSE daemon could hold the thread); without it the walk crosses no mount at all.
   */
  start(
    options: { deadlineMs: number; skipFstypes?: readonly string[] },
    onEvent: (ev: ExecPermEvent) => void,
  ): void;
  mark(path: string, kind: 'filesystem' | 'mount'): void;
  unmark(path: string, kind: 'filesystem' | 'mount'): void;
  markFile(mountPoint: string, relPath: string, dev: number, ino: number): string;
  unmarkFile(mountPoint: string, relPath: string, dev: number, ino: number): string;
  flushFileMarks(): void;
  respond(id: number, allow: boolean, cacheable: boolean): 'answered' | 'late' | 'unknown';
  setGeneration(n: number): void;
  counters(): ExecPermCounters;
  stop(): void;
}

/** Loads the addon; throws GuardError GUARD_EXEC_DENY_UNAVAILABLE when not on Linux or it does not load. */
export function loadExecPermAddon(path: string = EXECPERM_ADDON_PATH): ExecPermAddon {
  if (process.platform !== 'linux')
    throw new GuardError('GUARD_EXEC_DENY_UNAVAILABLE', 'pre-exec deny needs Linux fanotify');
  try {
    return createRequire(import.meta.url)(path) as ExecPermAddon;
  } catch (err) {
    throw new GuardError(
      'GUARD_EXEC_DENY_UNAVAILABLE',
      `execperm addon did not load: ${(err as Error).message}`,
      {
        path,
      },
    );
  }
}

/**
 * Network (nfs, cifs, smb3, 9p, ceph, …) and FUSE (fuse.*, sshfs) file system types: never
 * marked, and listed in status as skipped: reading the file for its verdict can wait on a server
 * or a user's daemon.
 */
const MOUNT_SKIP_REMOTE: readonly string[] = [
  'nfs',
  'nfs4',
  'cifs',
  'smb3',
  'smbfs',
  '9p',
  'ceph',
  'glusterfs',
  'afs',
  'lustre',
  'gfs2',
  'ocfs2',
  'davfs',
  'fuse',
  'fuseblk',
  'sshfs',
  'virtiofs',
];

/** Pseudo file systems: hold no programs to exec; skipped without being listed in status. */
const MOUNT_SKIP_QUIET: ReadonlySet<string> = new Set([
  'proc',
  'sysfs',
  'cgroup',
  'cgroup2',
  'devpts',
  'securityfs',
  'debugfs',
  'tracefs',
  'pstore',
  'bpf',
  'mqueue',
  'hugetlbfs',
  'configfs',
  'fusectl',
  'binfmt_misc',
  'autofs',
  'efivarfs',
  'nsfs',
  'rpc_pipefs',
  'selinuxfs',
]);

/** File system types never marked (remote, FUSE and pseudo). */
export const MOUNT_SKIP_FSTYPES: ReadonlySet<string> = new Set([...MOUNT_SKIP_REMOTE, ...MOUNT_SKIP_QUIET]);

/**
 * The skipped types as the native thread takes them (start's `skipFstypes`): MOUNT_SKIP_FSTYPES,
 * and `fuse.` — an entry ending in `.` names every type it begins (sshfs is `fuse.sshfs`). The
 * thread never stats a directory on such a mount when it walks a path for a kernel-cached allow.
 */
export const MOUNT_SKIP_RULES: readonly string[] = [...MOUNT_SKIP_FSTYPES, 'fuse.'];

/** Whether a file system type is skipped (MOUNT_SKIP_RULES). */
export function skippedFstype(fstype: string): boolean {
  return MOUNT_SKIP_RULES.some((r) => (r.endsWith('.') ? fstype.startsWith(r) : fstype === r));
}

export interface ExecDenyOptions {
  readonly addon: ExecPermAddon;
  readonly deadlineMs: number;
  readonly logger: Logger;
  /** The matcher in force, or null before the first policy. */
  readonly matcher: () => Matcher | null;
  /** The verdict for an observation under `matcher` (decide.ts with guardd's context). */
  readonly decide: (obs: ProcessObservation, matcher: Matcher) => Verdict | null;
  /** Builds the observation of one request (preExecObservation with guardd's deps). */
  readonly observe: (req: ExecRequest, matcher: Matcher | null) => Promise<ProcessObservation>;
  /** Records a refused exec (Enforcer.denied). */
  readonly denied: Enforcer['denied'];
  /** Outcomes of the hash and marker reads of `observe`, for status (default: none). */
  readonly fileReads?: () => ExecDenyStatus['file_reads'];
  /** mountinfo text (tests pass their own); default /proc/self/mountinfo. */
  readonly mountinfo?: () => string;
  /** guardd's own directories, never given an open mark (open-marks.ts). */
  readonly protectedDirs?: readonly string[];
  /** `enforcement.open_marks` is not off (default true). */
  readonly openMarks?: boolean;
  /** uid → owner, for the process whose open of a marked file was refused. */
  readonly owner?: (uid: number) => ProcessObservation['owner'];
}

/** A refused file remembered so later refusals answered from the native cache are recorded with their rule. */
interface DenyMemo {
  readonly decision: Decision;
  readonly sha256: string | null | undefined;
}

/** An observation no rule matches, run through a new matcher to build its lazy parts. */
const WARM_UP: ProcessObservation = {
  kind: 'process',
  pid: 0,
  ppid: 0,
  startTime: 0,
  name: '',
  exe: '/nonexistent/toolguard-warm-up',
  argv: [],
  owner: { uid: -1, user: null, groups: [], home: null },
  tty: null,
};

/** Refused files remembered (DenyMemo): distinct banned files seen under one policy; bounded. */
const DENY_MEMO_MAX = 4096;
/**
 * The native thread goes round its loop at least once a second (its idle poll); older than this
 * and the watchdog reports it stalled (status, error log): every exec on marked file systems
 * would then wait on it. Checked every WATCHDOG_INTERVAL_MS.
 */
const WATCHDOG_STALL_MS = 5000;
const WATCHDOG_INTERVAL_MS = 5000;

/** Mount points remembered as unmarkable (so each is logged once); container hosts churn mounts. */
const MARK_FAILED_MEMORY = 1024;

/** Mount points listed in status as skipped, at most. */
const SKIPPED_LIST_MAX = 32;

export interface ExecDenyStatus {
  readonly state: 'on';
  readonly deadline_ms: number;
  readonly marked: readonly string[];
  readonly skipped: readonly { mount: string; fstype: string }[];
  readonly mark_failures: number;
  readonly counters: ExecPermCounters;
  /** Requests decided by JS (a verdict given before or after the deadline). */
  readonly decided: number;
  readonly decide_errors: number;
  /** Times the watchdog found the native thread stalled (see WATCHDOG_STALL_MS). */
  readonly watchdog_stalls: number;
  /**
   * Outcomes of reading the exec'd files (hash, content markers) by outcome: a `busy` or
   * `timeout` one means a request was decided without that fact (allowed unless another rule
   * matched, not cached).
   */
  readonly file_reads: {
    readonly sha256: Readonly<Record<string, number>>;
    readonly markers: Readonly<Record<string, number>>;
  };
  /** Open marks on banned packages' files (open-marks.ts). */
  readonly open_marks: OpenMarksStatus;
}

export class ExecDenyListener {
  private markedDevices = new Map<string, string>();
  private readonly markFailed = new Set<string>();
  private skipped: { mount: string; fstype: string }[] = [];
  private markFailures = 0;
  private generation = 0;
  private readonly memo = new Map<string, DenyMemo>();
  private decided = 0;
  private decideErrors = 0;
  private started = false;
  private watchdog: NodeJS.Timeout | null = null;
  private watchdogStalls = 0;
  private mountViews: MountView[] = [];
  /** Open marks on banned packages' files, in this listener's fanotify group. */
  readonly openMarks: OpenMarks;

  constructor(private readonly options: ExecDenyOptions) {
    this.openMarks = new OpenMarks({
      addon: options.addon,
      logger: options.logger,
      matcher: options.matcher,
      mounts: () => this.mountViews,
      protectedDirs: options.protectedDirs ?? [],
      denied: options.denied,
      owner: options.owner ?? ((uid) => ({ uid, user: null, groups: [], home: null })),
      enabled: options.openMarks ?? true,
    });
  }

  /** Starts the native thread, then marks the file systems. Throws GuardError GUARD_EXEC_DENY_FAILED. */
  start(): void {
    try {
      this.options.addon.start({ deadlineMs: this.options.deadlineMs, skipFstypes: MOUNT_SKIP_RULES }, (ev) =>
        this.onEvent(ev),
      );
    } catch (err) {
      throw new GuardError('GUARD_EXEC_DENY_FAILED', (err as Error).message);
    }
    this.started = true;
    this.remark();
    this.openMarks.start();
    this.watchdog = setInterval(() => this.checkThread(), WATCHDOG_INTERVAL_MS);
    this.watchdog.unref();
  }

  /** The watchdog: a native thread that stopped going round its loop is reported, loudly. */
  private checkThread(): void {
    const age = this.options.addon.counters().loop_age_ms;
    if (age <= WATCHDOG_STALL_MS) return;
    this.watchdogStalls++;
    this.options.logger.error(
      { loop_age_ms: age },
      'pre-exec listener thread stalled: execs on marked file systems may wait on it',
    );
  }

  /** A new policy is in force: forget every cached verdict. Safe before start. */
  policyChanged(): void {
    this.generation++;
    this.memo.clear();
    this.openMarks.policyChanged();
    if (this.started) this.options.addon.setGeneration(this.generation);
    // The matcher builds its RE2 sets on first use (tens of ms for a large policy): build them
    // now, not inside the first exec's deadline.
    this.options.matcher()?.matchAll(WARM_UP);
  }

  /** Stops the thread; pending requests are allowed. Idempotent. */
  stop(): void {
    if (!this.started) return;
    this.started = false;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    // Closing the group (in stop) removes every inode mark with it: opens are allowed again.
    this.openMarks.stop();
    this.options.addon.stop();
  }

  status(): ExecDenyStatus {
    return {
      state: 'on',
      deadline_ms: this.options.deadlineMs,
      marked: [...this.markedDevices.values()],
      skipped: this.skipped.slice(0, SKIPPED_LIST_MAX),
      mark_failures: this.markFailures,
      counters: this.options.addon.counters(),
      decided: this.decided,
      decide_errors: this.decideErrors,
      watchdog_stalls: this.watchdogStalls,
      file_reads: this.options.fileReads?.() ?? { sha256: {}, markers: {} },
      open_marks: this.openMarks.status(),
    };
  }

  /**
   * Marks every local file system (one mark per superblock). Called at start and whenever the
   * mount table changes. Every pass marks every file system again (FAN_MARK_ADD on a marked one
   * changes nothing): a device number freed by an unmount can be reused by the next mount, so
   * "marked before" is no proof that the file system behind the number is marked.
   */
  remark(): void {
    let text: string;
    try {
      text = (this.options.mountinfo ?? (() => readFileSync('/proc/self/mountinfo', 'utf8')))();
    } catch (err) {
      this.options.logger.error({ err }, 'mountinfo unreadable; marks unchanged');
      return;
    }
    const skipped: { mount: string; fstype: string }[] = [];
    const marked = new Map<string, string>();
    const views: MountView[] = [];
    for (const m of parseMountinfo(text)) {
      const view = { mountPoint: m.mountPoint, attached: false };
      views.push(view);
      if (skippedFstype(m.fstype)) {
        if (!MOUNT_SKIP_QUIET.has(m.fstype)) skipped.push({ mount: m.mountPoint, fstype: m.fstype });
        continue;
      }
      if (marked.has(m.device)) {
        view.attached = true;
        continue;
      }
      try {
        this.options.addon.mark(m.mountPoint, 'filesystem');
      } catch {
        // Some file systems refuse superblock marks (no fsid): mark the mount instead.
        try {
          this.options.addon.mark(m.mountPoint, 'mount');
        } catch (err) {
          // Counted once per mount point, not once per pass.
          if (!this.markFailed.has(m.mountPoint)) {
            if (this.markFailed.size >= MARK_FAILED_MEMORY) this.markFailed.clear();
            this.markFailed.add(m.mountPoint);
            this.markFailures++;
            this.options.logger.warn(
              { mount: m.mountPoint, fstype: m.fstype, err: (err as Error).message },
              'not marked',
            );
          }
          continue;
        }
      }
      marked.set(m.device, m.mountPoint);
      view.attached = true;
    }
    this.markedDevices = marked;
    this.mountViews = views;
    this.skipped = skipped;
  }

  private onEvent(ev: ExecPermEvent): void {
    if (ev.kind === 'mounts_changed') {
      if (this.started) this.remark();
      return;
    }
    if (ev.kind === 'open_denied') {
      void this.openMarks.onDenied(ev).catch((err: unknown) => {
        this.options.logger.error({ err, pid: ev.pid }, 'recording a refused open failed');
      });
      return;
    }
    const t0 = performance.now();
    if (ev.kind === 'denied_cached') {
      void this.recordCached(ev, t0);
      return;
    }
    void this.decideOne(ev, t0);
  }

  private async decideOne(ev: ExecPermEvent & { kind: 'decide' }, t0: number): Promise<void> {
    let allow = true;
    let cacheable = false;
    let denied: { obs: ProcessObservation; decision: Decision } | null = null;
    try {
      const matcher = this.options.matcher();
      if (matcher) {
        const obs = await this.options.observe(ev, matcher);
        const verdict = this.options.decide(obs, matcher);
        if (verdict?.act === 'block') {
          allow = false;
          cacheable = !matcher.exceptedRules.has(verdict.decision.rule.id);
          denied = { obs, decision: verdict.decision };
        } else {
          // An allow is the same for every user only when no rule matches the file at all, and it
          // says nothing about a hash or marker rule when the file was not hashed or scanned
          // (too large, busy, slow).
          cacheable =
            matcher.matchAll(obs).length === 0 &&
            !(matcher.needs.sha256 && !obs.sha256) &&
            !(matcher.needs.markers && !obs.contentMarkers) &&
            // and not where a user can write the blocks under the file system: the same identity
            // may hold other bytes at the next exec (mount-trust.ts)
            (await cacheableMount(ev.identity, ev.mountId));
        }
      }
    } catch (err) {
      this.decideErrors++;
      this.options.logger.error({ err, pid: ev.pid }, 'pre-exec decision failed; allowed');
    }
    this.decided++;
    const answered = this.options.addon.respond(ev.id, allow, cacheable);
    if (!denied) return;
    if (answered !== 'answered') {
      // Allowed at the deadline: the program runs and the post-exec path acts on it; the late
      // verdict is cached, so the next exec of this file is refused.
      this.options.logger.warn({ pid: ev.pid, path: ev.path }, 'pre-exec deny came after the deadline');
      if (cacheable) this.remember(ev.identity.key, { decision: denied.decision, sha256: denied.obs.sha256 });
      return;
    }
    if (cacheable) this.remember(ev.identity.key, { decision: denied.decision, sha256: denied.obs.sha256 });
    await this.options.denied(denied.obs, denied.decision, {
      latencyMs: round(performance.now() - t0),
      cached: false,
      fileKey: ev.identity.key,
      file: fileOf(ev.identity),
    });
  }

  /** A refusal the native cache already answered: record the attempt with the rule that decided it. */
  private async recordCached(ev: ExecPermEvent & { kind: 'denied_cached' }, t0: number): Promise<void> {
    const memo = this.memo.get(ev.identity.key);
    try {
      const obs = await this.options.observe(ev, null);
      const withHash = memo?.sha256 ? { ...obs, sha256: memo.sha256 } : obs;
      const matcher = this.options.matcher();
      const decision =
        memo?.decision ?? (matcher ? this.options.decide(withHash, matcher)?.decision : undefined);
      if (!decision) {
        this.decideErrors++;
        this.options.logger.warn({ pid: ev.pid, path: ev.path }, 'cached deny without a remembered rule');
        return;
      }
      await this.options.denied(withHash, decision, {
        latencyMs: round(performance.now() - t0),
        cached: true,
        fileKey: ev.identity.key,
        file: fileOf(ev.identity),
      });
    } catch (err) {
      this.decideErrors++;
      this.options.logger.error({ err, pid: ev.pid }, 'recording a cached deny failed');
    }
  }

  private remember(key: string, memo: DenyMemo): void {
    if (this.memo.size >= DENY_MEMO_MAX) {
      const oldest = this.memo.keys().next().value;
      if (oldest !== undefined) this.memo.delete(oldest);
    }
    this.memo.set(key, memo);
  }
}

function fileOf(id: ExecIdentity): DeniedFile {
  return { dev: id.dev, ino: id.ino, size: id.size };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
