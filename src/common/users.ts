/**
 * Owns answering "who is uid N" (name, groups, home) and "which users have homes here", from the
 * OS's own user database: on Linux through NSS — what `getent` sees, so users and groups served by
 * SSSD, LDAP or AD (winbind) count like those in /etc/passwd — the `dscl` directory on macOS, the
 * profile folders on Windows. Used to fill `Owner` in observations, to evaluate user/group
 * exceptions, and to find every user's install roots. Also who made a FUSE mount (`userFuseDevices`):
 * the owner a user's own FUSE daemon reports for its files is that user's word, not a fact.
 *
 * Why `getent`/`id` children and not an addon calling getpwuid_r/getgrouplist: the NSS modules
 * (sssd, ldap, winbind) then run in a short-lived child, not inside the root daemon — a module
 * that hangs is killed at NSS_LOOKUP_TIMEOUT_MS, one that leaks or crashes takes nothing with it,
 * and no native build is needed. The cost is a spawn per lookup, paid once per uid per TTL: the
 * answers are cached (bounded, positive and negative TTLs) and dropped when /etc/passwd,
 * /etc/group or /etc/nsswitch.conf change. The children are found through guardd's PATH, which
 * the service manager sets (root's, fixed); whoever sets it is root already.
 *
 * Nothing here blocks on the caller's time:
 *  - owner() answers from the cache, or from /etc/passwd and /etc/group while the uid's lookup runs
 *    in the background (at most NSS_MAX_CONCURRENT_LOOKUPS at once, NSS_MAX_QUEUED_LOOKUPS
 *    waiting), and a caller that can wait asks `settle` first, bounded. A uid neither cached nor in
 *    the files is unknown until its lookup answers: it matches no user or group exception (the
 *    strict side).
 *  - users() answers from the last completed *round* — `getent passwd` enumeration (re-run every
 *    NSS_POSITIVE_TTL_MS) plus the owner of every directory under the home roots, looked up by uid
 *    (SSSD and AD do not enumerate) — and starts a round in the background when that answer is
 *    older than USERS_REFRESH_MS (one at a time). Before the first round ended it answers from
 *    /etc/passwd. A round's fs calls (the home roots' listings and each home's stat) run off the
 *    event loop through `homesGate` with a deadline (safe-read.ts): a home on an NFS server that
 *    hangs keeps its owner from the last round that answered (or is left out), and its stuck stat,
 *    which holds a gate slot and a pool thread until the kernel answers, is not asked again until
 *    it returned. A home that is its user's own FUSE mount is never statted (mountinfo names its
 *    user). `onChange` tells the callers holding an answer that a round changed it (guardd then
 *    recompiles the policy for the new homes, and the install sensor, told of the new matcher,
 *    rescans); `settleUsers` lets a caller that can wait (the CLI) wait, bounded.
 *  - macOS's `dscl` runs in the background the same way; Windows lists its profile folders.
 * Without `getent` (a minimal container) the files are parsed as before.
 *
 * Files and command output are parsed defensively (a malformed line must not stop the daemon).
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Owner } from '../sensors/observation.js';
import { ReadGate, USER_READ_TIMEOUT_MS } from '../sensors/safe-read.js';
import { deviceName, type MountEntry, parseMountinfo } from './mountinfo.js';
import type { Platform } from './platform-paths.js';

export interface UserRecord {
  readonly uid: number;
  readonly name: string;
  readonly home: string;
  readonly shell: string;
}

export interface UserDirectoryOptions {
  readonly platform: Platform;
  /** Overrides for tests and the local mode: read these files instead of asking NSS (Linux). */
  readonly passwdFile?: string;
  readonly groupFile?: string;
  /** Directories whose subdirectories are homes: their owners count as users (default /home). */
  readonly homeRoots?: readonly string[];
  /** How old users()'s answer may get before a call starts a round (ms; default USERS_REFRESH_MS). */
  readonly refreshMs?: number;
}

/** One NSS lookup (a `getent`/`id` child) is killed after this long: a hung SSSD/LDAP must not hold guardd. */
export const NSS_LOOKUP_TIMEOUT_MS = 2_000;
/**
 * A found user is re-asked after 10 min: group membership changed in the directory reaches
 * exceptions within that (SSSD itself caches entries for 90 min by default).
 */
