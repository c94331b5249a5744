/**
 * Owns how root touches files in a user's tree: every such operation (reading a package tree to
 * copy it into quarantine, removing it, finding/unlinking bin links and shims, recreating a tree
 * or link on restore) runs in a short-lived child process with the credentials of the user who
 * controls the directory (see `actorFor`), never in guardd itself.
 *
 * Why this and not checks: the user owns the directories above the path and can swap any of them
 * for a symlink at any moment; realpath/lstat checks before acting always leave a window, and
 * Node has no openat() to walk with descriptors. Running the user-side work as that user makes the
 * kernel enforce the boundary: a planted symlink can then only reach what the user could already
 * touch (their own files), never root's, guardd's or another user's. Root's own side only ever
 * writes into its root-only quarantine dir, from content the child hands over (validated there).
 *
 * Who acts (`actorFor`): walking the path component by component (following symlinks as the
 * kernel would, without trusting the result), every directory owned by a non-root user makes that
 * user a controller; a directory writable by group/others without the sticky bit makes anyone a
 * controller (refused); the entry acted on (package dir, link, artifact) makes its owner one. On a
 * FUSE mount a user made, the owner of every step is the mount's user and group (mountinfo), never
 * what its daemon claims (root, or their own uid with group 0, would have the child act with
 * credentials the user does not hold). Which mount a step is on is known by the mount's id, not
 * by its device: each look is an O_PATH descriptor of the step and its statx (native/fileid), and
 * every step is judged by the entry with that id in the mount table read after it was seen (after
 * the walk), the descriptor held until then so that the id cannot name another mount meanwhile. A
 * mount the user makes while the walk runs is thus found; a step on a mount the table does not
 * list — lazily unmounted since (`fusermount3 -u -z`), or of another mount namespace — is refused
 * (GUARD_QUARANTINE_UNSAFE_PATH): its owner was a daemon's word no table names. (A btrfs
 * subvolume's files have a device of their own, not the table's; their mount's id is the table's.)
 * Without native/fileid (not built, not Linux) or STATX_MNT_ID (Linux before 5.8), a step's mount
 * is found by its device in the table read after the walk, and one the table does not list keeps
 * the owner its stat gave. Zero controllers: root acts (nobody else can change the
 * path). One: that user acts. Two or more (a link in one user's tree into another's home):
 * refused, GUARD_QUARANTINE_UNSAFE_PATH. When root acts, trees are walked only through root-owned
 * directories nobody else can write (see quarantine-tree.ts): a user-owned subdir could be swapped
 * for a link between two reads. On top, `assertNotProtected` refuses targets resolving into
 * guardd's state/install dirs or system dirs, whoever acts (defence in depth for root actors and
 * clear reports for user actors).
 *
 * `actorFor`'s walk is the one thing root itself does on the user's path (lstat — or an O_PATH
 * open, which calls no file system's open, and its statx — and readlink of each step). Each of
 * those looks goes through the install read gate
 * (src/sensors/package-reader.ts `installReadGate`) under the operation's key — the tree's
 * (install-reads.ts `TreeKey`), so it shares the user's one slot with the install sensor — with a
 * deadline (safe-read.ts): a user's FUSE mount that never answers costs the operation a
 * GUARD_QUARANTINE_BUSY before anything is done, never a pool thread per try nor a hung operation
 * holding one of MAX_OPERATIONS. The children's own calls are bounded by OP_TIMEOUT_MS.
 *
 * The process sensor uses the same child to read an executable on a user's own FUSE mount, which
 * root may not open (src/sensors/fuse-exe.ts): it hands the child a descriptor (`fds`, `openFd`)
 * instead of a path, and the child hashes or reads it as the mount's user.
 *
 * Platforms: Linux and macOS spawn the child with `{uid, gid}` (libuv drops supplementary groups);
 * on Linux at a raised priority it goes through `nice` and `setpriv` instead, so it is the user's
 * only once back at nice 0 (src/daemon/priority.ts `asUserAtNormalPriority`).
 * Windows has no uids: the child runs with guardd's own token, so there only the checks apply
 * (today's behaviour, documented in docs/security.md).
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { type FileHandle, lstat, open, readFile, readlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { GuardError, isGuardError } from '../common/errors.js';
import { deviceName, type MountEntry, parseMountinfo } from '../common/mountinfo.js';
import { fuseMountIds, userFuseDevices } from '../common/users.js';
import { asUserAtNormalPriority } from '../daemon/priority.js';
import { type FileIdRead, mountsKnown, readIdentity } from '../sensors/file-id.js';
import { installReadGate } from '../sensors/package-reader.js';
import { USER_READ_TIMEOUT_MS } from '../sensors/safe-read.js';
import { OWNER_FS_CHILD_SOURCE } from './owner-fs-child.js';

/** The install read gate's key of an operation's looks (a `TreeKey`); `DEFAULT_KEY` when none was given. */
export type GateKey = string | number;
const DEFAULT_KEY = 'quarantine';

