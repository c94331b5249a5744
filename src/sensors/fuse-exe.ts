/**
 * Owns reading the executable of a process that runs from its user's own FUSE mount, which root
 * itself may not read. Such a mount (fusermount3 without `allow_other`, which /etc/fuse.conf
 * withholds from users by default) answers every access by anyone but the user who mounted it
 * with EACCES, root included, without asking its daemon: guardd's open of /proc/<pid>/exe fails,
 * and hash and content-marker rules would never see the program (a renamed copy of a banned one
 * would run). So when that open was refused (exe-hash.ts, content-markers.ts call here), the file
 * is read as that user, the way root touches a user's tree elsewhere: in a short-lived child with
 * the user's credentials (src/enforcement/owner-fs.ts, injected as `session` since sensors do not
 * import enforcement; the composition root passes OwnerSession).
 *
 * Which file: root opens /proc/<pid>/exe with O_PATH — the kernel's link to the very file the
 * process exec'd, named without being opened (no permission check, no request to the daemon) —
 * and hands that descriptor to the child, which opens it through /proc/self/fd/3 with the user's
 * credentials. No path the user could swap is involved, and the process need not let anyone
 * ptrace it (a program may make itself undumpable).
 *
 * Whose credentials: the mount's (`user_id=`, `group_id=` in the process's mountinfo, by the
 * mount id /proc/self/fdinfo gives for the descriptor; ids printed in the terms of the user
 * namespace the mount was made in, translated through the process's uid_map/gid_map), and only
 * when they are the process's own (its real uid and gid now). When they differ nothing is read
 * (`owner_mismatch`): the kernel lets only the mount's user and group (real, effective and saved)
 * through, so such a process got there by a way guardd does not know, and guardd acts only with
 * credentials the process itself holds — never a group of the mount's choosing.
 *
 * Bounds (a FUSE daemon may never answer, and a user chooses how often they exec):
 *  - time: every call to the child has the request's deadline (FUSE_READ_TIMEOUT_MS in all, the
 *    child's start included); past it the child is killed. The event loop only ever waits on pipes.
 *  - a stalled mount pins one child: a child killed while the daemon holds its request stays
 *    until the daemon answers or the mount goes (the kernel waits it out), and it still counts
 *    below; while it does, that mount's reads are refused at once (`stalled`), so it never pins a
 *    second one, and the user's other mounts and other users keep their share;
 *  - children alive at once, stuck ones included: FUSE_CHILDREN_MAX, FUSE_CHILDREN_PER_USER (a
 *    user's subordinate uids with them: accountOf);
 *  - children started: a budget per user and overall (token buckets, FUSE_SPAWN_*), since each
 *    costs a node start (~40 ms of CPU): a user's exec loop on their mount costs guardd a bounded
 *    share of a core;
 *  - bytes: the caller's (the hash's HASH_MAX_BYTES, the marker regions' MAX_SCAN_BYTES).
 *  Refused reads are counted (`busy`, `stalled`); the process sensor asks again later.
 * Reads of one file at once share one child (`coalesced`): the hash and the marker scan of one
 * exec ask at the same moment.
 *
 * Not cached: what a user's FUSE daemon serves is its word, down to the identity (mount-trust.ts).
 * And not proof against the user either: the daemon can serve guardd's reader other bytes than
 * the exec (it sees who asks), and the user may ptrace or signal the child, which is theirs. Then
 * guardd decides on what it was given; docs/process-detection.md says so.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { type FileHandle, open, readFile } from 'node:fs/promises';
import { type MountEntry, parseMountinfo } from '../common/mountinfo.js';

/** O_PATH (Linux): names a file without opening it — no permission check, no call into its file system. */
const O_PATH = 0o10000000;

/**
 * One read's deadline, the child's start included (ms): a node child starts in ~60 ms, ~0.5 s on
 * a busy 2-core machine; hashing the largest file hashed (HASH_MAX_BYTES) through a local FUSE
 * daemon takes 1–2 s.
 */