export const NSS_POSITIVE_TTL_MS = 10 * 60 * 1000;
/** An unknown uid (or a failed lookup, e.g. SSSD offline) is re-asked after 60 s: at most one spawn per uid per minute. */
export const NSS_NEGATIVE_TTL_MS = 60 * 1000;
/**
 * At most this many uids are cached (oldest dropped first): a laptop has a handful, a shared build
 * host some hundreds; a flood of processes under random uids cannot grow the heap past ~1 MiB.
 */
export const NSS_CACHE_MAX_ENTRIES = 4096;
/** Files whose change means NSS may answer differently: the caches are dropped. */
const NSS_STAMP_FILES = ['/etc/passwd', '/etc/group', '/etc/nsswitch.conf'] as const;
/** Lines of `getent passwd` enumeration read at most (a directory that enumerates can be huge). */
const MAX_ENUMERATED_USERS = 100_000;
/** Output of one lookup child read at most (bytes): enumeration of 100k users is ~10 MiB. */
const MAX_LOOKUP_OUTPUT_BYTES = 16 * 1024 * 1024;

interface CachedOwner {
  readonly owner: Owner;
  readonly record: UserRecord | null;
  readonly expiresAt: number;
}

/** Lookups (a `getent` + an `id` child each) running at once: two keep a burst moving without a spawn storm. */
export const NSS_MAX_CONCURRENT_LOOKUPS = 2;
/**
 * Uids waiting for a lookup at most; beyond it a uid is not queued (counted `dropped`) and is
 * asked again the next time it is seen. A user who runs processes under thousands of uids (their
 * /etc/subuid range, through newuidmap) can only make lookups late, never block guardd.
 */
export const NSS_MAX_QUEUED_LOOKUPS = 256;
/**
 * A caller that can wait for a uid's lookup (the process and install sensors, via `settle`) waits
 * this long at most (ms; getent answers in a few ms when the directory does): then the uid is
 * taken as unknown — no user or group exception matches it.
 */
export const OWNER_WAIT_MS = 500;
/** The change stamps of NSS_STAMP_FILES are read at most this often (ms), not on every owner(). */
const STAMP_CHECK_MS = 1000;
/**
 * users() starts a round (enumeration when its TTL ran out, the home roots listed and statted)
 * when its answer is older than this (ms): a home made for a directory user at first login
 * (pam_mkhomedir, no /etc/passwd change) counts within it once something asks, and a loop of
 * callers costs at most one round per 30 s.
 */
export const USERS_REFRESH_MS = 30_000;
/**
 * A round waits this long at most (ms) for the lookups of home owners NSS did not enumerate (a
 * `getent` and an `id` child each); one not answered by then counts from a later round.
 */
const HOME_OWNER_WAIT_MS = 2 * NSS_LOOKUP_TIMEOUT_MS;
/**
 * A caller that can wait for a round (the CLI: the first answer, enumeration included) waits this
 * long at most (ms): enumeration, the listing and the stats each end by their deadline of 2 s.
 */
export const USERS_ROUND_WAIT_MS = 3 * NSS_LOOKUP_TIMEOUT_MS;
/** Home-root entries statted at once per batch (each batch ends by one deadline whatever stalls). */
const HOME_STAT_BATCH = 256;
/**
 * Calls of a round into the home roots in flight at once: a home on a hung NFS server pins one
 * (with its pool thread) until the server answers, and the other homes are statted through the
 * second. Each path is its own key, asked once at a time.
 */
const HOMES_MAX_IN_FLIGHT = 2;
/** The gate of the rounds' listings of the home roots and stats of the homes (one per process). */
const homesGate = new ReadGate('user_homes', HOMES_MAX_IN_FLIGHT, 1);
/**
 * Paths whose call through `homesGate` outlived its deadline and has not returned yet: asked
 * again only once it returned, so a stalled home holds one slot, not one more per round.
 */
const stuckPaths = new Set<string>();

/** What a round's call into a home root came to: its value (null when it failed), or no answer in time. */
type Asked<T> = { readonly answered: true; readonly value: T | null } | { readonly answered: false };

/**
 * Answers from NSS through `getent` and `id` children, cached, and never on the caller's time:
 * owner() answers from the cache (a stale entry too, while it is asked again) or not at all, and
 * starts an asynchronous lookup for a uid it cannot answer; `settle` lets a caller that may wait
 * (the process sensor) wait for it, bounded.
 */