/** The credentials user-side work runs with. */
export interface Actor {
  readonly uid: number;
  readonly gid: number;
}

export interface OwnerStat {
  readonly type: 'file' | 'directory' | 'symlink' | 'other';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly dev: number;
  readonly ino: number;
}

/** Symlinks followed while finding who controls a path (the kernel's own limit is 40). */
const MAX_LINK_HOPS = 40;
/**
 * Mounts one actorFor walk holds a descriptor of at once (one per mount met, not per step; a path
 * crosses a handful): past it, what was seen so far is judged and the descriptors are let go.
 */
const MAX_PINNED_MOUNTS = 64;
/** Linux's O_PATH (the generic value: x86-64, arm64), which Node's fs.constants lacks. */
const O_PATH = 0o10000000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
/** guardd's own mount table: the mounts a path it walks can reach. */
const MOUNTINFO = '/proc/self/mountinfo';
/**
 * One child operation must answer within this (ms): a 4 MiB read or a readdir on a local disk
 * takes milliseconds; a stalled network mount must not hold a quarantine for longer.
 */
const OP_TIMEOUT_MS = 30_000;
/**
 * Removing a whole tree is one operation: 200,000 entries (MAX_TREE_ENTRIES) on a slow disk take
 * minutes, and killing the child halfway would leave a half-removed original.
 */
const RM_TIMEOUT_MS = 10 * 60_000;
/** Bytes per readFile request (base64 in one JSON line: ~5.3 MiB per answer line). */
export const READ_CHUNK_BYTES = 4 * 1024 * 1024;

/** Directories no quarantine, link removal or restore may act in, whoever the actor. */
export const SYSTEM_DIRS: readonly string[] = [
  '/etc',
  '/boot',
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/usr/bin',
  '/usr/sbin',
  '/usr/lib',
  '/usr/libexec',
  '/usr/share',
  '/usr/include',
  '/var/lib/toolguard',
  '/opt/toolguard',
  '/proc',
  '/sys',
  '/dev',
  '/System',
  '/Library',
];

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

/**
 * Throws GUARD_QUARANTINE_UNSAFE_PATH when `real` (a resolved path) lies in one of `ownDirs`
 * (guardd's state and install dirs: never) or in a system dir. A global package tree of the
 * system npm (`…/node_modules/…` below /usr/lib) is not a system file and stays allowed; so are
 * bin links in system bin dirs when `allowSystemBin` (their removal is proven by their target).
 */
export function assertNotProtected(
  real: string,
  ownDirs: readonly string[],
  what: string,
  allowSystemBin = false,
): void {
  const refuse = (zone: string): never => {
    throw new GuardError(
      'GUARD_QUARANTINE_UNSAFE_PATH',
      `refusing to act on ${what}: it resolves to ${real}, inside protected ${zone}`,
      { path: what, resolved: real, zone },
    );
  };
  for (const d of ownDirs) if (inside(real, d)) refuse(d);
  for (const d of SYSTEM_DIRS) {
    if (!inside(real, d)) continue;
    if (real.slice(d.length).split('/').includes('node_modules') && !d.includes('toolguard')) continue;
    if (allowSystemBin && (d === '/usr/bin' || d === '/usr/sbin' || d === '/bin' || d === '/sbin')) continue;
    refuse(d);
  }
}