export const FUSE_READ_TIMEOUT_MS = 5000;
/** Children reading for guardd at once, all users, stuck ones included (each ~40 MB). */
export const FUSE_CHILDREN_MAX = 4;
/** Of those, one user's: one may be stuck on a stalled mount while another reads. */
export const FUSE_CHILDREN_PER_USER = 2;
/** Children one user may have started back to back, then FUSE_SPAWNS_PER_S_USER a second. */
export const FUSE_SPAWN_BURST_USER = 4;
export const FUSE_SPAWNS_PER_S_USER = 2;
/** The same for all users together. */
export const FUSE_SPAWN_BURST = 8;
export const FUSE_SPAWNS_PER_S = 4;
/**
 * Bytes one read asks the child for at most: a caller's longer read (the marker scan's ELF section
 * table may claim 1,024 × 64 KiB) is answered in pieces this size, each one answer line of base64.
 * Found in review: one such read of 64 MiB came back as a line of ~89 M characters, past the
 * child's answer bound and the deadline, at every retry — a program banned by markers ran unread.
 */
export const FUSE_READ_CHUNK_BYTES = 1024 * 1024;
/**
 * Longest answer line a reading child may send (characters; OwnerSessionOptions.maxAnswerChars):
 * a FUSE_READ_CHUNK_BYTES read in base64 (~1.4 M) and its envelope, with room. The child is the
 * user's to write into (module doc): a longer line ends it.
 */
export const FUSE_ANSWER_MAX_CHARS = 2 * 1024 * 1024;
/** Users whose spawn budget is remembered at most (the oldest is forgotten: it is full by then). */
const MAX_BUDGETS = 4096;

/** The part of an owner session (src/enforcement/owner-fs.ts OwnerSession) a read needs. */
export interface FuseOwnerSession {
  /** Settles when the child has really ended (long after close() when it was stuck). */
  readonly exited: Promise<void>;
  openFd(fd: number, timeoutMs: number): Promise<ChildFileId & { readonly h: number }>;
  statFd(h: number, timeoutMs: number): Promise<ChildFileId>;
  readFd(h: number, offset: number, length: number, timeoutMs: number): Promise<Buffer>;
  hashFd(h: number, maxBytes: number, timeoutMs: number): Promise<string | null>;
  close(): void;
}

/** What the child's fstat says of the file. */
export interface ChildFileId {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

/** Starts a child acting as `actor`, holding guardd's descriptor `fd` at its stdio index 3. */
export type FuseSessionFactory = (actor: { uid: number; gid: number }, fd: number) => FuseOwnerSession;

/** The file as the child holds it: what exe-hash.ts and content-markers.ts read through. */
export interface FuseFile {
  /** Its fstat at the open (device, inode, size, times; `mount` 0: the child cannot tell it). */
  readonly identity: ChildFileId;
  /** FileHandle.read's shape: bytes at `position`, fewer at the end of the file. */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  /** Its SHA-256, hashed in the child; null past `maxBytes`. */
  hash(maxBytes: number): Promise<string | null>;
  /** Its fstat now (a file rewritten while read says so). */
  stat(): Promise<ChildFileId>;
}

/** Why nothing was read. */
export type FuseSkip =
  /** Not on a FUSE mount made by a user (the refusal had another cause). */
  | 'not_fuse'
  /** The mount's user is not the process's owner. */
  | 'owner_mismatch'
  /** A child of this mount is still stuck past its deadline. */
  | 'stalled'
  /** No child may be started now (children alive or started: the bounds above). */
  | 'busy'
  | 'timeout'
  /** Gone, or its mount past what is read of the process's mountinfo, or refused to the user too, or the child failed. */
  | 'unreadable';

export type FuseReadResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: FuseSkip };

export interface FuseExeReaderOptions {
  readonly session: FuseSessionFactory;
  /** One read's deadline (ms). Default FUSE_READ_TIMEOUT_MS. */
  readonly timeoutMs?: number;
  /** The bounds (tests pass tight ones). Default: the FUSE_* constants. */
  readonly limits?: Partial<FuseLimits>;
  /** Whose share of the per-user bounds a process of `uid` takes. Default: accountOf. */
  readonly account?: (uid: number) => string;
}

export interface FuseLimits {
  readonly children: number;
  readonly childrenPerUser: number;
  readonly spawnBurst: number;
  readonly spawnsPerS: number;
  readonly spawnBurstPerUser: number;
  readonly spawnsPerSPerUser: number;
}