class NssUsers {
  private readonly cache = new Map<number, CachedOwner>();
  private readonly inflight = new Map<number, Promise<void>>();
  private readonly queue: { uid: number; done: () => void }[] = [];
  private running = 0;
  private enumerated: { users: UserRecord[]; expiresAt: number } | null = null;
  /** The last completed round's users and when it ended (Date.now() ms); null before the first. */
  private answer: { users: UserRecord[]; at: number } | null = null;
  /** The round running now. */
  private round: Promise<void> | null = null;
  /** Bumped when the stamps change: a round started before answers stale. */
  private generation = 0;
  /** Home root → its homes' owners (path → uid) as last answered: kept for a home that stalls. */
  private homeOwners = new Map<string, Map<string, number>>();
  private stamp = '';
  private stampCheckedAt = Number.NEGATIVE_INFINITY;
  /** Set when `getent` cannot be run here: the caller falls back to the files. */
  unavailable = false;
  readonly counts = { lookups: 0, completed: 0, dropped: 0 };
  /** Rounds ended; home-root calls that did not answer by their deadline (or found no slot); ones not asked (stuck). */
  readonly roundCounts = { rounds: 0, homeTimeouts: 0, homesSkipped: 0 };

  /**
   * @param onRound called after each round ended (its answer is in users() from then on).
   */
  constructor(
    private readonly homeRoots: readonly string[],
    private readonly refreshMs: number,
    private readonly onRound: () => void,
    private readonly mountinfo = '/proc/self/mountinfo',
  ) {}

  /** The cached owner of `uid` (stale ones too, refreshed in the background); null when unknown yet. */
  owner(uid: number): Owner | null {
    const hit = this.cached(uid);
    return hit ? hit.owner : null;
  }

  /** Lookups waiting and running now. */
  get pending(): number {
    return this.inflight.size;
  }

  /**
   * Null when `uid` is answered from the cache; else a promise that resolves when its lookup
   * finished or `maxWaitMs` passed, whichever is first (never rejects).
   */
  settle(uid: number, maxWaitMs: number): Promise<void> | null {
    if (this.cached(uid)) return null;
    const p = this.inflight.get(uid);
    return p ? bounded(p, maxWaitMs) : null;
  }

  /**
   * The last completed round's users — NSS's enumeration plus the owners of the homes under the
   * home roots — or null before the first ended. Never waits: `start` (default) starts a round when
   * the answer is stale and none runs.
   */
  users(start = true): UserRecord[] | null {
    this.invalidateOnChange();
    if (start && this.stale()) this.startRound();
    return this.answer?.users ?? null;
  }

  /** Resolves when the round running (or one started now, the answer being stale) ended, or after `maxWaitMs`. */
  settleUsers(maxWaitMs: number): Promise<void> {
    this.invalidateOnChange();
    if (this.stale()) this.startRound();
    return this.round ? bounded(this.round, maxWaitMs) : Promise.resolve();
  }

  private stale(): boolean {
    const now = Date.now();
    return (
      !this.answer ||
      this.answer.at + this.refreshMs <= now ||
      !this.enumerated ||
      this.enumerated.expiresAt <= now
    );
  }

  private startRound(): void {
    if (this.round || this.unavailable) return;
    const generation = this.generation;
    this.round = this.runRound(generation)
      .catch(() => undefined)
      .finally(() => {
        this.round = null;
        this.roundCounts.rounds++;
        try {
          this.onRound();
        } catch {
          // The answer is in place; telling about it is the listener's business.
        }
      });
  }