/**
 * Root's own `call` at a user's `path`, through the install read gate under `key` with a deadline
 * (see the module header). Rejects as the call does, or GUARD_QUARANTINE_BUSY when it found no
 * slot or no answer in time (a call stuck in the kernel keeps its slot until it returns).
 */
async function rootLook<T>(key: GateKey, path: string, call: () => Promise<T>): Promise<T> {
  // failFast: the caller holds an operation's place (one of MAX_OPERATIONS) that other users'
  // quarantines wait for; a look behind a call of this tree stuck past its deadline would only
  // wait out its own deadline in the line.
  const r = await installReadGate.run(
    key,
    USER_READ_TIMEOUT_MS,
    () =>
      call().then(
        (value) => ({ ok: true as const, value }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
    { failFast: true },
  );
  if (!r.admitted || r.timedOut)
    throw new GuardError(
      'GUARD_QUARANTINE_BUSY',
      `${path} did not answer within ${USER_READ_TIMEOUT_MS} ms (${r.admitted ? 'timeout' : 'busy'}: a stalled mount, or its tree's read slot held)`,
      { path },
    );
  if (!r.value.ok) throw r.value.err;
  return r.value.value;
}

/** What one step of actorFor's walk saw (its owner as its file system says). */
interface Seen {
  readonly path: string;
  readonly kind: 'dir' | 'link' | 'other';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly dev: number;
  /** Its mount's id in mountinfo (held by a descriptor of the step); -1 when unknown. */
  readonly mountId: number;
}

function seen(
  path: string,
  st: { mode: number; uid: number; gid: number; dev: number },
  mountId: number,
): Seen {
  const type = st.mode & S_IFMT;
  const kind = type === S_IFDIR ? 'dir' : type === S_IFLNK ? 'link' : 'other';
  return { path, kind, mode: st.mode, uid: st.uid, gid: st.gid, dev: st.dev, mountId };
}

/**
 * One gated look at `path` (rootLook, under `key`), not following a link there. With native/fileid
 * an O_PATH descriptor of it is opened (no open of the file system's own: a FUSE daemon answers
 * the lookup, and the statx of the descriptor, as it would an lstat) and returned with what its
 * statx says, its mount's id included: the descriptor keeps that id naming that mount while it is
 * open. The caller closes it; one the deadline left behind is closed when its look ends.
 */
async function look(key: GateKey, path: string): Promise<{ seen: Seen; fh: FileHandle | null }> {
  if (!mountsKnown) {
    const st = await rootLook(key, path, () => lstat(path));
    return { seen: seen(path, st, -1), fh: null };
  }
  let started: Promise<{ fh: FileHandle; id: FileIdRead }> | undefined;
  const pinned = async (): Promise<{ fh: FileHandle; id: FileIdRead }> => {
    const fh = await open(path, O_PATH | constants.O_NOFOLLOW);
    try {
      return { fh, id: await readIdentity(fh) };
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  };
  try {
    const { fh, id } = await rootLook(key, path, () => {
      started = pinned();
      return started;
    });
    return { seen: seen(path, { ...id, dev: id.identity.dev }, id.mountId), fh };
  } catch (err) {
    void started?.then(
      ({ fh }) => fh.close().catch(() => undefined),
      () => undefined,
    );
    throw err;
  }
}

/**
 * The users who control the steps actorFor noted (uid → gid), each step judged by the mount table
 * read after it was seen: found by its mount's id, whose descriptor is held until then — one per
 * mount met, at most MAX_PINNED_MOUNTS, past which what was noted is judged at once — or, without
 * ids, by its device in that table or in `before` (see the module header).
 */
class WalkControllers {
  readonly ids = new Map<number, number>();
  private readonly noted: Seen[] = [];
  private readonly pins = new Map<number, FileHandle>();

  /**
   * @param before user FUSE mounts by device (userFuseDevices) read before the walk, for steps
   *   without a mount id: a mount lazily unmounted before the table is read again is in it.
   */
  constructor(
    private readonly unsafe: (why: string) => GuardError,
    private readonly before: ReadonlyMap<string, { readonly uid: number; readonly gid: number }>,
  ) {}

  /** Notes step `s`; its descriptor `fh` is kept (the first of its mount) or closed. */
  async note(s: Seen, fh: FileHandle | null): Promise<void> {
    this.noted.push(s);
    if (fh === null) return;
    if (s.mountId < 0 || this.pins.has(s.mountId)) {
      await fh.close().catch(() => undefined);
      return;
    }
    this.pins.set(s.mountId, fh);
    if (this.pins.size >= MAX_PINNED_MOUNTS) await this.judge();
  }

  /** Judges every step noted so far by the mount table as it is now, then lets their descriptors go. */
  async judge(): Promise<void> {
    try {
      const byId = this.noted.some((s) => s.mountId >= 0);
      let table: MountEntry[] = [];
      try {
        table = parseMountinfo(await readFile(MOUNTINFO, 'utf8'));
      } catch (err) {
        // Without ids (not Linux) there is no table to name a mount: what the stat said stands.
        if (byId) throw this.unsafe(`cannot read the mount table (${(err as NodeJS.ErrnoException).code})`);
      }
      const mounts = new Map(table.map((m) => [m.id, m]));
      const userFuse = new Map(this.before);
      for (const m of table) {
        const ids = fuseMountIds(m);
        if (ids) userFuse.set(m.device, ids);
      }
      for (const s of this.noted.splice(0)) {
        let ids: { readonly uid: number; readonly gid: number } = s;
        if (s.mountId >= 0) {
          const m = mounts.get(s.mountId);
          if (!m)
            throw this.unsafe(
              `${s.path} is on a mount guardd's mount table does not list (unmounted meanwhile, or of another mount namespace)`,
            );
          ids = fuseMountIds(m) ?? s;
        } else ids = userFuse.get(deviceName(s.dev)) ?? s;
        if (ids.uid !== 0) this.ids.set(ids.uid, ids.gid);
      }
    } finally {
      await this.release();
    }
  }

  /** Closes every descriptor held. Idempotent. */
  async release(): Promise<void> {
    const held = [...this.pins.values()];
    this.pins.clear();
    await Promise.all(held.map((fh) => fh.close().catch(() => undefined)));
  }
}

/**
 * Who may act on entries of directory `dir` (and on `entry`, its child, when given): see the
 * module header. Missing trailing components (a restore recreating parents) are fine: the
 * controllers of the existing prefix decide. Throws GUARD_QUARANTINE_UNSAFE_PATH, or
 * GUARD_QUARANTINE_BUSY when a step did not answer in time (its looks are gated under `key`).
 */
export async function actorFor(dir: string, entry?: string, key: GateKey = DEFAULT_KEY): Promise<Actor> {
  // Windows has no uids to act with (see the module header): guardd's own token acts.
  if (process.platform === 'win32') return { uid: 0, gid: 0 };
  const unsafe = (why: string): GuardError =>
    new GuardError('GUARD_QUARANTINE_UNSAFE_PATH', `refusing to act in ${dir}: ${why}`, { path: dir });
  // Without mount ids, the table read before the walk too (see WalkControllers).
  const controllers = new WalkControllers(unsafe, mountsKnown ? new Map() : await userFuseDevices());
  try {
    let hops = 0;
    let pending = resolve(dir).split(sep).filter(Boolean);
    let cur: string = sep;
    const check = async (p: string): Promise<'dir' | 'missing' | 'link' | 'other'> => {
      let got: Awaited<ReturnType<typeof look>>;
      try {
        got = await look(key, p);
      } catch (err) {
        if (isGuardError(err)) throw err;
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
        throw unsafe(`cannot inspect ${p} (${(err as NodeJS.ErrnoException).code})`);
      }
      const { seen: st, fh } = got;
      const shared = (st.mode & 0o022) !== 0;
      const sticky = (st.mode & 0o1000) !== 0;
      if (st.kind !== 'dir' || (shared && !sticky)) {
        await fh?.close().catch(() => undefined);
        if (st.kind !== 'dir') return st.kind;
        throw unsafe(`${p} is writable by group or others`);
      }
      await controllers.note(st, fh);
      return 'dir';
    };
    await check(cur);
    let missing = false;
    while (pending.length > 0 && !missing) {
      const name = pending.shift() as string;
      const p = join(cur, name);
      const kind = await check(p);
      if (kind === 'missing') missing = true;
      else if (kind === 'other') throw unsafe(`${p} is not a directory`);
      else if (kind === 'link') {
        if (++hops > MAX_LINK_HOPS) throw unsafe('too many symlinks');
        const target = await rootLook(key, p, () => readlink(p));
        const next = resolve(cur, target);
        pending = [...next.split(sep).filter(Boolean), ...pending];
        cur = sep;
      } else cur = p;
    }
    if (entry !== undefined && !missing) {
      // The entry's owner controls what is inside it (a package tree they own can have a subdir
      // swapped for a link at any time), and in a sticky shared dir (/tmp) may replace the entry.
      const at = join(cur, entry);
      const e = await look(key, at).catch((err: unknown) => {
        if (isGuardError(err)) throw err;
        return null;
      });
      if (e) await controllers.note(e.seen, e.fh);
    }
    await controllers.judge();
  } finally {
    await controllers.release();
  }
  const { ids } = controllers;
  if (ids.size > 1)
    throw unsafe(`it is controlled by more than one user (uids ${[...ids.keys()].join(', ')})`);
  const [only] = [...ids.entries()];
  return only ? { uid: only[0], gid: only[1] } : { uid: 0, gid: 0 };
}

/** Error from the child: `code` is the errno code, so callers can test for ENOENT and friends. */
class OwnerFsError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Longest answer line accepted from a child by default (characters): a listing of the largest tree
 * a quarantine handles (MAX_TREE_ENTRIES entries of a few hundred bytes) fits many times over; past
 * it the child is ended (OwnerSession.onData), instead of guardd's heap growing without end.
 */
const MAX_ANSWER_CHARS = 64 * 1024 * 1024;

/** What a session's child says of a file it holds open (fstat, from the user's side). */
export interface OwnerFileId {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

export interface OwnerSessionOptions {
  /**
   * Descriptors of guardd's handed to the child at stdio index 3, 4, … (`openFd` opens them there).
   * The child holds them from its start: close guardd's own copy once the session is made.
   */
  readonly fds?: readonly number[];
  /** Longest answer line accepted (characters; default MAX_ANSWER_CHARS): the session's largest answer. */
  readonly maxAnswerChars?: number;
}

/**
 * One child process acting as `actor`. Requests are answered in order; `close()` ends the child
 * (call it in a finally: an unclosed session keeps a process alive until guardd exits).
 */
export class OwnerSession {
  private readonly child: ChildProcessWithoutNullStreams;
  /** The answer line being received, in the pieces it came in (joined once, at its newline). */
  private pending: string[] = [];
  private pendingChars = 0;
  private readonly maxAnswerChars: number;
  /** Set once guardd stops reading the child's answers (ended, or it said something hostile). */
  private stopped = false;
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  private dead: Error | null = null;
  /**
   * Settles when the child process has really ended (or never started), which may be long after
   * `close()`: a child killed while the kernel waits on a file system for it (a FUSE daemon that
   * took its request and never answers) ends only when that request does.
   */
  readonly exited: Promise<void>;

  constructor(
    readonly actor: Actor,
    options: OwnerSessionOptions = {},
  ) {
    this.maxAnswerChars = options.maxAnswerChars ?? MAX_ANSWER_CHARS;
    const self = process.getuid?.();
    // Without privileges (a dev run) or on Windows the child keeps guardd's own credentials.
    const asUser = self === 0 && process.platform !== 'win32' && actor.uid !== 0;
    const args = ['-e', OWNER_FS_CHILD_SOURCE];
    // the user's process only once at normal priority (src/daemon/priority.ts)
    const lowered = asUser ? asUserAtNormalPriority(actor.uid, actor.gid, process.execPath, args) : null;
    const creds = asUser && !lowered ? { uid: actor.uid, gid: actor.gid } : {};
    this.child = spawn(lowered?.command ?? process.execPath, lowered?.args ?? args, {
      ...creds,
      cwd: '/',
      env: {},
      stdio: ['pipe', 'pipe', 'pipe', ...(options.fds ?? [])],
    }) as ChildProcessWithoutNullStreams;
    this.exited = new Promise<void>((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.once('error', () => resolve());
    });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (c: string) => this.onData(c));
    this.child.stderr.resume();
    this.child.on('error', (err) => this.fail(err));
    this.child.on('exit', (code, signal) =>
      this.fail(new Error(`owner-fs child exited (${code ?? signal})`)),
    );
    this.child.stdin.on('error', () => undefined);
  }

  /**
   * The child runs as the user, who may write into its stdout (ptrace, pidfd_getfd) or make it
   * answer with more than asked (a file system of theirs): what comes is hostile input. Each piece
   * is looked at once (a line is joined only when whole), a line longer than maxAnswerChars or one
   * that is not the answer to a pending call ends the child and guardd stops reading — found in
   * review: every 64 KiB read searched the whole line so far (~26 s of guardd's event loop for a
   * line of 64 MiB), a copy of the child's stdout kept guardd reading after the child was ended,
   * and the line `null` threw out of this handler (guardd exited).
   */
  private onData(chunk: string): void {
    if (this.stopped) return;
    let from = 0;
    for (let nl = chunk.indexOf('\n'); nl >= 0 && !this.stopped; nl = chunk.indexOf('\n', from)) {
      if (this.pendingChars + nl - from > this.maxAnswerChars) {
        this.hostile('an answer too long');
        return;
      }
      this.pending.push(chunk.slice(from, nl));
      const line = this.pending.join('');
      this.pending = [];
      this.pendingChars = 0;
      from = nl + 1;
      this.answer(line);
    }
    if (this.stopped || from === chunk.length) return;
    this.pendingChars += chunk.length - from;
    if (this.pendingChars > this.maxAnswerChars) this.hostile('an answer too long');
    else this.pending.push(chunk.slice(from));
  }

  /** Settles the call `line` answers; anything else ends the child. */
  private answer(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.hostile('a line that is not JSON');
      return;
    }
    const m = msg as {
      id?: unknown;
      ok?: unknown;
      value?: unknown;
      code?: unknown;
      message?: unknown;
    } | null;
    const w = typeof m?.id === 'number' ? this.waiting.get(m.id) : undefined;
    if (!m || !w) {
      this.hostile('a line that answers no pending call');
      return;
    }
    this.waiting.delete(m.id as number);
    clearTimeout(w.timer);
    if (m.ok === true) w.resolve(m.value);
    else
      w.reject(
        new OwnerFsError(
          typeof m.code === 'string' ? m.code : 'EIO',
          typeof m.message === 'string' ? m.message : 'owner-fs error',
        ),
      );
  }

  /** Ends the child for `what` it said, and stops reading what comes. */
  private hostile(what: string): void {
    this.fail(new Error(`owner-fs child answered ${what}`));
    this.stopReading();
    this.child.kill('SIGKILL');
  }

  /** No more answers are read: whoever holds a copy of the child's stdout writes to nobody. */
  private stopReading(): void {
    this.stopped = true;
    this.pending = [];
    this.pendingChars = 0;
    this.child.stdout.destroy();
  }

  private fail(err: Error): void {
    this.dead ??= err;
    for (const [, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new OwnerFsError('EIO', err.message));
    }
    this.waiting.clear();
  }

  private call<T>(op: string, args: Record<string, unknown>, timeoutMs = OP_TIMEOUT_MS): Promise<T> {
    if (this.dead) return Promise.reject(new OwnerFsError('EIO', this.dead.message));
    const id = this.nextId++;
    return new Promise<T>((res, rej) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        rej(new OwnerFsError('ETIMEDOUT', `${op} took longer than ${timeoutMs} ms`));
        this.close();
      }, timeoutMs);
      this.waiting.set(id, { resolve: res as (v: unknown) => void, reject: rej, timer });
      this.child.stdin.write(`${JSON.stringify({ id, op, args })}\n`);
    });
  }

  lstat(path: string): Promise<OwnerStat> {
    return this.call('lstat', { path });
  }
  realpath(path: string): Promise<string> {
    return this.call('realpath', { path });
  }
  readdir(path: string, max: number): Promise<string[]> {
    return this.call('readdir', { path, max });
  }
  readlink(path: string): Promise<string> {
    return this.call('readlink', { path });
  }
  /** Up to `length` bytes at `offset` of a regular file (O_NOFOLLOW; ESTALE if dev/ino differ). */
  async readChunk(
    path: string,
    offset: number,
    length: number,
    id?: { dev: number; ino: number },
  ): Promise<Buffer> {
    const b64 = await this.call<string>('readFile', { path, offset, length, ...(id ?? {}) });
    return Buffer.from(b64, 'base64');
  }
  /** Unlinks `path` only if it is still that symlink / a file with exactly those bytes. */
  unlinkIf(
    path: string,
    expect: { symlinkTarget: string } | { contentB64: string; maxBytes: number },
  ): Promise<boolean> {
    return this.call('unlinkIf', { path, ...expect });
  }
  /** Removes the tree at `path` if its top is still `dev`/`ino` (ESTALE otherwise). */
  rmTree(path: string, id?: { dev: number; ino: number }): Promise<boolean> {
    return this.call('rmTree', { path, ...(id ?? {}) }, RM_TIMEOUT_MS);
  }
  /** mkdir -p; the first directory created, or null. */
  mkdirp(path: string, mode: number): Promise<string | null> {
    return this.call('mkdirp', { path, mode });
  }
  mkdir(path: string, mode: number): Promise<boolean> {
    return this.call('mkdir', { path, mode });
  }
  /** Creates (O_EXCL) or appends to (`append`) a file, never through a symlink. */
  writeFile(path: string, data: Buffer, append: boolean, mode = 0o600): Promise<boolean> {
    return this.call('writeFile', { path, b64: data.toString('base64'), append, mode });
  }
  symlink(target: string, path: string): Promise<boolean> {
    return this.call('symlink', { target, path });
  }
  /** Sets owner and group without following; only a root actor may give a file away. */
  lchown(path: string, uid: number, gid: number): Promise<boolean> {
    return this.call('lchown', { path, uid, gid });
  }
  chmod(path: string, mode: number): Promise<boolean> {
    return this.call('chmod', { path, mode });
  }
  /**
   * Opens for reading, with the actor's credentials, the descriptor handed over at stdio index
   * `fd` (OwnerSessionOptions.fds) and keeps it open in the child: `h` names it to statFd, readFd
   * and hashFd. Rejects with the errno code (EACCES, ENOTCONN…) or ETIMEDOUT (the child is then
   * ended: see call).
   */
  openFd(fd: number, timeoutMs: number): Promise<OwnerFileId & { readonly h: number }> {
    return this.call('openFd', { fd }, timeoutMs);
  }
  /** fstat of the file open as `h`. */
  statFd(h: number, timeoutMs: number): Promise<OwnerFileId> {
    return this.call('statFd', { h }, timeoutMs);
  }
  /** Up to `length` bytes at `offset` of the file open as `h` (fewer at its end). */
  async readFd(h: number, offset: number, length: number, timeoutMs: number): Promise<Buffer> {
    return Buffer.from(await this.call<string>('readFd', { h, offset, length }, timeoutMs), 'base64');
  }
  /** Lower-case hex SHA-256 of the file open as `h`, computed in the child; null past `maxBytes`. */
  hashFd(h: number, maxBytes: number, timeoutMs: number): Promise<string | null> {
    return this.call('hashFd', { h, max: maxBytes }, timeoutMs);
  }
  async exists(path: string): Promise<boolean> {
    try {
      await this.lstat(path);
      return true;
    } catch (err) {
      if ((err as OwnerFsError).code === 'ENOENT' || (err as OwnerFsError).code === 'ENOTDIR') return false;
      throw err;
    }
  }

  /** Ends the child. Idempotent. */
  close(): void {
    this.fail(new Error('session closed'));
    this.stopReading();
    this.child.stdin.end();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/**
 * Runs `fn` with a session acting as whoever controls directory `dir` (and its entry `entry`),
 * closing the session afterwards. Throws GUARD_QUARANTINE_UNSAFE_PATH when nobody may act.
 */
export async function withOwner<T>(
  dir: string,
  entry: string | undefined,
  fn: (s: OwnerSession) => Promise<T>,
  key: GateKey = DEFAULT_KEY,
): Promise<T> {
  const actor = await actorFor(dir, entry, key);
  const s = new OwnerSession(actor);
  try {
    return await fn(s);
  } finally {
    s.close();
  }
}

/**
 * Sessions of one operation, one per actor (a quarantine touches the package's parent, bin dirs
 * and shim dirs, usually all the same user's). `close()` ends them all.
 */
export class OwnerSessions {
  private readonly byUid = new Map<string, OwnerSession>();

  /** @param key the install read gate's key of root's looks (`actorFor`) for this operation. */
  constructor(private readonly key: GateKey = DEFAULT_KEY) {}

  /**
   * Session for whoever controls `dir` (and `entry` in it). Throws GUARD_QUARANTINE_UNSAFE_PATH,
   * or GUARD_QUARANTINE_BUSY (actorFor).
   */
  async forDir(dir: string, entry?: string): Promise<OwnerSession> {
    const actor = await actorFor(dir, entry, this.key);
    const key = `${actor.uid}:${actor.gid}`;
    let s = this.byUid.get(key);
    if (!s) {
      s = new OwnerSession(actor);
      this.byUid.set(key, s);
    }
    return s;
  }

  /** Session for the directory holding `path`, with `path` as its entry. */
  forPath(path: string): Promise<OwnerSession> {
    const abs = resolve(path);
    const dir = dirname(abs);
    return this.forDir(dir, abs.slice(dir === sep ? 1 : dir.length + 1));
  }

  close(): void {
    for (const s of this.byUid.values()) s.close();
    this.byUid.clear();
  }
}

/**
 * Operations (withSessions) run at once; the rest wait in line, first come first served. Each
 * spawns a node child per acting user (~40 MB, in guardd's cgroup): unbounded, a user's burst of
 * one-file banned packages (40 moved in at once: 27 operations) had one each at the same time.
 */
const MAX_OPERATIONS = 4;
/** Operations running now, the most ever at once, and operations waiting for their turn. */
const operations = { running: 0, peak: 0, waiting: 0 };
const turns: Array<() => void> = [];

/** How many owner-fs operations run and wait now, and the most that ran at once (status, tests). */
export function ownerOperations(): { running: number; peak: number; waiting: number } {
  return { ...operations };
}

/**
 * Runs `fn` with a fresh `OwnerSessions` (root's looks gated under `key`) once one of
 * MAX_OPERATIONS is free, closing it afterwards.
 */
export async function withSessions<T>(
  fn: (s: OwnerSessions) => Promise<T>,
  key: GateKey = DEFAULT_KEY,
): Promise<T> {
  if (operations.running >= MAX_OPERATIONS) {
    operations.waiting++;
    // The finishing operation hands its place over (running stays counted).
    await new Promise<void>((resolve) => turns.push(resolve));
    operations.waiting--;
  } else operations.running++;
  operations.peak = Math.max(operations.peak, operations.running);
  const s = new OwnerSessions(key);
  try {
    return await fn(s);
  } finally {
    s.close();
    const next = turns.shift();
    if (next) next();
    else operations.running--;
  }
}
