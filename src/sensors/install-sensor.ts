/**
 * Owns noticing banned packages and artifacts on disk: every user's global npm-style trees (roots
 * from install-roots.ts) and the policy's path globs. Reports a `PackageObservation` for each
 * package directory whose package.json `name` the policy bans (whatever the directory is called)
 * and a `PathObservation` for each artifact matching a path glob — each (path, policy version,
 * inode) once, so `warn` yields one event, not one per file.
 *
 * Every file call it makes below a home, a root or a glob base — listings, lstat/stat/realpath/
 * readlink, package.json reads, tree walks, watches — goes through install-reads.ts: gated per
 * tree (the uid of the user whose home holds it, never the owner a file system claims), with a
 * deadline, and refused at once while that tree is stalled. A look turned away is not retried on
 * its own: when the tree answers again, its roots and glob bases are scanned again
 * (`onTreeRecovered`). So a user's mount that never answers costs their own tree, not a full scan
 * or another user's. Each observation carries its tree's key (`treeKey`): the quarantine action's
 * looks at the path are gated under it too.
 *
 * An observation's owner is the file system's `st_uid`, except on a FUSE mount a user made, whose
 * daemon says what it likes about ownership: there it is the mount's user (`ownerOf`).
 *
 * How it stays cheap and bounded:
 * - A depth-0 watch on each root and each `@scope` dir (one per directory that can hold packages,
 *   never one per package or file; scope dirs up to MAX_WATCHED_SCOPES a home and owner, the rest
 *   left to the root's events and the full rescans); on "anchor" dirs where a root may appear
 *   later (a user installs nvm) — an event there re-runs discovery; on each directory a path
 *   glob's walk visits. An event only names an entry, which is then looked at through the gate. A
 *   full rescan at start, on the node-cron schedule and when a new policy arrives catches anything
 *   a watch missed.
 * - A candidate is reported only once it has settled: package.json parses, the tree's fingerprint
 *   is unchanged over SETTLE_MS, and (npm prefixes) its declared bin links exist, so quarantine
 *   never races npm's extraction or bin linking.
 * - An install the package manager reverts (npm removes the package, and the root it created, when
 *   an install script fails or is killed) leaves bin links pointing at nothing: a banned candidate
 *   that vanishes, a root that vanishes, fixed-path roots that are absent (when their bin dir
 *   changed) and every root at each full scan are swept for symlinks into `<root>/<banned name>`
 *   where nothing is; each such former path is reported once per policy as `removed`, and the
 *   quarantine action removes the links as their owner. A sweep that could not look everywhere
 *   (a read turned away, another sweep of the root under way) is done again shortly after.
 * - Symlinks are never walked into: roots are deduplicated by device + inode, a symlinked package
 *   is resolved once (ELOOP = a loop, counted and skipped), tree walks use lstat.
 */
import type { Dirent } from 'node:fs';
import { basename, dirname, isAbsolute, join, posix, relative, win32 } from 'node:path';
import cron, { type ScheduledTask } from 'node-cron';
import { GuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Platform } from '../common/platform-paths.js';
import { fuseMountUser, OWNER_WAIT_MS, type UserDirectory } from '../common/users.js';
import type { Matcher } from '../policy/matcher.js';
import { DirWatches, type TreeKey, TreeReads, turnedAway } from './install-reads.js';
import { binDirsFor, discoverRoots, type InstallRoot } from './install-roots.js';
import type { Observation, Owner } from './observation.js';
import { installReadGate } from './package-reader.js';
import type { SafePathResult } from './safe-read.js';
import type { ObservationHandler, Sensor, SensorStatus } from './sensor.js';

export interface InstallSensorOptions {
  readonly users: UserDirectory;
  readonly platform: Platform;
  readonly onObservation: ObservationHandler;
  /** node-cron schedule of the full rescan (config `sensors.install.rescan_cron`). */
  readonly rescanCron: string;
  /** Extra global node_modules directories (config `sensors.install.extra_roots`). */
  readonly extraRoots: readonly string[];
  /** Homes to scan instead of every local user's (a list, or a function asked at each discovery). */
  readonly homes?: readonly string[] | (() => readonly string[]);
  readonly logger: Logger;
  /** False leaves out the system prefixes (/usr/lib/node_modules…); tests and benches. Default true. */
  readonly systemRoots?: boolean;
}

/** A candidate must look the same twice this far apart before it is reported (npm writes in bursts). */
export const SETTLE_MS = 200;
/**
 * Each time a candidate's fingerprint changed, the next look waits twice as long, up to this: a
 * user writing into their banned tree every 50 ms had it walked (up to 20,000 lstats) every 200 ms
 * — four such trees kept guardd at a full core. A real install settles within a few doublings.
 */
const SETTLE_MAX_MS = 2_000;
/** First retry delay of a candidate whose package.json is not there / not parseable yet. */
const RETRY_MIN_MS = 50;
/** Retry delays double up to this. */
const RETRY_MAX_MS = 1000;
/** A candidate still incomplete after this long is dropped (counted `incomplete`); rescans retry it. */
const PENDING_MAX_MS = 60_000;
/** Declared bin links are waited for at most this long after the candidate was first seen. */
const BIN_WAIT_MS = 5_000;
/** Roots, anchors and glob dirs just added are looked at again this long after (see scheduleCatchUp). */
const CATCH_UP_MS = 500;
/** Events in anchor dirs are coalesced for this long before discovery runs again. */
const REDISCOVER_DEBOUNCE_MS = 250;
/**
 * A discovery asked for by a watch (anchor events, catch-ups) starts no sooner than this many
 * times the last one's duration after it ended: a user's mkdir loop in their home (an anchor)
 * otherwise kept guardd in discovery back to back (0.9 of the time, ~70 % of a core with 1,000
 * roots in that home); now at most 1/(1 + this) of it. Rescans are not delayed.
 */
const DISCOVERY_IDLE_FACTOR = 4;
/** At most this many candidates wait at once (a hostile flood of directories is counted, not queued). */
const MAX_PENDING = 10_000;
/** Entries read from one root or scope dir per scan (real global trees have hundreds). */
const MAX_DIR_ENTRIES = 50_000;
/** A directory glob bases name this many children of is listed once rather than each child statted. */
const LIST_FANOUT = 8;
/** Entries walked to fingerprint one candidate tree (enough for any real CLI package). */
const FINGERPRINT_MAX_ENTRIES = 20_000;
/** Distinct skipped (reason, path) pairs remembered for de-duplicating counts. */
const MAX_SKIPPED_REMEMBERED = 10_000;
/**
 * A block turned away because its tree did not answer in time (GUARD_QUARANTINE_BUSY, see
 * `turnedAway`): its tree is looked at again after each of these waits (ms); after the last, when
 * the tree recovers from a stall and at the full rescans only. Bounded, so a user who keeps their
 * tree stalled costs a few looks and `failed` events, not a loop.
 */
const BUSY_RETRY_WAITS_MS = [5_000, 30_000, 120_000];
/** A tree's round of busy retries ends this long after it began (ms): a later turn-away starts a new one. */
const BUSY_RETRY_RESET_MS = 60 * 60 * 1000;
/** `**` in a path glob is walked and watched this deep at most. */
const MAX_GLOB_DEPTH = 6;
/** Entries walked per path-glob base per scan. */
const MAX_ARTIFACT_SCAN_ENTRIES = 100_000;
/**
 * Scope dirs watched per home (a system or extra root: per root) and owner of the scope dir. A
 * watch costs an inotify watch and ~3 KiB of heap, and a directory costs its owner one `mkdir`:
 * unbounded, one user's 50,000 `@scope` dirs passed the unit's heap cap. Real homes have tens; past
 * the budget a scope dir is counted `watch_budget_exceeded`, and what is put in it is seen at the
 * full rescans. Keyed by owner too: a root of another user's claimed by this home's patterns (a
 * `.npmrc` prefix naming it) keeps its owner's scope dirs out of this user's flood. Roots are not
 * budgeted: discovery bounds them (MAX_WILDCARD_ENTRIES per pattern).
 */
const MAX_WATCHED_SCOPES = 1_024;