  private async runRound(generation: number): Promise<void> {
    if (!this.enumerated || this.enumerated.expiresAt <= Date.now()) {
      let missing = false;
      const out = await runAsync('getent', ['passwd'], (err) => {
        if (err === 'ENOENT') missing = true;
      });
      if (missing) {
        this.unavailable = true;
        return;
      }
      // A directory that did not answer (SSSD offline, killed at the timeout): the last
      // enumeration, or the files, asked again sooner.
      this.enumerated =
        out !== null
          ? {
              users: parsePasswd(out).slice(0, MAX_ENUMERATED_USERS),
              expiresAt: Date.now() + NSS_POSITIVE_TTL_MS,
            }
          : {
              users: this.enumerated?.users ?? parsePasswd(readLines('/etc/passwd').join('\n')),
              expiresAt: Date.now() + NSS_NEGATIVE_TTL_MS,
            };
    }
    const enumerated = this.enumerated;
    const byUid = new Map<number, UserRecord>();
    for (const u of enumerated.users) if (!byUid.has(u.uid)) byUid.set(u.uid, u);
    const owners = new Set<number>();
    for (const homes of (await this.listHomes(enumerated.users)).values())
      for (const uid of homes.values()) if (!byUid.has(uid)) owners.add(uid);
    // Their lookups go first (see `cached`); the round waits for them, bounded.
    const waits: Promise<void>[] = [];
    for (const uid of owners) {
      this.cached(uid, true);
      const wait = this.settle(uid, HOME_OWNER_WAIT_MS);
      if (wait) waits.push(wait);
    }
    await Promise.all(waits);
    for (const uid of owners) {
      const record = this.cache.get(uid)?.record;
      if (record) byUid.set(uid, record);
    }
    this.answer = { users: [...byUid.values()], at: Date.now() };
    // The stamps changed meanwhile: this answer stands until a round under the new ones ends.
    if (generation !== this.generation) this.answer.at = Number.NEGATIVE_INFINITY;
  }

  /**
   * Home root → its homes' owners (path → uid), each root listed and each home statted through
   * `homesGate`. A home that is its user's own FUSE mount is not statted: with `allow_other` its
   * daemon answers root's stat (any owner it likes) or never does; its owner is the mount's user,
   * which mountinfo says — under the root's real path (`/home` a link to `/var/home`, as on
   * Fedora Atomic). A root or home that did not answer keeps what the last round knew of it.
   *
   * A home is statted under its user's key (the uid the last round found, or whose passwd home it
   * is; else its path), like every other call into that user's files: a stat their FUSE mount
   * holds (one made after the table was read, or reached through an admin's link) counts against
   * that user's share of the pool threads, never adds a pinned thread beyond it.
   */
  private async listHomes(known: readonly UserRecord[]): Promise<Map<string, Map<string, number>>> {
    const userMounts = userFuseMounts(this.mountinfo);
    const byHome = new Map(known.map((u) => [u.home, u.uid]));
    const out = new Map<string, Map<string, number>>();
    for (const root of this.homeRoots) {
      const before = this.homeOwners.get(root) ?? new Map<string, number>();
      const listed = await this.ask(root, () => readdir(root));
      if (!listed.answered) {
        out.set(root, before);
        continue;
      }
      const resolved = await this.ask(root, () => realpath(root));
      const realRoot = resolved.answered && resolved.value !== null ? resolved.value : root;
      const homes = new Map<string, number>();
      out.set(root, homes);
      const names = listed.value ?? [];
      for (let i = 0; i < names.length; i += HOME_STAT_BATCH) {
        await Promise.all(
          names.slice(i, i + HOME_STAT_BATCH).map(async (name) => {
            const path = join(root, name);
            const real = join(realRoot, name);
            const mountedBy = userMounts.get(real) ?? userMounts.get(path);
            if (mountedBy !== undefined) {
              homes.set(path, mountedBy);
              return;
            }
            const key = before.get(path) ?? byHome.get(path) ?? byHome.get(real) ?? path;
            const st = await this.ask(path, () => stat(path), key);
            if (!st.answered) {
              const was = before.get(path);
              if (was !== undefined) homes.set(path, was);
            } else if (st.value?.isDirectory()) homes.set(path, st.value.uid);
          }),
        );
      }
    }
    this.homeOwners = out;
    return out;
  }

  /**
   * `call` (one fs call on `path`) through `homesGate` under `key` (default the path; a home's
   * user's uid, see listHomes) with a deadline; not run while an earlier
   * call on `path` is stuck, nor while stuck calls hold every slot of the gate (it would only wait
   * for its deadline in the line).
   */
  private async ask<T>(path: string, call: () => Promise<T>, key: string | number = path): Promise<Asked<T>> {
    if (stuckPaths.has(path) || stuckPaths.size >= HOMES_MAX_IN_FLIGHT) {
      this.roundCounts.homesSkipped++;
      return { answered: false };
    }
    let returned = false;
    const r = await homesGate.run(key, USER_READ_TIMEOUT_MS, () =>
      call()
        .catch(() => null)
        .finally(() => {
          returned = true;
          stuckPaths.delete(path);
        }),
    );
    if (r.admitted && !r.timedOut) return { answered: true, value: r.value };
    this.roundCounts.homeTimeouts++;
    if (r.admitted && !returned) stuckPaths.add(path);
    return { answered: false };
  }