const LIMITS: FuseLimits = {
  children: FUSE_CHILDREN_MAX,
  childrenPerUser: FUSE_CHILDREN_PER_USER,
  spawnBurst: FUSE_SPAWN_BURST,
  spawnsPerS: FUSE_SPAWNS_PER_S,
  spawnBurstPerUser: FUSE_SPAWN_BURST_USER,
  spawnsPerSPerUser: FUSE_SPAWNS_PER_S_USER,
};

/** A child reading one file, shared by the reads of that file at once. */
interface Job {
  readonly key: string;
  readonly session: FuseOwnerSession;
  readonly opened: Promise<ChildFileId & { readonly h: number }>;
  readonly mount: string;
  refs: number;
  timedOut: boolean;
}

/** A token bucket: `burst` at most, refilled at `perS` a second. */
class Budget {
  private tokens: number;
  private at = performance.now();
  constructor(
    private readonly burst: number,
    private readonly perS: number,
  ) {
    this.tokens = burst;
  }
  has(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perS);
    this.at = now;
    return this.tokens >= 1;
  }
  take(): void {
    this.tokens -= 1;
  }
}

export class FuseExeReader {
  private readonly session: FuseSessionFactory;
  private readonly timeoutMs: number;
  private readonly jobs = new Map<string, Job>();
  /** Children alive by account (accountOf): a user and their subordinate uids are one. */
  private readonly alive = new Map<string, number>();
  private aliveAll = 0;
  /** Mounts with a child stuck past its deadline: mount key → such children. */
  private readonly stuck = new Map<string, number>();
  private readonly budgets = new Map<string, Budget>();
  private readonly account: (uid: number) => string;
  private readonly limits: FuseLimits;
  private readonly budget: Budget;
  /** Outcome counts since start (status `fuse_exe`). */
  readonly counts = {
    read: 0,
    coalesced: 0,
    spawned: 0,
    not_fuse: 0,
    owner_mismatch: 0,
    stalled: 0,
    busy: 0,
    timeout: 0,
    unreadable: 0,
  };

  constructor(options: FuseExeReaderOptions) {
    this.session = options.session;
    this.timeoutMs = options.timeoutMs ?? FUSE_READ_TIMEOUT_MS;
    this.limits = { ...LIMITS, ...options.limits };
    this.account = options.account ?? accountOf;
    this.budget = new Budget(this.limits.spawnBurst, this.limits.spawnsPerS);
  }

  /** Children alive now (stuck ones included), children stuck past their deadline, and the counts. */
  status(): Record<string, number> {
    let stuck = 0;
    for (const n of this.stuck.values()) stuck += n;
    return { ...this.counts, children: this.aliveAll, stuck };
  }

  /**
   * Runs `fn` on the executable `exePath` names (/proc/<pid>/exe or /proc/<pid>/task/<tid>/exe),
   * opened as its process's owner `uid` in a child, when root's own open was refused and the file
   * is on that user's FUSE mount (module doc). Never rejects; resolves within the deadline
   * whatever the daemon does: `fn`'s reads get the time left, and one that runs out counts as
   * `timeout`. Call only after root's open failed with EACCES.
   */
  async withFile<T>(
    exePath: string,
    uid: number,
    fn: (f: FuseFile) => Promise<T>,
  ): Promise<FuseReadResult<T>> {
    const deadline = performance.now() + this.timeoutMs;
    const left = (): number => Math.max(1, Math.round(deadline - performance.now()));
    const dir = /^(\/proc\/\d+(?:\/task\/\d+)?)\/exe$/.exec(exePath)?.[1];
    if (dir === undefined || !Number.isInteger(uid) || uid <= 0) return this.skip('not_fuse');
    const got = await this.job(exePath, dir, uid, left);
    if ('reason' in got) return this.skip(got.reason);
    const job = got.job;
    try {
      const opened = await job.opened;
      // What the child says is the user's word (module doc): only well-formed answers are used.
      const file: FuseFile = {
        identity: fileId(opened),
        read: async (buffer, offset, length, position) => {
          const want = Math.min(length, FUSE_READ_CHUNK_BYTES);
          const data = await job.session.readFd(opened.h, position, want, left());
          return { bytesRead: data.copy(buffer, offset, 0, want) };
        },
        hash: async (maxBytes) => {
          const h = await job.session.hashFd(opened.h, maxBytes, left());
          if (h !== null && !(typeof h === 'string' && /^[0-9a-f]{64}$/.test(h)))
            throw new Error('the child answered no SHA-256');
          return h;
        },
        stat: async () => fileId(await job.session.statFd(opened.h, left())),
      };
      const value = await fn(file);
      this.counts.read++;
      return { ok: true, value };
    } catch (err) {
      if ((err as { code?: string }).code === 'ETIMEDOUT') this.stalledOn(job);
      // A read sharing the child fails with the one that timed out (the child was ended), maybe
      // before that one's handler ran: after this turn's callbacks the job says which it was.
      else await new Promise((resolve) => setImmediate(resolve));
      return this.skip(job.timedOut ? 'timeout' : 'unreadable');
    } finally {
      if (--job.refs === 0) {
        if (this.jobs.get(job.key) === job) this.jobs.delete(job.key);
        job.session.close();
      }
    }
  }

