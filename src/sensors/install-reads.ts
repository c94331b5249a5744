/**
 * Owns the install sensor's file calls into users' trees — roots, scope dirs, packages and their
 * package.json, bin dirs, path-glob artifacts — and its watches on them. The user controls all of
 * it, down to a FUSE mount whose daemon never answers, so:
 *
 *  - Every call runs off the event loop through `installReadGate` under its tree's key (the uid of
 *    the user whose home holds the tree: all of a user's calls share their one slot), with a
 *    deadline (safe-read.ts). A call stuck in the kernel keeps its slot, and its pool thread, until
 *    the file system answers. The quarantine of what the sensor reports looks at the path through
 *    the same gate under the same key (observations carry it: `treeKey`; actions/quarantine.ts,
 *    owner-fs.ts `actorFor`), so it shares that one slot too.
 *  - A key is *stalled* once one of its calls was turned away (no slot before the deadline, or no
 *    answer by it): its calls are then refused at once (`busy`) instead of each waiting in the
 *    gate's line for a slot its stuck call holds, until a probe — the turned-away path looked at
 *    again every STALL_PROBE_MS — answers; then `onRecovered(key)` (the sensor looks at that
 *    user's trees again). A stalled mount costs its user's tree one deadline and one slot, never a
 *    full scan, other users' trees or the gate's line.
 *  - Watches are depth-0 `fs.watch`es whose events only name an entry; nothing is statted on their
 *    behalf. Setting one up is a synchronous call on the event loop (inotify_add_watch), so on
 *    Linux the directory is first opened through the gate and watched through that descriptor
 *    (`/proc/self/fd/N`): the path walk does not cross into a mount made over the directory
 *    meanwhile. A directory on a FUSE file system — the only kind a user can mount — is not watched
 *    (its daemon could stall that call's permission check, and with it guardd); the full rescans
 *    cover it. Elsewhere the path is watched after a gated stat.
 */
import { constants, type Dirent, type FSWatcher, type Stats, watch } from 'node:fs';
import { lstat, open, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Platform } from '../common/platform-paths.js';
import { installReadGate, type PackageReadResult, readPackageJsonAsync } from './package-reader.js';
import {
  lstatUserPath,
  type ReadGate,
  readdirUserPath,
  readlinkUserPath,
  realpathUserPath,
  type SafePathResult,
  statUserPath,
  USER_READ_TIMEOUT_MS,
} from './safe-read.js';

/** Whose tree a call touches: a uid, or a home / `system` / `glob` when no user has it. */
export type TreeKey = string | number;

/** A stalled key's probe runs this long after the last one ended (ms). */
const STALL_PROBE_MS = 2_000;
/** statfs f_type of FUSE (and fuseblk) file systems. */
const FUSE_SUPER_MAGIC = 0x65735546;

/** A refusal of a call that did not run, or whose answer is unknown: the tree did not answer in time. */
export function turnedAway(r: { ok: boolean; reason?: string; detail?: string }): boolean {
  return (
    !r.ok && (r.reason === 'busy' || r.reason === 'timeout' || r.detail === 'busy' || r.detail === 'timeout')
  );
}

export class TreeReads {
  /** Stalled key → its probe timer (null while the probe runs). */
  private readonly stalled = new Map<TreeKey, NodeJS.Timeout | null>();
  /** Bumped by `stop`: probes of an earlier generation end without effect. */
  private generation = 0;
  /** Times a key was found stalled (one each time it stalls, not one per refused call). */
  stalls = 0;

  /**
   * @param onRecovered called once a stalled key's probe answered (its calls are admitted again).
   */
  constructor(
    private readonly onRecovered: (key: TreeKey) => void,
    private readonly gate: ReadGate = installReadGate,
  ) {}

  /** Keys stalled now. */
  get stalledKeys(): number {
    return this.stalled.size;
  }

  isStalled(key: TreeKey): boolean {
    return this.stalled.has(key);
  }

  lstat(path: string, key: TreeKey): Promise<SafePathResult<Stats>> {
    return this.call(key, path, () => lstatUserPath(path, this.gate, key));
  }

  /** `stat` (follows links). */
  stat(path: string, key: TreeKey): Promise<SafePathResult<Stats>> {
    return this.call(key, path, () => statUserPath(path, this.gate, key));
  }

  realpath(path: string, key: TreeKey): Promise<SafePathResult<string>> {
    return this.call(key, path, () => realpathUserPath(path, this.gate, key));
  }

  readlink(path: string, key: TreeKey): Promise<SafePathResult<string>> {
    return this.call(key, path, () => readlinkUserPath(path, this.gate, key));
  }

  /** Entries of a directory with their types (from the directory, not statted). */
  readdir(path: string, key: TreeKey): Promise<SafePathResult<Dirent[]>> {
    return this.call(key, path, () => readdirUserPath(path, this.gate, key));
  }

  /** `<dir>/package.json` (package-reader.ts); a refusal is `unreadable` with detail `busy`/`timeout`. */
  readPackageJson(dir: string, key: TreeKey): Promise<PackageReadResult> {
    return this.call(key, join(dir, 'package.json'), () => readPackageJsonAsync(dir, key, this.gate), {
      ok: false,
      reason: 'unreadable',
      detail: 'busy',
    });
  }