  /**
   * The cache entry of `uid` (fresh or stale); starts a lookup when it is missing or stale.
   * `home`: the uid owns a home directory — its lookup goes first and is never refused for a full
   * queue (home directories bound it), so processes under thousands of other uids cannot keep a
   * directory user's home from being found and scanned.
   */
  private cached(uid: number, home = false): CachedOwner | undefined {
    this.invalidateOnChange();
    const hit = this.cache.get(uid);
    if (!hit || hit.expiresAt <= Date.now()) this.startLookup(uid, home);
    return hit;
  }

  private startLookup(uid: number, home: boolean): void {
    if (this.inflight.has(uid)) return;
    if (!home && this.queue.length >= NSS_MAX_QUEUED_LOOKUPS) {
      this.counts.dropped++;
      return;
    }
    this.counts.lookups++;
    const p = new Promise<void>((done) => {
      if (home) this.queue.unshift({ uid, done });
      else this.queue.push({ uid, done });
    }).finally(() => {
      this.inflight.delete(uid);
    });
    this.inflight.set(uid, p);
    this.pump();
  }

  private pump(): void {
    while (this.running < NSS_MAX_CONCURRENT_LOOKUPS && this.queue.length > 0) {
      const job = this.queue.shift() as { uid: number; done: () => void };
      this.running++;
      void this.lookup(job.uid).finally(() => {
        this.running--;
        this.counts.completed++;
        job.done();
        this.pump();
      });
    }
  }

  private async lookup(uid: number): Promise<void> {
    const out = await runAsync('getent', ['passwd', String(uid)], (err) => {
      if (err === 'ENOENT') this.unavailable = true;
    });
    const record = parsePasswd(out ?? '').find((u) => u.uid === uid) ?? null;
    let groups: string[] = [];
    if (record) {
      // `id -Gn` asks NSS's initgroups (getgrouplist): the directory's nested and primary groups too.
      const g = await runAsync('id', ['-Gn', '--', record.name]);
      groups = g === null ? [] : [...new Set(g.trim().split(/\s+/).filter(Boolean))];
    }
    const entry: CachedOwner = {
      owner: { uid, user: record?.name ?? null, groups, home: record?.home || null },
      record,
      expiresAt: Date.now() + (record ? NSS_POSITIVE_TTL_MS : NSS_NEGATIVE_TTL_MS),
    };
    this.cache.delete(uid);
    this.cache.set(uid, entry);
    while (this.cache.size > NSS_CACHE_MAX_ENTRIES) {
      const oldest = this.cache.keys().next().value as number;
      this.cache.delete(oldest);
    }
  }

  private invalidateOnChange(): void {
    const now = performance.now();
    if (now - this.stampCheckedAt < STAMP_CHECK_MS) return;
    this.stampCheckedAt = now;
    const stamp = NSS_STAMP_FILES.map(mtime).join('|');
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    this.cache.clear();
    this.enumerated = null;
    this.generation++;
  }
}

/** Resolves when `p` settled or after `ms`, whichever is first (never rejects). */
function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    void p.then(
      () => {
        clearTimeout(t);
        resolve();
      },
      () => {
        clearTimeout(t);
        resolve();
      },
    );
  });
}

/** Runs `cmd` bounded, without blocking: its stdout, or null when it failed, found nothing or timed out. */
function runAsync(
  cmd: string,
  args: readonly string[],
  onError?: (code: string) => void,
): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      [...args],
      {
        encoding: 'utf8',
        timeout: NSS_LOOKUP_TIMEOUT_MS,
        maxBuffer: MAX_LOOKUP_OUTPUT_BYTES,
        killSignal: 'SIGKILL',
      },
      (err, stdout) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (typeof code === 'string') onError?.(code);
          resolve(null);
        } else resolve(stdout);
      },
    );
  });
}

/** passwd(5) lines → records (malformed lines skipped). */
function parsePasswd(text: string): UserRecord[] {
  const out: UserRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 7) continue;
    const uid = Number(f[2]);
    if (!Number.isInteger(uid) || uid < 0 || !f[0]) continue;
    out.push({ uid, name: f[0], home: f[5] ?? '', shell: f[6] ?? '' });
  }
  return out;
}