/** Bin dirs remembered (by their stat) so an absent root's unchanged bin dir is not read again. */
const MAX_BIN_DIRS_REMEMBERED = 10_000;
/**
 * Symlinks read (readlink) per bin dir per leftover sweep: real bin dirs hold tens to a few
 * hundred (/usr/bin, the distro npm's, ~1,000); more is a hostile dir, counted `leftover_sweep_truncated`.
 */
const MAX_SWEEP_LINKS = 5_000;
/**
 * An absent root's bin dir is swept at most once per this long (a trailing sweep catches what
 * changed meanwhile): a user touching their bin dir in a loop costs one bounded sweep per 2 s.
 */
const ABSENT_SWEEP_INTERVAL_MS = 2_000;
/**
 * A leftover sweep that could not look everywhere (a read turned away: the home's read slot busy,
 * a stalled mount or just a loaded machine; or another sweep of the root already under way, which
 * may have read the bin dirs before the package vanished) is done again this long after…
 */
const SWEEP_RETRY_MS = 2_000;
/** …at most this many times in a row for reads turned away (then counted; the rescan schedule covers it). */
const SWEEP_RETRIES = 30;

type CandidateKind = 'package' | 'artifact';

/** A package candidate whose package.json named a banned package (kept to report its removal). */
interface BannedSeen {
  readonly name: string;
  readonly version: string | null;
  /** The owner and device its lstat gave (see ownerOf). */
  readonly uid: number;
  readonly dev: number;
}

/** A banned candidate that vanished: its former path is reported even when no link into it is found. */
type LeftoverHint = BannedSeen & { readonly path: string };

/** A sweep of one root to be done again (see SWEEP_RETRY_MS). */
interface SweepRetry {
  readonly timer: NodeJS.Timeout;
  readonly hints: Map<string, LeftoverHint>;
  attempt: number;
}

interface Pending {
  readonly path: string;
  readonly kind: CandidateKind;
  readonly root: InstallRoot | null;
  /** Whose tree it is in (the install gate's key of every call about it). */
  readonly key: TreeKey;
  readonly firstSeen: number;
  attempts: number;
  lastFingerprint: string | null;
  /** Looks in a row whose fingerprint differed from the one before (see SETTLE_MAX_MS). */
  unsettled: number;
  timer: NodeJS.Timeout | null;
  running: boolean;
  dirty: boolean;
  /** Set once its package.json named a banned package. */
  banned: BannedSeen | null;
}

/** A directory path globs reach below (Matcher.pathScanBases), its depth capped at MAX_GLOB_DEPTH. */
interface GlobBase {
  readonly base: string;
  readonly depth: number;
}

export class InstallSensor implements Sensor {
  readonly name = 'install';
  private readonly log: Logger;
  private matcher: Matcher | null = null;
  private running = false;
  private roots = new Map<string, InstallRoot>();
  /** Watched scope dirs → their root (a scope dir past its home's watch budget is not listed). */
  private scopeDirs = new Map<string, InstallRoot>();
  /** Roots and scope dirs the root watches watch → the budget they count against (null: a root). */
  private readonly watchedDirs = new Map<string, string | null>();
  /** Budget key (home or root, and owner; glob base) → how many of its dirs are watched (see watchDir). */
  private readonly watchBudget = new Map<string, number>();
  /** Anchor → its tree's key. */
  private anchors = new Map<string, TreeKey>();
  /** Where path artifacts can be: each base once (the policy's, `~` ones under every home). */
  private scanBases = new Map<string, GlobBase>();
  private globBases = new Set<string>();
  /** Directories a path glob's walk watches → their base and depth below it. */
  private readonly globDirs = new Map<string, { base: string; depth: number }>();
  /** Every call into a user's tree (see install-reads.ts); a tree that answers again is scanned again. */
  private readonly reads = new TreeReads((key) => this.onTreeRecovered(key));
  private rootWatches: DirWatches | null = null;
  private anchorWatches: DirWatches | null = null;
  private globWatches: DirWatches | null = null;
  /** Watch set-ups under way (the catch-up waits for them: a watch is live once its set-up ended). */
  private readonly watchSetups = new Set<Promise<unknown>>();
  /** Watched dir and entry name → an event's look is queued (events on one entry coalesce). */
  private readonly eventsDue = new Set<string>();
  private cronTask: ScheduledTask | null = null;
  private readonly pending = new Map<string, Pending>();
  /** Reported path → identity (policy version, dev:ino, version) last reported for it, and its tree. */
  private readonly reported = new Map<string, { readonly id: string; readonly key: TreeKey }>();
  private readonly skipped: Record<string, number> = {};
  private readonly skippedSeen = new Set<string>();
  private rediscoverTimer: NodeJS.Timeout | null = null;
  private scanning: Promise<void> | null = null;
  private rescanAgain = false;
  private scans = 0;
  /** Full scans that ended (a full scan waits for no tree longer than one deadline). */
  private scansCompleted = 0;
  private observations = 0;
  private readonly inFlight = new Set<Promise<unknown>>();
  /**
   * Package paths reported (installed, or removed by their installer) → the policy version then;
   * deleted when something is seen at the path again. A removal is reported at most once.
   */
  private readonly gone = new Map<string, number>();
  private readonly binDirSeen = new Map<string, string>();
  private readonly sweepsInFlight = new Set<string>();
  /** Absent root → when its bin dirs were last swept (performance.now() ms). */
  private readonly absentSwept = new Map<string, number>();
  private readonly absentTimers = new Map<string, NodeJS.Timeout>();
  /** Root → its sweep to be done again (bounded by the roots known: one per root). */
  private readonly sweepRetries = new Map<string, SweepRetry>();
  /** Banned packages reported as removed by their installer (see sweepLeftovers). */
  private reverted = 0;
  /**
   * Tree whose blocks were turned away → the retries of its current round (turnedAway): how many
   * so far, the pending one, when the round began.
   */
  private readonly busyRetries = new Map<
    TreeKey,
    { attempts: number; timer: NodeJS.Timeout | null; readonly since: number }
  >();
  /** Leftover sweeps run (each reads a root's bin dirs). */
  private sweeps = 0;
  /** Candidate trees walked to tell whether they settled (each up to FINGERPRINT_MAX_ENTRIES lstats). */
  private fingerprints = 0;

  constructor(private readonly options: InstallSensorOptions) {
    this.log = options.logger.child({ component: 'sensor.install' });
    if (!cron.validate(options.rescanCron))
      throw new GuardError(
        'GUARD_CONFIG_INVALID_VALUE',
        `sensors.install.rescan_cron: bad cron "${options.rescanCron}"`,
      );
  }