  /**
   * Runs `run` (a call through this gate under `key`) unless `key` is stalled (then answers
   * `refused`, by default `busy`, at once); a turned-away answer stalls `key`, probing at `path`.
   */
  async call<R extends { ok: boolean }>(
    key: TreeKey,
    path: string,
    run: () => Promise<R>,
    refused: R = { ok: false, reason: 'busy' } as unknown as R,
  ): Promise<R> {
    if (this.stalled.has(key)) return refused;
    const r = await run();
    if (turnedAway(r)) this.stall(key, path);
    return r;
  }

  /** The gate these calls go through (for calls of another shape, made through `call`). */
  get readGate(): ReadGate {
    return this.gate;
  }

  /** Forgets every stall and ends the probes (the sensor stopped); calls are admitted again. */
  stop(): void {
    this.generation++;
    for (const t of this.stalled.values()) if (t) clearTimeout(t);
    this.stalled.clear();
  }

  private stall(key: TreeKey, path: string): void {
    if (this.stalled.has(key)) return;
    this.stalls++;
    const generation = this.generation;
    const probe = (): void => {
      const timer = setTimeout(() => {
        this.stalled.set(key, null);
        // Not through `call`: the probe is what may be admitted while the key is stalled.
        void this.gate
          .run(key, USER_READ_TIMEOUT_MS, () => lstat(path).catch(() => null))
          .then((r) => {
            if (generation !== this.generation) return;
            if (!r.admitted || r.timedOut) return probe();
            this.stalled.delete(key);
            this.onRecovered(key);
          });
      }, STALL_PROBE_MS);
      // A probe never keeps the process alive on its own (a stopped sensor's last stall).
      timer.unref();
      this.stalled.set(key, timer);
    };
    probe();
  }
}

/** What setting up a watch came to. */
export type WatchOutcome = 'watched' | 'fuse' | 'turned_away' | 'missing' | 'limit' | 'failed';

/**
 * Depth-0 watches of users' directories (see the module doc). One watch per directory; events
 * call `onEvent(dir, name)` (name null when the platform did not say).
 */
export class DirWatches {
  /** Watched (or being set up) directory → its watcher (null while being set up). */
  private readonly live = new Map<string, FSWatcher | null>();
  private closed = false;

  constructor(
    private readonly reads: TreeReads,
    private readonly platform: Platform,
    private readonly onEvent: (dir: string, name: string | null) => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  get size(): number {
    return this.live.size;
  }

  has(dir: string): boolean {
    return this.live.has(dir);
  }

  /**
   * Watches `dir` (its tree's `key`); resolves once the watch is live, or with why it is not
   * (then `dir` is not listed: a later `add` tries again). A dir watched or being set up already
   * resolves `watched` at once. `follow`: a symlink at `dir` is followed (roots, found by
   * discovery through links) or refused.
   */
  async add(dir: string, key: TreeKey, { follow }: { follow: boolean }): Promise<WatchOutcome> {
    if (this.closed) return 'failed';
    if (this.live.has(dir)) return 'watched';
    this.live.set(dir, null);
    let abandoned = false;
    const listener = (_event: string, name: string | Buffer | null): void => {
      if (this.live.get(dir) === watcher && watcher) this.onEvent(dir, name === null ? null : String(name));
    };
    let watcher: FSWatcher | null = null;
    const start = (target: string): WatchOutcome => {
      if (abandoned || this.closed || this.live.get(dir) !== null) return 'failed';
      try {
        watcher = watch(target, { persistent: false }, listener);
      } catch (err) {
        this.onError(err);
        return (err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'limit' : 'failed';
      }
      watcher.on('error', (err) => {
        this.onError(err);
        this.remove(dir);
      });
      this.live.set(dir, watcher);
      return 'watched';
    };
    const setUp = async (): Promise<WatchOutcome> => {
      if (this.platform !== 'linux') {
        const st = await (follow ? stat(dir) : lstat(dir));
        return st.isDirectory() ? start(dir) : 'missing';
      }
      const flags =
        constants.O_RDONLY |
        constants.O_DIRECTORY |
        constants.O_NONBLOCK |
        (follow ? 0 : constants.O_NOFOLLOW);
      const fh = await open(dir, flags);
      try {
        const fs = await statfs(`/proc/self/fd/${fh.fd}`);
        return Number(fs.type) === FUSE_SUPER_MAGIC ? 'fuse' : start(`/proc/self/fd/${fh.fd}`);
      } finally {
        await fh.close();
      }
    };
    const gate = this.reads.readGate;
    const r = await this.reads.call(key, dir, async () => {
      const g = await gate.run(key, USER_READ_TIMEOUT_MS, () =>
        setUp().catch((err: unknown): WatchOutcome => {
          const code = (err as NodeJS.ErrnoException)?.code;
          return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'failed';
        }),
      );
      return g.admitted && !g.timedOut
        ? { ok: true as const, value: g.value }
        : { ok: false as const, reason: g.admitted ? 'timeout' : 'busy' };
    });
    abandoned = true;
    const outcome: WatchOutcome = r.ok ? r.value : 'turned_away';
    if (outcome !== 'watched' && this.live.get(dir) === null) this.live.delete(dir);
    return outcome;
  }

  /** Stops watching `dir` (also one still being set up). */
  remove(dir: string): void {
    const w = this.live.get(dir);
    this.live.delete(dir);
    w?.close();
  }

  /** Stops every watch; `add` does nothing afterwards. */
  close(): void {
    this.closed = true;
    for (const w of this.live.values()) w?.close();
    this.live.clear();
  }
}