/**
 * macOS and Windows have no cheap change stamp for their user databases: re-read them at most this
 * often (10 min), so a user created after start has their install roots found at the next rescan.
 */
const OTHER_REFRESH_MS = 10 * 60 * 1000;

/** Shells that mean "not a login user": their homes are not scanned for install roots. */
const NOLOGIN_SHELLS = /(?:nologin|\/false|\/sync|\/shutdown|\/halt)$/;

export class UserDirectory {
  private byUid = new Map<number, UserRecord>();
  private groupsByUser = new Map<string, string[]>();
  private stamp = '';
  /** Linux without file overrides: NSS. Null when reading files (overrides, other platforms, no getent). */
  private readonly nss: NssUsers | null;
  private readonly listeners = new Set<() => void>();
  /** Key (usersKey) of the answer users() last handed out; null before the first. */
  private answeredKey: string | null = null;

  constructor(private readonly options: UserDirectoryOptions) {
    this.nss =
      options.platform === 'linux' && !options.passwdFile && !options.groupFile
        ? new NssUsers(options.homeRoots ?? ['/home'], options.refreshMs ?? USERS_REFRESH_MS, () =>
            this.answerChanged(),
          )
        : null;
  }

  /** The owner record for `uid` (name and home null when unknown). Cheap: cached, refreshed on change. */
  owner(uid: number): Owner {
    if (this.nss && !this.nss.unavailable) {
      const o = this.nss.owner(uid);
      // An unnamed NSS answer (unknown, or the lookup failed) falls back to the files below.
      if (o && o.user !== null) return o;
    }
    this.refresh();
    const u = this.byUid.get(uid);
    return {
      uid,
      user: u?.name ?? null,
      groups: u ? (this.groupsByUser.get(u.name) ?? []) : [],
      home: u?.home ?? null,
    };
  }

  /**
   * Null when `owner(uid)` answers now what it will answer; else a promise that resolves when the
   * uid's NSS lookup (macOS: the first read of the directory) finished or `maxWaitMs` passed (never
   * rejects). For callers that may wait a little for a directory user's first process rather than
   * see it unnamed.
   */
  settle(uid: number, maxWaitMs: number): Promise<void> | null {
    if (this.options.platform === 'darwin') {
      this.refresh();
      return this.stamp === '' && this.darwinLoad ? bounded(this.darwinLoad, maxWaitMs) : null;
    }
    if (!this.nss || this.nss.unavailable) return null;
    const wait = this.nss.settle(uid, maxWaitMs);
    if (wait === null) return null;
    // A user of the files is named (and grouped) by them already; the lookup only refines it.
    this.refresh();
    return this.byUid.has(uid) ? null : wait;
  }

  /** NSS lookups started, finished and not queued (the queue was full); lookups pending now. */
  nssCounts(): { lookups: number; completed: number; dropped: number; pending: number } | null {
    return this.nss ? { ...this.nss.counts, pending: this.nss.pending } : null;
  }

  /**
   * Rounds of users() ended; calls into the home roots that did not answer by their deadline (or
   * found no slot), and ones not made because an earlier one on the same path is still stuck.
   * Null without NSS.
   */
  roundCounts(): { rounds: number; homeTimeouts: number; homesSkipped: number } | null {
    return this.nss ? { ...this.nss.roundCounts } : null;
  }

  /**
   * Every local human user with a home directory (uid 0 included: root installs tools too). Never
   * waits: the last round's answer (before the first ended, /etc/passwd's users), a round started
   * in the background when it is stale (see the module doc).
   */
  users(): UserRecord[] {
    const list = this.currentUsers(true);
    this.answeredKey = usersKey(list);
    return list;
  }

  /**
   * Resolves once the round running (or one started now, the answer being stale) ended, or after
   * `maxWaitMs` (never rejects): then users() answers from it. For a caller that may wait (the CLI).
   */
  settleUsers(maxWaitMs: number): Promise<void> {
    if (this.options.platform === 'darwin') {
      this.refresh();
      return this.darwinLoad ? bounded(this.darwinLoad, maxWaitMs) : Promise.resolve();
    }
    if (!this.nss || this.nss.unavailable) return Promise.resolve();
    return this.nss.settleUsers(maxWaitMs);
  }