  private skip(reason: FuseSkip): { ok: false; reason: FuseSkip } {
    this.counts[reason]++;
    return { ok: false, reason };
  }

  /** The child reading the file `exePath` names: a running one for that file, or a new one. */
  private async job(
    exePath: string,
    dir: string,
    uid: number,
    left: () => number,
  ): Promise<{ job: Job } | { reason: FuseSkip }> {
    let fh: FileHandle;
    try {
      fh = await open(exePath, O_PATH);
    } catch {
      return { reason: 'unreadable' }; // gone
    }
    try {
      const info = await readFile(`/proc/self/fdinfo/${fh.fd}`, 'utf8');
      const mntId = Number(/^mnt_id:\s*(\d+)$/m.exec(info)?.[1] ?? Number.NaN);
      const ino = /^ino:\s*(\d+)$/m.exec(info)?.[1] ?? '';
      const mount = Number.isInteger(mntId) ? await mountOf(dir, mntId) : undefined;
      // gone, or past what is read of the process's table (FUSE_MOUNTINFO_MAX_BYTES)
      if (mount === undefined) return { reason: 'unreadable' };
      if (!(mount.fstype === 'fuse' || mount.fstype.startsWith('fuse.'))) return { reason: 'not_fuse' };
      const owner = await mountOwner(mount, dir);
      if (owner === null || owner.uid === 0) return { reason: 'not_fuse' };
      if (owner.uid !== uid || !(await holds(dir, owner))) return { reason: 'owner_mismatch' };
      const mountKey = `${mntId}:${mount.device}`;
      const key = `${mountKey}:${ino}`;
      const running = this.jobs.get(key);
      if (running && !running.timedOut) {
        running.refs++;
        this.counts.coalesced++;
        return { job: running };
      }
      if ((this.stuck.get(mountKey) ?? 0) > 0) return { reason: 'stalled' };
      const who = this.account(uid);
      if (!this.admit(who)) return { reason: 'busy' };
      const session = this.session(owner, fh.fd);
      this.counts.spawned++;
      this.aliveAll++;
      this.alive.set(who, (this.alive.get(who) ?? 0) + 1);
      void session.exited.then(() => {
        this.aliveAll--;
        const n = (this.alive.get(who) ?? 1) - 1;
        if (n <= 0) this.alive.delete(who);
        else this.alive.set(who, n);
      });
      const job: Job = {
        key,
        session,
        opened: session.openFd(3, left()),
        mount: mountKey,
        refs: 1,
        timedOut: false,
      };
      // Settled by whoever awaits it; a rejection nobody awaits must not be unhandled.
      job.opened.catch(() => undefined);
      this.jobs.set(key, job);
      return { job };
    } catch {
      return { reason: 'unreadable' };
    } finally {
      // The child holds its own copy from its start.
      await fh.close().catch(() => undefined);
    }
  }