  /** Starts watching and runs the first full scan (resolves once it is done). */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const watches = (onEvent: (dir: string, name: string | null) => void): DirWatches =>
      new DirWatches(this.reads, this.options.platform, onEvent, (err) => this.onWatchError(err));
    this.rootWatches = watches((dir, name) => this.onDirEvent(dir, name, (d, n) => this.onRootEvent(d, n)));
    this.anchorWatches = watches(() => this.scheduleRediscover());
    this.globWatches = watches((dir, name) => this.onDirEvent(dir, name, (d, n) => this.onGlobEvent(d, n)));
    this.cronTask = cron.schedule(this.options.rescanCron, () => this.rescan(), { noOverlap: true });
    await this.rescan();
  }

  /** Stops watchers, the schedule and pending checks; resolves when nothing more will be reported. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.rediscoverTimer) clearTimeout(this.rediscoverTimer);
    if (this.catchUpTimer) clearTimeout(this.catchUpTimer);
    for (const t of this.absentTimers.values()) clearTimeout(t);
    this.absentTimers.clear();
    for (const r of this.sweepRetries.values()) clearTimeout(r.timer);
    this.sweepRetries.clear();
    for (const r of this.busyRetries.values()) if (r.timer) clearTimeout(r.timer);
    this.busyRetries.clear();
    for (const p of this.pending.values()) if (p.timer) clearTimeout(p.timer);
    this.pending.clear();
    this.watchedDirs.clear();
    this.watchBudget.clear();
    this.globDirs.clear();
    await this.cronTask?.destroy();
    this.cronTask = null;
    for (const w of [this.rootWatches, this.anchorWatches, this.globWatches]) w?.close();
    this.rootWatches = null;
    this.anchorWatches = null;
    this.globWatches = null;
    this.reads.stop();
    await this.scanning;
    await Promise.allSettled([...this.inFlight]);
  }

  /**
   * The block of what was reported at `obs.path` was turned away (GUARD_QUARANTINE_BUSY: its tree
   * did not answer in time, so nothing was moved): it no longer counts as reported, and its tree
   * is looked at again after BUSY_RETRY_WAITS_MS (and when it recovers from a stall, and at the
   * rescans), so the block is tried again instead of waiting for the package to change or a new
   * policy. A later look that finds it reports it again, and the block is retried. The waits are a
   * round per tree, begun by its first turn-away and ended BUSY_RETRY_RESET_MS later.
   */
  turnedAway(obs: Observation): void {
    if (!this.running || (obs.kind !== 'package' && obs.kind !== 'path')) return;
    const known = this.reported.get(obs.path);
    if (!known) return;
    this.reported.delete(obs.path);
    this.count('block_turned_away', obs.path);
    // One retry schedule per tree (the retry is a look at the whole tree): a user's many turned-away
    // packages share theirs, and the map holds one entry per tree at most.
    const now = Date.now();
    let retry = this.busyRetries.get(known.key);
    if (!retry || now - retry.since > BUSY_RETRY_RESET_MS) {
      if (retry?.timer) clearTimeout(retry.timer);
      retry = { attempts: 0, timer: null, since: now };
      this.busyRetries.set(known.key, retry);
    }
    if (retry.timer || retry.attempts >= BUSY_RETRY_WAITS_MS.length) return;
    const r = retry;
    const wait = BUSY_RETRY_WAITS_MS[r.attempts] as number;
    r.attempts++;
    r.timer = setTimeout(() => {
      r.timer = null;
      this.rescanTree(known.key);
    }, wait);
  }

  /** A new policy: remember it and rescan (new names / versions / globs are reported afresh). */
  setMatcher(matcher: Matcher): void {
    this.matcher = matcher;
    this.binDirSeen.clear(); // other names may be banned now: absent roots' bin dirs are read again
    if (this.running) void this.rescan();
  }

  status(): SensorStatus {
    return {
      name: this.name,
      running: this.running,
      details: {
        roots: [...this.roots.keys()],
        anchors: this.anchors.size,
        path_bases: this.scanBases.size,
        watched_dirs: this.watchedDirs.size + this.anchors.size + this.globDirs.size,
        pending: this.pending.size,
        reported: this.reported.size,
        scans: this.scans,
        scans_completed: this.scansCompleted,
        stalled_trees: this.reads.stalledKeys,
        tree_stalls: this.reads.stalls,
        read_gate: {
          in_flight: installReadGate.pending,
          busy: installReadGate.counts.busy,
          timeout: installReadGate.counts.timeout,
        },
        observations: this.observations,
        reverted_installs: this.reverted,
        leftover_sweeps: this.sweeps,
        fingerprints: this.fingerprints,
        discovery_ms: Math.round(this.discoveryMs),
      },
      skipped: { ...this.skipped },
    };
  }

  /** Runs discovery and a full scan now (also what the cron schedule calls). Coalesces overlapping calls. */
  rescan(): Promise<void> {
    if (this.scanning) {
      this.rescanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.rescanAgain = false;
          await this.fullScan();
        } while (this.rescanAgain && this.running);
      } catch (err) {
        this.log.error({ err }, 'install rescan failed');
      } finally {
        this.scanning = null;
      }
    })();
    return this.scanning;
  }

  // ---- discovery and scanning --------------------------------------------------------------

  private homes(): readonly string[] {
    const h = this.options.homes;
    if (typeof h === 'function') return h();
    if (h) return h;
    return this.options.users.users().map((u) => u.home);
  }

  private async fullScan(): Promise<void> {
    if (!this.running) return;
    this.scans++;
    await this.rediscover();
    for (const root of [...this.roots.values()]) {
      await this.scanRoot(root);
      await this.sweepLeftovers(root, { hints: [] });
    }
    for (const g of this.scanBases.values()) if (this.globBases.has(g.base)) await this.scanGlob(g);
    await this.pruneReported();
    this.scansCompleted++;
  }

  /**
   * A stalled tree answers again: what was refused meanwhile (its roots' and glob bases' listings,
   * candidates, sweeps) is looked at again — its roots scanned and swept, its glob bases walked.
   */
  private onTreeRecovered(key: TreeKey): void {
    if (!this.running) return;
    this.log.info({ key }, 'a stalled tree answers again: scanning it');
    this.rescanTree(key);
  }

  /** Scans and sweeps the roots of the tree `key`, and walks its glob bases. */
  private rescanTree(key: TreeKey): void {
    if (!this.running) return;
    this.track(
      (async () => {
        for (const root of [...this.roots.values()]) {
          if (this.rootKey(root) !== key || !this.roots.has(root.path)) continue;
          await this.scanRoot(root);
          await this.sweepLeftovers(root, { hints: [] });
        }
        for (const g of this.scanBases.values())
          if (this.globBases.has(g.base) && this.pathKey(g.base, 'glob') === key) await this.scanGlob(g);
      })(),
    );
  }

  /**
   * Finds roots, anchors and glob bases; adds/removes watches for what changed. Runs one at a time
   * (rescan, catch-up and anchor events may ask at once); never rejects.
   */
  private rediscover(): Promise<void> {
    const run = this.discovering.then(async () => {
      const t0 = performance.now();
      this.discoveryRunning = true;
      try {
        await this.rediscoverNow();
      } finally {
        this.discoveryRunning = false;
        this.discoveryEnded = performance.now();
        this.discoveryTook = this.discoveryEnded - t0;
        this.discoveryMs += this.discoveryTook;
      }
    });
    this.discovering = run.catch((err: unknown) => {
      this.log.error({ err }, 'install discovery failed');
    });
    return this.discovering;
  }

  private discovering: Promise<void> = Promise.resolve();
  /** Home → uid of its user, and the homes, as of the last discovery (see pathKey). */
  private homeKeys = new Map<string, number>();
  private homeList: readonly string[] = [];
  /** When the last discovery ended (performance.now() ms) and how long it took; ms spent in all. */
  private discoveryEnded = Number.NEGATIVE_INFINITY;
  private discoveryRunning = false;
  private discoveryTook = 0;
  private discoveryMs = 0;

  private async rediscoverNow(): Promise<void> {
    if (!this.running) return;
    const homes = this.homes();
    this.homeList = homes;
    this.homeKeys = new Map(this.options.users.users().map((u) => [u.home, u.uid]));
    const found = await discoverRoots({
      platform: this.options.platform,
      homes,
      extraRoots: this.options.extraRoots,
      systemRoots: this.options.systemRoots,
      gateKey: (home) => this.homeKeys.get(home) ?? home,
      stalled: (key) => this.reads.isStalled(key),
    });
    // A home that did not answer keeps what was known of it: its roots stay known and watched.
    // Discovery's calls are refused after a short deadline when the home's read slot is busy (a
    // loaded machine, not only a hung mount), and a root dropped for that would stop reporting
    // what is installed into it — or removed from it — until some later discovery re-added it.
    for (const home of found.stalled) this.count('discovery_stalled', home);
    for (const home of found.truncated) this.count('discovery_truncated', home);
    const stalled = new Set(found.stalled);
    const newRoots = new Map(found.roots.map((r) => [r.path, r]));
    const vanished: InstallRoot[] = [];
    for (const [path, old] of this.roots) {
      if (newRoots.has(path)) continue;
      // Roots with no home are the system prefixes' and the extra roots' (discovery keys 'system', 'extra').
      const unanswered =
        old.home !== null ? stalled.has(old.home) : stalled.has('system') || stalled.has('extra');
      if (unanswered) {
        newRoots.set(path, old);
        continue;
      }
      // A root that vanished may be npm's rollback of an install that created it.
      vanished.push(old);
      this.unwatchDir(path);
      for (const [scope, r] of this.scopeDirs) {
        if (r.path !== path) continue;
        this.scopeDirs.delete(scope);
        this.unwatchDir(scope);
      }
    }
    const added: InstallRoot[] = [];
    for (const [path, root] of newRoots) {
      // Every root, not only new ones: a watch whose set-up was turned away is set up again.
      this.track(this.watchDir(path, null, this.rootKey(root)));
      if (!this.roots.has(path)) added.push(root);
    }
    this.roots = newRoots;

    // Path globs: each base that exists is walked (and its dirs watched) by scanGlob; the nearest
    // existing ancestor of the others is anchored.
    const anchors = new Map<string, TreeKey>(
      [...found.anchorKeys].map(([a, k]) => [a, this.homeKeys.get(k) ?? k]),
    );
    this.scanBases = this.compileScanBases();
    const located = await this.locateBases([...this.scanBases.keys()]);
    const bases = located.existing;
    for (const [a, key] of located.anchors) if (!anchors.has(a)) anchors.set(a, key);
    for (const [dir, d] of this.globDirs) if (!bases.has(d.base)) this.unwatchGlobDir(dir);
    const newBases = [...bases].filter((b) => !this.globBases.has(b));
    this.globBases = bases;

    const previousAnchors = this.anchors;
    for (const a of this.anchors.keys()) if (!anchors.has(a)) this.anchorWatches?.remove(a);
    for (const [a, key] of anchors) this.watchSetup(this.anchorWatches?.add(a, key, { follow: true }));
    this.anchors = anchors;
    // Roots and bases that appeared between scans are scanned by the caller (fullScan) or here
    // when discovery ran because of an anchor event.
    this.lastAdded = { roots: added, bases: newBases };
    for (const root of added) this.catchUpRoots.set(root.path, root);
    for (const base of newBases) this.catchUpBases.add(base);
    for (const root of vanished) this.track(this.sweepLeftovers(root, { hints: [] }));
    for (const root of found.absent) this.sweepAbsent(root);
    const newAnchors = [...anchors.keys()].filter((a) => !previousAnchors.has(a));
    if (added.length + newBases.length + newAnchors.length > 0) this.scheduleCatchUp();
  }

  /**
   * A watch is set up after discovery (or a listing) looked: anything created in a new root, scope
   * dir, glob dir or anchor before its watch is live produces no event. One more discovery + scan
   * of everything added since the last catch-up, CATCH_UP_MS later and once the watch set-ups
   * under way ended, closes that window. What this catch-up's own discovery adds is scanned now
   * and caught up by the next one.
   */
  private scheduleCatchUp(): void {
    if (!this.running || this.catchUpTimer) return;
    this.afterDiscoveryIdle(
      CATCH_UP_MS,
      (t) => (this.catchUpTimer = t),
      () => {
        const roots = [...this.catchUpRoots.values()];
        const bases = new Set(this.catchUpBases);
        this.catchUpRoots.clear();
        this.catchUpBases.clear();
        this.track(
          (async () => {
            await Promise.allSettled([...this.watchSetups]);
            await this.rediscover();
            const more = this.lastAdded;
            for (const r of [...roots, ...more.roots])
              if (this.roots.has(r.path)) await this.scanRoot(r, true);
            for (const b of more.bases) bases.add(b);
            for (const b of bases) {
              const g = this.scanBases.get(b);
              if (g) await this.scanGlob(g, true);
            }
          })(),
        );
      },
    );
  }

  private catchUpTimer: NodeJS.Timeout | null = null;
  /**
   * Roots and glob bases added since the last catch-up fired, listed again at the next one
   * (bounded by the roots and bases known). Scope and glob dirs need none: they are listed after
   * their watch is live.
   */
  private readonly catchUpRoots = new Map<string, InstallRoot>();
  private readonly catchUpBases = new Set<string>();

  /** What the last discovery added: scanned at once by the code that ran it. */
  private lastAdded: { roots: InstallRoot[]; bases: string[] } = { roots: [], bases: [] };

  /**
   * Calls `run` `min` ms from now, or later: not while a discovery runs, nor before
   * DISCOVERY_IDLE_FACTOR times its duration has passed since it ended (checked again when due).
   * `hold` is given the pending timer (null once it fired).
   */
  private afterDiscoveryIdle(min: number, hold: (t: NodeJS.Timeout | null) => void, run: () => void): void {
    const arm = (delay: number): void => {
      hold(
        setTimeout(() => {
          const wait = this.discoveryWait();
          if (wait > 0 && this.running) return arm(wait);
          hold(null);
          if (this.running) run();
        }, delay),
      );
    };
    arm(Math.max(min, this.discoveryWait()));
  }

  /** How long until a watch may start a discovery (≤ 0: now); see DISCOVERY_IDLE_FACTOR. */
  private discoveryWait(): number {
    if (this.discoveryRunning) return REDISCOVER_DEBOUNCE_MS;
    return this.discoveryEnded + DISCOVERY_IDLE_FACTOR * this.discoveryTook - performance.now();
  }

  private scheduleRediscover(): void {
    if (!this.running || this.rediscoverTimer) return;
    this.afterDiscoveryIdle(
      REDISCOVER_DEBOUNCE_MS,
      (t) => (this.rediscoverTimer = t),
      () => {
        this.track(
          (async () => {
            await this.rediscover();
            const { roots, bases } = this.lastAdded;
            for (const r of roots) await this.scanRoot(r, true);
            for (const b of bases) {
              const g = this.scanBases.get(b);
              if (g) await this.scanGlob(g, true);
            }
          })(),
        );
      },
    );
  }

  /**
   * `fresh`: the root just appeared, so an incomplete package is being written: keep checking it.
   * Stops early when the root's tree stalls (it is scanned again once it answers).
   */
  private async scanRoot(root: InstallRoot, fresh = false): Promise<void> {
    const key = this.rootKey(root);
    await this.watchDir(root.path, null, key);
    for (const entry of (await this.listDir(root.path, key)) ?? []) {
      if (this.reads.isStalled(key)) return;
      if (entry.startsWith('.')) continue; // .bin, .pnpm, .package-lock.json, npm's retired .name-XXXX dirs
      const path = join(root.path, entry);
      if (entry.startsWith('@')) {
        await this.addScope(path, root, fresh);
        continue;
      }
      await this.consider(path, 'package', root, fresh);
    }
  }

  /** Watches a scope dir (within its budget) and looks at what is in it. */
  private async addScope(scopeDir: string, root: InstallRoot, fromWatch = false): Promise<void> {
    const key = this.rootKey(root);
    const st = await this.reads.lstat(scopeDir, key);
    if (!st.ok || !st.value.isDirectory()) {
      // Gone (or a symlink, not followed): its watch, if any, goes too.
      if (st.ok || st.reason === 'missing') {
        if (this.scopeDirs.delete(scopeDir)) this.unwatchDir(scopeDir);
        if (!st.ok) this.schedulePrune();
      }
      return;
    }
    // Listed once the watch is live: what is moved in meanwhile is either listed or has an event.
    if (await this.watchDir(scopeDir, `${root.home ?? root.path}\u0000${st.value.uid}`, key))
      this.scopeDirs.set(scopeDir, root);
    for (const entry of (await this.listDir(scopeDir, key)) ?? []) {
      if (this.reads.isStalled(key)) return;
      if (!entry.startsWith('.')) await this.consider(join(scopeDir, entry), 'package', root, fromWatch);
    }
  }

  /**
   * Watches a root (`budget` null) or a scope dir unless its budget's MAX_WATCHED_SCOPES are
   * taken (then counted). Resolves true once the watch is live (at once when it was already); a
   * set-up that failed (turned away, a FUSE dir, gone) leaves the dir unwatched and its place in
   * the budget free, so a later call tries again. Roots follow a symlink at their path (discovery
   * found them through it); scope dirs do not.
   */
  private async watchDir(path: string, budget: string | null, key: TreeKey): Promise<boolean> {
    if (this.watchedDirs.has(path)) return this.rootWatches?.has(path) ?? false;
    if (!this.rootWatches) return false;
    if (budget !== null) {
      const n = this.watchBudget.get(budget) ?? 0;
      if (n >= MAX_WATCHED_SCOPES) {
        this.count('watch_budget_exceeded', budget);
        return false;
      }
      this.watchBudget.set(budget, n + 1);
    }
    this.watchedDirs.set(path, budget);
    const setup = this.rootWatches.add(path, key, { follow: budget === null });
    this.watchSetup(setup);
    const outcome = await setup;
    if (outcome === 'watched') return true;
    if (outcome === 'fuse') this.count('watch_skipped_fuse', path);
    // Unless it was unwatched (and maybe watched again) meanwhile.
    if (this.watchedDirs.get(path) === budget && !this.rootWatches?.has(path)) this.unwatchDir(path);
    return false;
  }

  /** Stops watching `path` (if watchDir watched it) and gives its place in the budget back. */
  private unwatchDir(path: string): void {
    const key = this.watchedDirs.get(path);
    if (key === undefined) return;
    this.watchedDirs.delete(path);
    this.rootWatches?.remove(path);
    if (key === null) return;
    const n = (this.watchBudget.get(key) ?? 1) - 1;
    if (n > 0) this.watchBudget.set(key, n);
    else this.watchBudget.delete(key);
  }

  /** Keeps a watch set-up's promise until it settles (the catch-up waits for those under way). */
  private watchSetup(setup: Promise<unknown> | undefined): void {
    if (!setup) return;
    const t = setup.finally(() => this.watchSetups.delete(t));
    this.watchSetups.add(t);
  }

  /** Names in `dir` (capped, counted), or null when its tree did not answer (or it is unreadable). */
  private async listDir(dir: string, key: TreeKey): Promise<string[] | null> {
    const r = await this.reads.readdir(dir, key);
    if (!r.ok) {
      if (r.reason === 'permission_denied') this.count('permission_denied', dir);
      else if (r.reason !== 'missing' && !turnedAway(r)) this.count('unreadable', dir);
      return null;
    }
    if (r.value.length > MAX_DIR_ENTRIES) this.count('dir_too_large', dir);
    return r.value.slice(0, MAX_DIR_ENTRIES).map((e: Dirent) => e.name);
  }

  /**
   * The policy's scan bases (Matcher.pathScanBases): a base and depth each, whatever the number of
   * globs and homes — the globs themselves stay in the matcher, which says whether an entry is an
   * artifact (isArtifact). Compiled here once per glob and home, they cost ~1 MiB of heap a home
   * for 1,000 rules, and a walk of each glob's base for each of its globs.
   */
  private compileScanBases(): Map<string, GlobBase> {
    const out = new Map<string, GlobBase>();
    for (const { base, depth } of this.matcher?.pathScanBases ?? [])
      out.set(toPosix(base), { base: toPosix(base), depth: Math.min(depth, MAX_GLOB_DEPTH) });
    return out;
  }

  /** Whether a rule's path glob matches `path`: an artifact to look at. */
  private isArtifact(path: string): boolean {
    return this.matcher?.pathMatches(toPosix(path)) ?? false;
  }

  /**
   * Walks base `g` (or from `from`, a dir at `depth` below it that just appeared) to its depth,
   * watching each directory it lists (once the watch is live) and looking at each entry a path
   * glob matches (not below it: the artifact is the entry).
   */
  private async scanGlob(g: GlobBase, fresh = false, from = g.base, fromDepth = 0): Promise<void> {
    const key = this.pathKey(g.base, 'glob');
    let budget = MAX_ARTIFACT_SCAN_ENTRIES;
    const visited = new Set<string>();
    const walk = async (dir: string, depth: number): Promise<void> => {
      const st = await this.reads.stat(dir, key);
      if (!st.ok || !st.value.isDirectory()) return;
      const id = `${st.value.dev}:${st.value.ino}`;
      if (visited.has(id)) {
        this.count('symlink_loop', dir); // the same directory twice: a loop
        return;
      }
      visited.add(id);
      await this.watchGlobDir(dir, g.base, depth, key);
      for (const name of (await this.listDir(dir, key)) ?? []) {
        if (this.reads.isStalled(key)) return;
        if (--budget < 0) {
          this.count('glob_scan_truncated', g.base);
          return;
        }
        const path = join(dir, name);
        if (this.isArtifact(path)) {
          await this.consider(path, 'artifact', null, fresh);
          continue;
        }
        if (depth < g.depth) {
          const est = await this.reads.lstat(path, key);
          if (est.ok && est.value.isDirectory()) await walk(path, depth + 1);
        }
      }
    };
    await walk(from, fromDepth);
  }

  /**
   * Watches a directory a glob walk lists (MAX_WATCHED_SCOPES per base; its base is followed if
   * it is a link, nothing below it). Resolves once the watch is live or could not be set up.
   */
  private async watchGlobDir(dir: string, base: string, depth: number, key: TreeKey): Promise<void> {
    if (this.globDirs.has(dir) || !this.globWatches) return;
    const budget = `glob\u0000${base}`;
    const n = this.watchBudget.get(budget) ?? 0;
    if (n >= MAX_WATCHED_SCOPES) {
      this.count('watch_budget_exceeded', budget);
      return;
    }
    this.watchBudget.set(budget, n + 1);
    const entry = { base, depth };
    this.globDirs.set(dir, entry);
    const setup = this.globWatches.add(dir, key, { follow: depth === 0 });
    this.watchSetup(setup);
    const outcome = await setup;
    if (outcome === 'fuse') this.count('watch_skipped_fuse', dir);
    if (outcome !== 'watched' && this.globDirs.get(dir) === entry) this.unwatchGlobDir(dir);
  }

  /** Stops watching glob dir `dir` and every glob dir below it. */
  private unwatchGlobDir(dir: string): void {
    for (const [d, { base }] of this.globDirs) {
      if (d !== dir && !isInside(d, dir)) continue;
      this.globDirs.delete(d);
      this.globWatches?.remove(d);
      const budget = `glob\u0000${base}`;
      const n = (this.watchBudget.get(budget) ?? 1) - 1;
      if (n > 0) this.watchBudget.set(budget, n);
      else this.watchBudget.delete(budget);
    }
  }

  // ---- watch events ------------------------------------------------------------------------

  /**
   * A watch named `name` in `dir` (null: the platform did not say what changed): `handle` looks at
   * it on the next turn of the loop; events on one entry until then are one look.
   */
  private onDirEvent(
    dir: string,
    name: string | null,
    handle: (dir: string, name: string | null) => Promise<void>,
  ): void {
    if (!this.running) return;
    const due = `${dir}\u0000${name ?? ''}`;
    if (this.eventsDue.has(due)) return;
    if (this.eventsDue.size >= MAX_PENDING) {
      this.count('pending_overflow');
      return;
    }
    this.eventsDue.add(due);
    setImmediate(() => {
      this.eventsDue.delete(due);
      if (this.running) this.track(handle(dir, name));
    });
  }

  /** Something changed in a root or scope dir. */
  private async onRootEvent(dir: string, name: string | null): Promise<void> {
    const root = this.roots.get(dir);
    const scopeRoot = root ? undefined : this.scopeDirs.get(dir);
    if (name === null) {
      if (root) await this.scanRoot(root, true);
      else if (scopeRoot) await this.addScope(dir, scopeRoot, true);
      return;
    }
    if (name.startsWith('.')) return;
    const path = join(dir, name);
    if (root) {
      if (name.startsWith('@')) await this.addScope(path, root, true);
      else await this.consider(path, 'package', root, true);
    } else if (scopeRoot) await this.consider(path, 'package', scopeRoot, true);
  }

  /** Something changed in a directory a path glob's walk watches. */
  private async onGlobEvent(dir: string, name: string | null): Promise<void> {
    const at = this.globDirs.get(dir);
    if (!at) return;
    const g = this.scanBases.get(at.base);
    if (!g) return;
    if (name === null) {
      await this.scanGlob(g, true, dir, at.depth);
      return;
    }
    const path = join(dir, name);
    if (this.isArtifact(path)) {
      await this.consider(path, 'artifact', null, true);
      return;
    }
    if (g.depth <= at.depth) return;
    const st = await this.reads.lstat(path, this.pathKey(at.base, 'glob'));
    if (st.ok && st.value.isDirectory()) {
      await this.scanGlob(g, true, path, at.depth + 1);
    } else if (!st.ok && st.reason === 'missing') {
      this.unwatchGlobDir(path);
      this.schedulePrune();
    }
  }

  private onWatchError(err: unknown): void {
    const code = (err as NodeJS.ErrnoException)?.code;
    // ENOSPC = the inotify watch limit: the rescan schedule still covers everything.
    this.count(code === 'ENOSPC' ? 'watch_limit' : 'watch_error');
    this.log.warn({ err }, 'install watcher error');
  }

  // ---- candidates --------------------------------------------------------------------------

  /** Checks a candidate now; if it is banned but not settled (or not complete yet), keeps checking it. */
  private async consider(
    path: string,
    kind: CandidateKind,
    root: InstallRoot | null,
    fromWatch: boolean,
  ): Promise<void> {
    if (!this.running || !this.matcher) return;
    const existing = this.pending.get(path);
    if (existing) {
      existing.dirty = true;
      return;
    }
    const p: Pending = {
      path,
      kind,
      root,
      key: root ? this.rootKey(root) : this.pathKey(path, 'glob'),
      firstSeen: Date.now(),
      attempts: 0,
      lastFingerprint: null,
      unsettled: 0,
      timer: null,
      running: false,
      dirty: false,
      banned: null,
    };
    const outcome = await this.check(p, fromWatch);
    if (outcome === 'retry') this.enqueue(p);
  }

  private enqueue(p: Pending): void {
    if (!this.running) return;
    if (!this.pending.has(p.path)) {
      if (this.pending.size >= MAX_PENDING) {
        this.count('pending_overflow');
        return;
      }
      this.pending.set(p.path, p);
    }
    const delay =
      p.lastFingerprint !== null
        ? Math.min(SETTLE_MS * 2 ** Math.max(0, p.unsettled - 1), SETTLE_MAX_MS)
        : Math.min(RETRY_MIN_MS * 2 ** p.attempts, RETRY_MAX_MS);
    p.attempts++;
    p.timer = setTimeout(() => {
      p.timer = null;
      this.track(this.recheck(p));
    }, delay);
  }

  private async recheck(p: Pending): Promise<void> {
    if (!this.running || p.running) return;
    p.running = true;
    p.dirty = false;
    try {
      const outcome = await this.check(p, true);
      if (outcome === 'retry' && Date.now() - p.firstSeen < PENDING_MAX_MS) {
        this.enqueue(p);
        return;
      }
      if (outcome === 'retry') this.count('incomplete', p.path);
      this.pending.delete(p.path);
    } finally {
      p.running = false;
    }
  }

  /**
   * One look at a candidate. 'retry' = look again later (package.json not complete, not settled,
   * bin links not there yet); 'done' = reported, not banned, skipped (counted), or turned away:
   * its tree did not answer, and is scanned again once it does (onTreeRecovered).
   */
  private async check(p: Pending, fromWatch: boolean): Promise<'done' | 'retry'> {
    const matcher = this.matcher;
    if (!matcher) return 'done';
    const key = p.key;
    const look = await this.reads.lstat(p.path, key);
    if (!look.ok) {
      this.countFsFailure(look, p.path);
      // Gone after it was seen (its installer removed it, e.g. npm rolling back after a killed
      // install script): report it if it was banned, and look for links it left behind.
      if (look.reason === 'missing') {
        if (p.kind === 'package' && p.root && p.attempts > 0)
          this.track(this.sweepLeftovers(p.root, { hints: p.banned ? [{ path: p.path, ...p.banned }] : [] }));
        this.schedulePrune();
      }
      return 'done';
    }
    let st = look.value;
    if (p.kind === 'package') this.gone.delete(p.path);
    let obs: Observation;
    let contentDir: string;
    if (p.kind === 'package') {
      const root = p.root as InstallRoot;
      let pkgDir = p.path;
      let reportPath = p.path;
      if (st.isSymbolicLink()) {
        const real = await this.reads.realpath(p.path, key);
        if (!real.ok) {
          if (real.reason === 'symlink') this.count('symlink_loop', p.path);
          else if (real.reason !== 'missing') this.countFsFailure(real, p.path);
          return 'done'; // dangling links are not packages
        }
        const rootReal = await this.reads.realpath(root.path, key);
        pkgDir = real.value;
        // pnpm: node_modules/<name> → .pnpm/<name>@<ver>/node_modules/<name> inside the root: the
        // real directory is the package. A link out of the root (npm link) is reported as the link.
        if (isInside(real.value, rootReal.ok ? rootReal.value : root.path)) reportPath = real.value;
        const tst = await this.reads.stat(real.value, key);
        if (!tst.ok || !tst.value.isDirectory()) return 'done';
        if (reportPath === real.value) st = tst.value;
      } else if (!st.isDirectory()) {
        return 'done';
      }
      // Keyed by the tree, not by the owner the entry claims: a user's FUSE daemon says what it
      // likes about ownership, and must not make its stall hold another user's slot.
      const read = await this.reads.readPackageJson(pkgDir, key);
      if (!read.ok) {
        // No answer in time: its tree is scanned again once it answers.
        if (turnedAway(read)) return 'done';
        // Worth waiting for only while an installer may still be writing it: a directory a watch
        // event just named, for at most PENDING_MAX_MS (recheck) on this process's own clock; the
        // file's ctime comes from the file system's clock (an NFS server's, or the kernel's while
        // this process runs with a shifted clock) and cannot be compared with Date.now().
        // A link is created in one step: its target is either a package or not.
        const maybeIncomplete =
          ['missing', 'not_json', 'not_object', 'no_name'].includes(read.reason) && !st.isSymbolicLink();
        if (fromWatch && maybeIncomplete) return 'retry';
        this.count(`package_json_${read.reason}`, p.path);
        return 'done';
      }
      if (!matcher.packageNames.has(read.info.name)) return 'done';
      p.banned = { name: read.info.name, version: read.info.version, uid: st.uid, dev: st.dev };
      // Banned name: wait until it has settled before reporting.
      this.fingerprints++;
      const fp = await this.fingerprint(pkgDir, key);
      if (fp === null) return 'done';
      if (fp !== p.lastFingerprint) {
        p.lastFingerprint = fp;
        p.unsettled++;
        return 'retry';
      }
      const linked = await this.binsLinked(root, read.info.bin, key);
      if (linked === null) return 'done';
      if (!linked && Date.now() - p.firstSeen < BIN_WAIT_MS) return 'retry';
      contentDir = pkgDir;
      const owner = await this.ownerOf(st, key);
      obs = {
        kind: 'package',
        ecosystem: 'npm',
        name: read.info.name,
        version: read.info.version,
        path: reportPath,
        root: root.path,
        manager: root.manager,
        owner,
        treeKey: key,
      };
    } else {
      contentDir = p.path;
      if (st.isDirectory()) this.fingerprints++;
      const fp = st.isDirectory()
        ? await this.fingerprint(p.path, key)
        : `${st.size}:${st.mtimeMs}:${st.ino}`;
      if (fp === null) return 'done';
      if (fp !== p.lastFingerprint) {
        p.lastFingerprint = fp;
        p.unsettled++;
        return 'retry';
      }
      obs = {
        kind: 'path',
        path: p.path,
        isDirectory: st.isDirectory(),
        owner: await this.ownerOf(st, key),
        treeKey: key,
      };
    }
    const identity = `${matcher.policyVersion}|${st.dev}:${st.ino}|${obs.kind === 'package' ? obs.version : ''}`;
    if (obs.kind === 'package') {
      // Gone later = quarantined by us (or reported before): not a reverted install.
      this.noteGone(p.path, matcher.policyVersion);
      this.noteGone(obs.path, matcher.policyVersion);
    }
    if (this.reported.get(obs.path)?.id === identity) return 'done';
    this.reported.set(obs.path, { id: identity, key });
    this.observations++;
    this.log.debug({ path: obs.path, kind: obs.kind, dir: contentDir }, 'banned install observed');
    try {
      await this.options.onObservation(obs);
    } catch (err) {
      this.log.error({ err }, 'onObservation threw');
    }
    return 'done';
  }

  /**
   * The owner of what an observation reports, from its (l)stat: every observation's owner comes
   * from here. On a FUSE mount a user made, the mount's user (mountinfo `user_id=`): its daemon
   * answers stat, and can name root or another user — one a user or group exception lets off —
   * as the owner. When no mount of the table has the stat's device any more (the user unmounted
   * it lazily while their daemon held guardd's last look, so that the table read after the stat
   * no longer names its user; or a btrfs subvolume), the user whose home holds the tree (`key`,
   * a uid) — outside every home, `st_uid`. Elsewhere the file system's `st_uid`. Waits (bounded)
   * for the uid's NSS lookup when the directory cannot name it yet.
   */
  private async ownerOf(st: { readonly uid: number; readonly dev: number }, key: TreeKey): Promise<Owner> {
    const mounted = await fuseMountUser(st.dev);
    const uid =
      typeof mounted === 'number'
        ? mounted
        : mounted === 'unlisted' && typeof key === 'number'
          ? key
          : st.uid;
    await this.options.users.settle(uid, OWNER_WAIT_MS);
    return this.options.users.owner(uid);
  }

  /**
   * Whether every declared bin of a package in an npm prefix has its link (true when there is
   * nothing to wait for); null when its tree did not answer.
   */
  private async binsLinked(
    root: InstallRoot,
    bins: Readonly<Record<string, string>>,
    key: TreeKey,
  ): Promise<boolean | null> {
    const names = Object.keys(bins);
    if (names.length === 0 || root.layout !== 'npm') return true;
    const win = this.options.platform === 'win32';
    const parent = dirname(root.path);
    let binDir: string;
    if (win) binDir = parent;
    else if (basename(parent) === 'lib') binDir = join(dirname(parent), 'bin');
    else return true;
    for (const n of names) {
      const link = await this.reads.lstat(join(binDir, win ? `${n}.cmd` : n), key);
      if (turnedAway(link)) return null;
      if (!link.ok) return false;
    }
    return true;
  }

  /**
   * count:bytes:newest-mtime of a tree walked with lstat (bounded), to tell when a write burst
   * ended; null when its tree did not answer.
   */
  private async fingerprint(dir: string, key: TreeKey): Promise<string | null> {
    let entries = 0;
    let bytes = 0;
    let newest = 0;
    const stack = [dir];
    while (stack.length > 0 && entries < FINGERPRINT_MAX_ENTRIES) {
      const d = stack.pop() as string;
      const list = await this.reads.readdir(d, key);
      if (turnedAway(list)) return null;
      if (!list.ok) continue;
      for (const e of list.value) {
        if (++entries > FINGERPRINT_MAX_ENTRIES) break;
        const st = await this.reads.lstat(join(d, e.name), key);
        if (turnedAway(st)) return null;
        if (!st.ok) continue;
        bytes += st.value.size;
        newest = Math.max(newest, st.value.mtimeMs, st.value.ctimeMs);
        if (st.value.isDirectory()) stack.push(join(d, e.name));
      }
    }
    return `${entries}:${bytes}:${newest}`;
  }

  /**
   * Reports banned packages of `root` that are gone but left a trace: `hints` (candidates whose
   * package.json named a banned package, now vanished) and every symlink in the root's bin dirs
   * whose target lies in `<root>/<banned name>` while nothing is there (npm removed the package
   * and, when it had created it, the root: its bin links stay). Each former path once per policy
   * (`gone`), and never a path this sensor reported installed (quarantined by guardd, not
   * reverted). Reads only: removal is the quarantine action's (as the owner). `ifChanged`: skip
   * bin dirs whose stat is what it was at the last look (absent roots, on every discovery).
   * A sweep that could not look everywhere is done again (sweepAgain); `attempt` counts the
   * sweeps in a row whose reads were turned away. One sweep of a root at a time: one asked for
   * while another runs or is due joins the one due (a user's candidates vanishing together cost
   * one read of the bin dirs, not one each).
   */
  private async sweepLeftovers(
    root: InstallRoot,
    opts: { hints: readonly LeftoverHint[]; ifChanged?: boolean; attempt?: number },
  ): Promise<void> {
    const matcher = this.matcher;
    if (!this.running || !matcher || matcher.packageNames.size === 0) return;
    const attempt = opts.attempt ?? 0;
    if (this.sweepsInFlight.has(root.path) || (opts.hints.length > 0 && this.sweepRetries.has(root.path))) {
      this.sweepAgain(root, opts.hints, attempt);
      return;
    }
    this.sweepsInFlight.add(root.path);
    this.sweeps++;
    // Set when a read was turned away (busy or past its deadline): what it would have shown is unknown.
    let stalled = false;
    try {
      const key = this.rootKey(root);
      const p = this.options.platform === 'win32' ? win32 : posix;
      const found = new Map<string, BannedSeen>();
      for (const h of opts.hints) found.set(h.path, h);
      for (const dir of binDirsFor(root, this.options.platform)) {
        let id: string | null = null;
        if (opts.ifChanged) {
          const st = await this.reads.stat(dir, key);
          if (!st.ok && st.reason !== 'missing') {
            stalled ||= turnedAway(st);
            continue;
          }
          id = st.ok ? `${st.value.dev}:${st.value.ino}:${st.value.mtimeMs}:${st.value.ctimeMs}` : '';
          if (this.binDirSeen.get(dir) === id) continue;
        }
        const list = id === '' ? null : await this.reads.readdir(dir, key);
        if (id !== null && (list === null || list.ok || list.reason === 'missing')) {
          // Remembered only once looked at (a stalled read is tried again at the next discovery).
          this.binDirSeen.delete(dir);
          if (this.binDirSeen.size >= MAX_BIN_DIRS_REMEMBERED) {
            const oldest = this.binDirSeen.keys().next().value;
            if (oldest !== undefined) this.binDirSeen.delete(oldest);
          }
          this.binDirSeen.set(dir, id);
        }
        if (list && turnedAway(list)) stalled = true;
        if (!list?.ok) continue;
        let links = 0;
        for (const entry of list.value.slice(0, MAX_DIR_ENTRIES)) {
          if (!entry.isSymbolicLink()) continue;
          if (++links > MAX_SWEEP_LINKS) {
            this.count('leftover_sweep_truncated', dir);
            break;
          }
          const link = p.join(dir, entry.name);
          const raw = await this.reads.readlink(link, key);
          if (!raw.ok) {
            stalled ||= turnedAway(raw);
            continue;
          }
          const rel = p.relative(root.path, p.resolve(dir, raw.value));
          if (rel.length === 0 || rel.startsWith('..') || p.isAbsolute(rel)) continue;
          const segs = rel.split(p.sep);
          const nameSegs = segs[0]?.startsWith('@') ? segs.slice(0, 2) : segs.slice(0, 1);
          const name = nameSegs.join('/');
          if (nameSegs.length === 0 || name.startsWith('.') || !matcher.packageNames.has(name)) continue;
          const former = p.join(root.path, ...nameSegs);
          if (found.has(former)) continue;
          const lst = await this.reads.lstat(link, key);
          if (lst.ok) found.set(former, { name, version: null, uid: lst.value.uid, dev: lst.value.dev });
          else stalled ||= turnedAway(lst);
        }
      }
      for (const [former, seen] of found) {
        if (this.gone.get(former) === matcher.policyVersion || !this.running) continue;
        // Only what is really not there: a package at the path is the scan's, not ours.
        const there = await this.reads.lstat(former, key);
        if (there.ok || there.reason !== 'missing') {
          stalled ||= turnedAway(there);
          continue;
        }
        // Checked again with no await before noting: two sweeps (a vanished candidate and its
        // vanished root) may have looked at the same path at once.
        if (this.gone.get(former) === matcher.policyVersion || !this.running) continue;
        this.noteGone(former, matcher.policyVersion);
        this.reverted++;
        const obs: Observation = {
          kind: 'package',
          ecosystem: 'npm',
          name: seen.name,
          version: seen.version,
          path: former,
          root: root.path,
          manager: root.manager,
          owner: await this.ownerOf(seen, key),
          treeKey: key,
          removed: true,
        };
        this.observations++;
        this.log.info({ path: former, name: seen.name }, 'banned package removed by its installer');
        try {
          await this.options.onObservation(obs);
        } catch (err) {
          this.log.error({ err }, 'onObservation threw');
        }
      }
      if (stalled) this.sweepAgain(root, opts.hints, attempt + 1);
    } finally {
      this.sweepsInFlight.delete(root.path);
    }
  }

  /**
   * Sweeps `root` again SWEEP_RETRY_MS from now (one pending retry per root, keeping every hint).
   * `attempt` > SWEEP_RETRIES: given up, counted `leftover_sweep_stalled`.
   */
  private sweepAgain(root: InstallRoot, hints: readonly LeftoverHint[], attempt: number): void {
    if (!this.running) return;
    if (attempt > SWEEP_RETRIES) {
      this.count('leftover_sweep_stalled', root.path);
      return;
    }
    let retry = this.sweepRetries.get(root.path);
    if (!retry) {
      const r: SweepRetry = {
        timer: setTimeout(() => {
          this.sweepRetries.delete(root.path);
          if (!this.running) return;
          this.track(this.sweepLeftovers(root, { hints: [...r.hints.values()], attempt: r.attempt }));
        }, SWEEP_RETRY_MS),
        hints: new Map(),
        attempt,
      };
      retry = r;
      this.sweepRetries.set(root.path, r);
    }
    retry.attempt = Math.max(retry.attempt, attempt);
    for (const h of hints) if (retry.hints.size < MAX_PENDING) retry.hints.set(h.path, h);
  }

  /** Sweeps an absent root's bin dirs now, or once at the end of its ABSENT_SWEEP_INTERVAL_MS. */
  private sweepAbsent(root: InstallRoot): void {
    if (!this.running || this.absentTimers.has(root.path)) return;
    const wait = (this.absentSwept.get(root.path) ?? Number.NEGATIVE_INFINITY) + ABSENT_SWEEP_INTERVAL_MS;
    const run = (): void => {
      this.absentSwept.delete(root.path);
      if (this.absentSwept.size >= MAX_BIN_DIRS_REMEMBERED) this.absentSwept.clear();
      this.absentSwept.set(root.path, performance.now());
      this.track(this.sweepLeftovers(root, { hints: [], ifChanged: true }));
    };
    const delay = wait - performance.now();
    if (delay <= 0) {
      run();
      return;
    }
    const t = setTimeout(() => {
      this.absentTimers.delete(root.path);
      if (this.running) run();
    }, delay);
    this.absentTimers.set(root.path, t);
  }

  /** Remembers that `path` was reported (installed or removed) under policy `version`. */
  private noteGone(path: string, version: number): void {
    this.gone.delete(path);
    if (this.gone.size >= MAX_SKIPPED_REMEMBERED) {
      const oldest = this.gone.keys().next().value;
      if (oldest !== undefined) this.gone.delete(oldest);
    }
    this.gone.set(path, version);
  }

  /** Forgets reported paths that are gone, so a reinstall at the same path is reported again. */
  private async pruneReported(): Promise<void> {
    for (const [path, { key }] of [...this.reported]) {
      const there = await this.reads.lstat(path, key);
      if (!there.ok && there.reason === 'missing') this.reported.delete(path);
    }
  }

  /** pruneReported soon, once (a removal seen by a watch or a look); one at a time. */
  private schedulePrune(): void {
    if (this.reported.size === 0) return;
    if (this.pruning) {
      this.pruneAgain = true;
      return;
    }
    this.pruning = true;
    this.track(
      (async () => {
        try {
          do {
            this.pruneAgain = false;
            await this.pruneReported();
          } while (this.pruneAgain && this.running);
        } finally {
          this.pruning = false;
        }
      })(),
    );
  }

  private pruning = false;
  private pruneAgain = false;

  /**
   * The install gate's key of a path: the uid of the user whose home holds it (all of a user's
   * calls share one slot, so their stalled tree holds one), the home itself when no user has it,
   * else `outside` (`system`; `glob` for path globs out of every home, which may name a dir users
   * share, so that a stall there does not hold the system prefixes). Homes as of the last discovery.
   */
  private pathKey(path: string, outside = 'system'): TreeKey {
    const home = this.homeList.find((h) => path === h || isInside(path, h));
    return home === undefined ? outside : (this.homeKeys.get(home) ?? home);
  }

  /**
   * The key of everything below a root: its home's (a root another user's `.npmrc` names, or one
   * out of every home that a user's link leads to, is still that user's tree), or its path's.
   */
  private rootKey(root: InstallRoot): TreeKey {
    return root.home !== null ? (this.homeKeys.get(root.home) ?? root.home) : this.pathKey(root.path);
  }

  /** Whether `p` is a directory (following links); false when its tree did not answer. */
  private async isDir(p: string, key: TreeKey): Promise<boolean> {
    const st = await this.reads.stat(p, key);
    return st.ok && st.value.isDirectory();
  }

  /**
   * Which glob bases exist, and for each other one the nearest existing ancestor — not above the
   * home it is in (or two levels below /) — with its tree's key. A `~` glob has a base under every
   * home (a 1,000-rule policy and 100 homes: 100,000 bases), so a directory is looked at once
   * however many bases lie below it, a missing one answers for everything below it, and a
   * directory that bases name LIST_FANOUT or more children of is listed once instead of each child
   * statted: the cost follows the directories that exist, not bases × homes (statting each base
   * and each of its ancestors held discovery for minutes).
   */
  private async locateBases(
    bases: readonly string[],
  ): Promise<{ existing: Set<string>; anchors: Map<string, TreeKey> }> {
    const homes = new Set(this.homeList);
    const floorOf = (p: string): { floor: string; key: TreeKey } => {
      for (let a = p; ; a = dirname(a)) {
        if (homes.has(a)) return { floor: a, key: this.homeKeys.get(a) ?? a };
        if (dirname(a) === a) break;
      }
      // out of every home: not above its first two segments
      const segs = p.split('/');
      let i = 0;
      for (let n = 0; i < segs.length && n < 2; i++) if (segs[i] !== '') n++;
      return { floor: segs.slice(0, i).join('/') || '/', key: 'glob' };
    };
    const where = new Map(bases.map((b) => [b, floorOf(b)]));
    // parent → the names of its children on the way down to a base
    const children = new Map<string, Set<string>>();
    for (const [b, { floor }] of where)
      for (let p = b; p !== floor && dirname(p) !== p; p = dirname(p)) {
        const names = children.get(dirname(p)) ?? new Set<string>();
        names.add(basename(p));
        children.set(dirname(p), names);
      }
    const known = new Map<string, Promise<boolean>>();
    const listings = new Map<string, Promise<Set<string> | null>>();
    const exists = (p: string, floor: string, key: TreeKey): Promise<boolean> => {
      let v = known.get(p);
      if (v === undefined) {
        v = (async () => {
          const parent = dirname(p);
          if (p !== floor && parent !== p) {
            if (!(await exists(parent, floor, key))) return false;
            if ((children.get(parent)?.size ?? 0) >= LIST_FANOUT) {
              let listed = listings.get(parent);
              if (listed === undefined) {
                listed = this.listDir(parent, key).then((n) =>
                  n && n.length < MAX_DIR_ENTRIES ? new Set(n) : null,
                );
                listings.set(parent, listed);
              }
              const names = await listed;
              if (names && !names.has(basename(p))) return false;
            }
          }
          return this.isDir(p, key);
        })();
        known.set(p, v);
      }
      return v;
    };
    const existing = new Set<string>();
    const anchors = new Map<string, TreeKey>();
    for (const [b, { floor, key }] of where) {
      if (await exists(b, floor, key)) {
        existing.add(b);
        continue;
      }
      for (let p = b; p !== floor && dirname(p) !== p; ) {
        p = dirname(p);
        if (await exists(p, floor, key)) {
          if (!anchors.has(p)) anchors.set(p, key);
          break;
        }
      }
    }
    return { existing, anchors };
  }

  private track(p: Promise<unknown>): void {
    const t = p
      .catch((err: unknown) => this.log.error({ err }, 'install check failed'))
      .finally(() => this.inFlight.delete(t));
    this.inFlight.add(t);
  }

  /**
   * Counts a skip. With a `path`, each (reason, path) is counted once — rescans and catch-up passes
   * see the same broken package again — so the numbers mean "distinct things skipped".
   */
  private count(reason: string, path?: string): void {
    if (path !== undefined) {
      const key = `${reason}\u0000${path}`;
      if (this.skippedSeen.has(key)) return;
      if (this.skippedSeen.size < MAX_SKIPPED_REMEMBERED) this.skippedSeen.add(key);
    }
    this.skipped[reason] = (this.skipped[reason] ?? 0) + 1;
  }

  /** Counts a failed look at `path` (gone or turned away: not counted; the tree's stall is). */
  private countFsFailure(r: SafePathResult<unknown>, path: string): void {
    if (r.ok || r.reason === 'missing' || turnedAway(r)) return;
    this.count(
      r.reason === 'permission_denied'
        ? 'permission_denied'
        : r.reason === 'symlink'
          ? 'symlink_loop'
          : 'unreadable',
      path,
    );
  }
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel.length > 0 && !rel.startsWith('..') && !isAbsolute(rel);
}

function toPosix(p: string): string {
  return p.includes('\\') ? p.replace(/\\/g, '/') : p;
}