  /**
   * Calls `listener` each time a round (or macOS's directory read) ended with an answer that differs
   * from the one users() last handed out — a user or home came or went — so a caller holding the
   * old one can ask again. Not called before users() was first asked. Returns the unsubscribe.
   */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private currentUsers(startRound: boolean): UserRecord[] {
    if (this.nss && !this.nss.unavailable) {
      const list = this.nss.users(startRound);
      if (list && !this.nss.unavailable) return list.filter(isLoginUser);
    }
    this.refresh();
    return [...this.byUid.values()].filter(isLoginUser);
  }

  private answerChanged(): void {
    if (this.answeredKey === null) return;
    const key = usersKey(this.currentUsers(false));
    if (key === this.answeredKey) return;
    this.answeredKey = key;
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch {
        // A listener's failure is its own; the others are still told.
      }
    }
  }

  private refresh(): void {
    if (this.options.platform === 'linux') this.refreshLinux();
    else if (this.stamp === '' || Date.now() - this.loadedAt > OTHER_REFRESH_MS) this.loadOther();
  }

  private loadedAt = 0;

  private refreshLinux(): void {
    const passwd = this.options.passwdFile ?? '/etc/passwd';
    const group = this.options.groupFile ?? '/etc/group';
    const stamp = `${mtime(passwd)}:${mtime(group)}`;
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    this.byUid = new Map();
    const primaryGid = new Map<string, number>();
    for (const line of readLines(passwd)) {
      const f = line.split(':');
      if (f.length < 7) continue;
      const uid = Number(f[2]);
      if (!Number.isInteger(uid) || uid < 0) continue;
      const name = f[0] as string;
      if (!this.byUid.has(uid)) this.byUid.set(uid, { uid, name, home: f[5] ?? '', shell: f[6] ?? '' });
      primaryGid.set(name, Number(f[3]));
    }
    this.groupsByUser = new Map();
    const add = (user: string, g: string): void => {
      const list = this.groupsByUser.get(user) ?? [];
      if (!list.includes(g)) list.push(g);
      this.groupsByUser.set(user, list);
    };
    for (const line of readLines(group)) {
      const f = line.split(':');
      if (f.length < 4) continue;
      const gname = f[0] as string;
      const gid = Number(f[2]);
      for (const member of (f[3] ?? '').split(',').filter(Boolean)) add(member, gname);
      for (const [user, pg] of primaryGid) if (pg === gid) add(user, gname);
    }
  }

  /** macOS's directory read under way (`dscl`, in the background). */
  private darwinLoad: Promise<void> | null = null;

  /** macOS / Windows: read at first use and every OTHER_REFRESH_MS. */
  private loadOther(): void {
    if (this.options.platform === 'darwin') {
      this.loadDarwin();
      return;
    }
    this.stamp = 'loaded';
    this.loadedAt = Date.now();
    this.byUid = new Map();
    // Windows has no uids; ps-list reports none either. Homes are the profile folders.
    const base = join(process.env.SystemDrive ?? 'C:', '\\Users');
    let uid = 1000;
    for (const name of safeReaddir(base)) {
      if (['Public', 'Default', 'Default User', 'All Users'].includes(name)) continue;
      this.byUid.set(uid, { uid, name, home: join(base, name), shell: '' });
      uid++;
    }
  }

  /**
   * Reads the users from `dscl` in the background (opendirectoryd can hang on a network directory
   * like SSSD can); until the first read ended nobody is known. A failed read keeps the last one.
   */
  private loadDarwin(): void {
    if (this.darwinLoad) return;
    this.darwinLoad = new Promise<void>((resolve) => {
      execFile(
        'dscl',
        ['.', '-list', '/Users', 'UniqueID'],
        { encoding: 'utf8', timeout: 5000, maxBuffer: MAX_LOOKUP_OUTPUT_BYTES, killSignal: 'SIGKILL' },
        (err, out) => {
          // dscl missing or failed: owners stay unnamed, homes as last read.
          if (!err) this.byUid = parseDscl(out);
          this.stamp = 'loaded';
          this.loadedAt = Date.now();
          this.darwinLoad = null;
          resolve();
          this.answerChanged();
        },
      );
    });
  }
}