  /** Whether a child may be started for the account `who` now (bounds in the module doc); takes its budget. */
  private admit(who: string): boolean {
    const l = this.limits;
    if (this.aliveAll >= l.children || (this.alive.get(who) ?? 0) >= l.childrenPerUser) return false;
    let mine = this.budgets.get(who);
    if (!mine) {
      if (this.budgets.size >= MAX_BUDGETS) this.budgets.delete(this.budgets.keys().next().value as string);
      mine = new Budget(l.spawnBurstPerUser, l.spawnsPerSPerUser);
      this.budgets.set(who, mine);
    }
    if (!mine.has() || !this.budget.has()) return false;
    mine.take();
    this.budget.take();
    return true;
  }

  /** A read of `job` ran out of time: its child (killed) may be stuck; its mount waits until it ends. */
  private stalledOn(job: Job): void {
    if (job.timedOut) return;
    job.timedOut = true;
    job.session.close();
    this.stuck.set(job.mount, (this.stuck.get(job.mount) ?? 0) + 1);
    void job.session.exited.then(() => {
      const n = (this.stuck.get(job.mount) ?? 1) - 1;
      if (n <= 0) this.stuck.delete(job.mount);
      else this.stuck.set(job.mount, n);
    });
  }
}

/** `id` as the child gave it, checked: its numbers finite, the size a byte count. */
function fileId(id: ChildFileId): ChildFileId {
  const { dev, ino, size, mtimeMs, ctimeMs } = id;
  if (![dev, ino, mtimeMs, ctimeMs].every(Number.isFinite) || !Number.isSafeInteger(size) || size < 0)
    throw new Error('the child answered no file identity');
  return { dev, ino, size, mtimeMs, ctimeMs };
}

/**
 * Whose share of the per-user bounds a process running as `uid` takes: the user whose subordinate
 * uids (/etc/subuid) hold it, else `uid`'s own user (/etc/passwd), else the uid alone. newuidmap
 * (setuid) lets a user run processes, and make FUSE mounts, as any of their subordinate uids
 * (useradd gives each 65,536): found in review, each counted as a user of its own, so one user
 * running as two of them held all FUSE_CHILDREN_MAX children (stalled, for good) and everyone
 * else's reads were `busy`. The files are root's; read again at most every SUBUID_REFRESH_MS.
 */
export function accountOf(uid: number): string {
  const now = performance.now();
  if (!accounts || now - accounts.at > SUBUID_REFRESH_MS) accounts = { at: now, ...readAccounts() };
  const names = accounts.names;
  const range = accounts.ranges.find((r) => uid >= r.start && uid < r.start + r.count);
  const owner = range
    ? /^\d+$/.test(range.owner)
      ? names.get(Number(range.owner))
      : range.owner
    : undefined;
  const name = owner ?? (range ? undefined : names.get(uid));
  return name !== undefined ? `user:${name}` : `uid:${range ? range.owner : uid}`;
}

/** How often /etc/subuid and /etc/passwd are read again (ms). */
const SUBUID_REFRESH_MS = 10_000;
/** Bytes read of each at most (they are root's; a bound all the same). */
const ACCOUNT_FILE_MAX_BYTES = 4 * 1024 * 1024;
let accounts: { at: number; names: Map<number, string>; ranges: SubuidRange[] } | null = null;

interface SubuidRange {
  readonly owner: string;
  readonly start: number;
  readonly count: number;
}

function readAccounts(): { names: Map<number, string>; ranges: SubuidRange[] } {
  const read = (file: string): string => {
    try {
      const fd = openSync(file, 'r');
      try {
        const buf = Buffer.alloc(ACCOUNT_FILE_MAX_BYTES);
        return buf.toString('utf8', 0, readSync(fd, buf, 0, buf.length, 0));
      } finally {
        closeSync(fd);
      }
    } catch {
      return '';
    }
  };
  const names = new Map<number, string>();
  for (const line of read('/etc/passwd').split('\n')) {
    const f = line.split(':');
    const uid = Number(f[2]);
    if (f[0] && f.length >= 7 && Number.isInteger(uid) && !names.has(uid)) names.set(uid, f[0]);
  }
  const ranges: SubuidRange[] = [];
  for (const line of read('/etc/subuid').split('\n')) {
    const [owner, start, count] = line.trim().split(':');
    if (owner && /^\d+$/.test(start ?? '') && /^\d+$/.test(count ?? ''))
      ranges.push({ owner, start: Number(start), count: Number(count) });
  }
  return { names, ranges };
}