/** `dscl . -list /Users UniqueID` lines → records (system accounts, `_name`, skipped). */
function parseDscl(out: string): Map<number, UserRecord> {
  const byUid = new Map<number, UserRecord>();
  for (const line of out.split('\n')) {
    const m = /^(\S+)\s+(-?\d+)$/.exec(line.trim());
    if (!m || m[1]?.startsWith('_')) continue;
    const name = m[1] as string;
    const uid = Number(m[2]);
    byUid.set(uid, {
      uid,
      name,
      // root's home is /var/root; everyone else's is under /Users (dscl NFSHomeDirectory).
      home: uid === 0 ? '/var/root' : `/Users/${name}`,
      shell: '/bin/zsh',
    });
  }
  return byUid;
}

/** What a users() answer says, independent of order: who, with which home. */
function usersKey(list: readonly UserRecord[]): string {
  return list
    .map((u) => `${u.uid}:${u.name}:${u.home}`)
    .sort()
    .join('\n');
}

function isLoginUser(u: UserRecord): boolean {
  return u.home !== '' && u.home !== '/' && !NOLOGIN_SHELLS.test(u.shell);
}

function mtime(file: string): string {
  try {
    const s = statSync(file);
    return `${s.mtimeMs}:${s.size}:${s.ino}`;
  } catch {
    return 'missing';
  }
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));
  } catch {
    return [];
  }
}

/**
 * Mount point → user of every FUSE mount a user made (`user_id=` not 0), from a mountinfo file
 * (kernel-made: reading it never waits on a daemon); empty when it cannot be read.
 */
function userFuseMounts(file: string): Map<string, number> {
  const out = new Map<string, number>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const m of parseMountinfo(text)) {
    const ids = fuseMountIds(m);
    if (ids) out.set(m.mountPoint, ids.uid);
  }
  return out;
}

/**
 * Device (`major:minor`, as mountinfo prints it and `deviceName` makes of a stat's `st_dev`, which
 * the kernel fills in, not the file system) → user and group of every FUSE mount a user (not root)
 * made, from guardd's mount table (`user_id=`, `group_id=`); empty when it cannot be read (not
 * Linux). What such a mount says of a file's owner and group is its daemon's word, and the daemon
 * is that user's: it can name root or any other user. Async (the table is read off the event
 * loop; it is kernel-made, so reading it never waits on a daemon).
 */
export async function userFuseDevices(
  mountinfo = '/proc/self/mountinfo',
): Promise<Map<string, { readonly uid: number; readonly gid: number }>> {
  const out = new Map<string, { uid: number; gid: number }>();
  let text: string;
  try {
    text = await readFile(mountinfo, 'utf8');
  } catch {
    return out;
  }
  for (const m of parseMountinfo(text)) {
    const ids = fuseMountIds(m);
    if (ids) out.set(m.device, ids);
  }
  return out;
}

/**
 * What guardd's mount table says of the mount a file of device `dev` is on: the user who made it
 * when it is a user's FUSE mount (see userFuseDevices); null when it is another mount of the
 * table; `unlisted` when no mount of the table has that device. Then the file's mount went away
 * since it was statted — a user's FUSE mount lazily unmounted (`fusermount3 -u -z`) between the
 * stat and this read, its daemon holding the last answer meanwhile: what the stat said is that
 * daemon's word — or it is a btrfs subvolume, whose device the table does not list.
 */
export async function fuseMountUser(
  dev: number,
  mountinfo = '/proc/self/mountinfo',
): Promise<number | null | 'unlisted'> {
  let text: string;
  try {
    text = await readFile(mountinfo, 'utf8');
  } catch {
    return null;
  }
  const name = deviceName(dev);
  let listed = false;
  for (const m of parseMountinfo(text)) {
    if (m.device !== name) continue;
    const ids = fuseMountIds(m);
    if (ids) return ids.uid;
    listed = true;
  }
  return listed ? null : 'unlisted';
}

/**
 * User and group of a FUSE mount a user made (`user_id=` not 0, `group_id=` given), else null (a
 * mount of another kind, or root's FUSE mount).
 */
export function fuseMountIds(m: MountEntry): { uid: number; gid: number } | null {
  if (m.fstype !== 'fuse' && !m.fstype.startsWith('fuse.')) return null;
  const opt = (name: string): number =>
    Number(m.superOptions.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1) ?? Number.NaN);
  const uid = opt('user_id');
  const gid = opt('group_id');
  return Number.isInteger(uid) && uid > 0 && Number.isInteger(gid) && gid >= 0 ? { uid, gid } : null;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