/**
 * Bytes of a process's mountinfo read at most to find a mount there. That table is the user's to
 * grow (a namespace of theirs may hold 100,000 mounts, each line as long as their paths): found in
 * review, read whole and parsed at every read, 8,000 bind mounts of a 3 KB path (~49 MB) cost
 * guardd ~160 MB at one exec, and 100,000 would take it past its heap. A mount past this much of
 * its table is not read (`unreadable`). 1 MiB holds thousands of ordinary lines.
 */
export const FUSE_MOUNTINFO_MAX_BYTES = 1024 * 1024;

/**
 * The mount `mntId` (ids are unique on the machine, whatever the namespace): from guardd's own
 * table — fusermount3's mounts are there, and users cannot grow it past fuse.conf's `mount_max` —
 * else from the table of the process in `dir` (/proc/<pid>[/task/<tid>]), read a line at a time and
 * FUSE_MOUNTINFO_MAX_BYTES at most.
 */
async function mountOf(dir: string, mntId: number): Promise<MountEntry | undefined> {
  const own = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const m = parseMountinfo(own).find((x) => x.id === mntId);
  if (m) return m;
  const line = await lineStarting(`${dir}/mountinfo`, `${mntId} `, FUSE_MOUNTINFO_MAX_BYTES);
  return line === null ? undefined : parseMountinfo(line)[0];
}

/** The first line of `file` that starts with `prefix`, looking at `maxBytes` of it at most; else null. */
async function lineStarting(file: string, prefix: string, maxBytes: number): Promise<string | null> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch {
    return null;
  }
  try {
    const buf = Buffer.alloc(64 * 1024);
    let carry = '';
    for (let total = 0; total < maxBytes; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, maxBytes - total), null);
      if (bytesRead === 0) return null;
      total += bytesRead;
      // latin1: a chunk may end inside a UTF-8 character; the fields read here are ASCII
      const lines = (carry + buf.toString('latin1', 0, bytesRead)).split('\n');
      carry = lines.pop() ?? '';
      const hit = lines.find((l) => l.startsWith(prefix));
      if (hit !== undefined) return hit;
    }
    return null;
  } catch {
    return null;
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * The user and group a FUSE mount lets in (`user_id=`, `group_id=`), as ids of the machine: the
 * kernel prints them in the terms of the user namespace the mount was made in, taken to be the
 * process's own (a rootless container's `user_id=0` is its host user); null when not printed or
 * not mapped. A wrong guess costs nothing but a refused read: the child acts only as the
 * process's owner (FuseExeReader.job).
 */
async function mountOwner(mount: MountEntry, dir: string): Promise<{ uid: number; gid: number } | null> {
  const opt = (name: string): number | null => {
    const v = mount.superOptions.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : null;
  };
  const u = opt('user_id');
  const g = opt('group_id');
  if (u === null || g === null) return null;
  const uid = mapId(await readFile(`${dir}/uid_map`, 'utf8').catch(() => ''), u);
  const gid = mapId(await readFile(`${dir}/gid_map`, 'utf8').catch(() => ''), g);
  return uid === null || gid === null ? null : { uid, gid };
}

/** Whether the process in `dir` runs with real uid and gid `ids` now (/proc/<pid>/status). */
async function holds(dir: string, ids: { uid: number; gid: number }): Promise<boolean> {
  const status = await readFile(`${dir}/status`, 'utf8').catch(() => '');
  const uid = /^Uid:\s*(\d+)/m.exec(status)?.[1];
  const gid = /^Gid:\s*(\d+)/m.exec(status)?.[1];
  return Number(uid) === ids.uid && Number(gid) === ids.gid;
}

/** `id` of a user namespace, as the id outside it that its map (uid_map/gid_map text) gives; null when unmapped. */
function mapId(map: string, id: number): number | null {
  for (const line of map.split('\n')) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (inside === undefined || outside === undefined || count === undefined) continue;
    if (Number.isInteger(inside) && id >= inside && id < inside + count) return outside + (id - inside);
  }
  return null;
}
