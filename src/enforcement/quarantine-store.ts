/**
 * Owns quarantine moves: moving a package directory or artifact into the root-only quarantine
 * dir (write-ahead through the journal in the state DB), removing the bin links / shims with it,
 * recovery of interrupted moves at start, listing and exact restore. The table is
 * quarantine-journal.ts, tree copying quarantine-tree.ts, links quarantine-links.ts, the control
 * API quarantine-control.ts (re-exported here).
 *
 * Root never acts on a path in a user's tree itself: every read, removal or creation there runs
 * through owner-fs (a child with the credentials of whoever controls the directory), so a symlink
 * the user planted, before or during the move, reaches only what that user could touch anyway.
 * Root's side writes only into its own quarantine dir. Targets resolving into guardd's own dirs or
 * system dirs, and paths controlled by more than one user, are refused
 * (GUARD_QUARANTINE_UNSAFE_PATH). Root's looks at the path to find who controls it are gated
 * under the tree's key with a deadline (owner-fs `actorFor`): a path that does not answer in time
 * is refused before anything is recorded or moved (GUARD_QUARANTINE_BUSY).
 *
 * Write-ahead: the intent (state `moving`, with every path involved) is committed before anything
 * is touched, so a crash at any point is finished or rolled back by `recover()`:
 *   moving → copied → quarantined → restoring → restore_copied → restored
 * A failed or refused move ends as `rolled_back`. Moves are always copies (read as the owner,
 * written by root, hashed while written), then removal of the original as the owner.
 */
import { chmod, lstat, mkdir, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, GuardError, isGuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { uuidv7 } from '../common/uuidv7.js';
import type { Db } from '../store/database.js';
import {
  assertNotProtected,
  type GateKey,
  type OwnerSession,
  type OwnerSessions,
  withSessions,
} from './owner-fs.js';
import { QuarantineJournal } from './quarantine-journal.js';
import { findLinks, type LinkRecord, type LinkRefusal, removeLink, restoreLink } from './quarantine-links.js';
import { copyFromOwner, copyToOwner, hashAsOwner, type TreeHash, treeHash } from './quarantine-tree.js';

export {
  listItem,
  observationOf,
  type QuarantineControlOptions,
  quarantineControlMethods,
} from './quarantine-control.js';
export type { LinkRecord, LinkRefusal } from './quarantine-links.js';
export { copyTree, MAX_TREE_ENTRIES, type TreeHash, treeHash } from './quarantine-tree.js';

export type QuarantineState =
  | 'moving'
  | 'copied'
  | 'quarantined'
  | 'restoring'
  | 'restore_copied'
  | 'restored'
  | 'rolled_back';

export interface QuarantineManifest {
  readonly id: string;
  readonly kind: 'package' | 'path';
  readonly originalPath: string;
  /** The root the original had to stay inside (global node_modules, or the owner's home). */
  readonly root: string;
  /** Where the payload sits inside the quarantine dir. */
  readonly storedPath: string;
  /** What was moved: a directory tree, a file, or a symlink itself (npm link-style packages). */
  readonly entryType: 'directory' | 'file' | 'symlink';
  readonly owner: { readonly uid: number; readonly gid: number; readonly user: string | null };
  /**
   * Who acted in the original's directory when it was quarantined (owner-fs `actorFor`). Restore
   * and recovery act only as this same actor: a path redirected since (the user's prefix now a link
   * into a root-owned or another user's tree) is refused instead of written or removed by someone
   * else. Absent in entries from before it was recorded: the entry's owner stands in.
   */
  readonly actor?: { readonly uid: number; readonly gid: number };
  /** Permission bits of the moved entry. */
  readonly mode: number;
  /** Links / shims removed (after the move) or to be removed (while `moving`). */
  readonly links: readonly LinkRecord[];
  /** Hex SHA-256 over the tree (paths, types, modes, contents, link targets); set once quarantined (null: could not be hashed, see note). */
  readonly treeHash: string | null;
  readonly files: number;
  readonly bytes: number;
  /** `rename` (same filesystem) or `copy` (copy + verify hash + remove). */
  readonly method: 'rename' | 'copy' | null;
  readonly quarantinedAt: string;
  readonly rule: { readonly id: string; readonly name: string; readonly action: string };
  readonly policyVersion: number;
  readonly package: {
    readonly name: string;
    readonly version: string | null;
    readonly manager: string;
  } | null;
  readonly restoredAt: string | null;
  readonly restoredForced: boolean | null;
  /** Why a move was rolled back (recovery or a failure), or why the tree has no hash. */
  readonly note: string | null;
  /** Link dirs or links left alone, and why (a dir leading outside what its owner may change, …). */
  readonly linksRefused?: readonly LinkRefusal[];
  /** Permission bits with setuid/setgid per relative path (not set on root's copy; restored). */
  readonly specialModes?: Readonly<Record<string, number>>;
  /** Device and inode of the original entry as checked before copying (removal requires them). */
  readonly top?: { readonly dev: number; readonly ino: number };
  /**
   * The install read gate's key of the tree (QuarantineRequest.gateKey): root's looks at the
   * original path in later sweeps, restore and recovery are gated under it. Absent in entries from
   * before it was recorded: the actor's uid stands in.
   */
  readonly gateKey?: GateKey;
  /** Where links were looked for (kept so late links can be swept with the same rules). */
  readonly search?: {
    readonly linkDirs: readonly string[];
    readonly aliasDirs: readonly string[];
    readonly shimDirs: readonly string[];
    readonly binNames: readonly string[];
  };
}

export interface QuarantineEntry {
  readonly id: string;
  readonly state: QuarantineState;
  readonly createdAt: string;
  readonly manifest: QuarantineManifest;
}

export interface QuarantineRequest {
  readonly kind: 'package' | 'path';
  readonly path: string;
  readonly root: string;
  /** What the caller expects at `path`; anything else there is refused (GUARD_QUARANTINE_UNSAFE_PATH). */
  readonly expect: 'directory' | 'file' | 'symlink' | 'file-or-symlink';
  /** Directories whose links/shims pointing into `path` are removed (bin dirs, `.bin`). */
  readonly linkDirs: readonly string[];
  /** Directories where only symlinks into `path` count (the root and scope dir: pnpm's aliases). */
  readonly aliasDirs?: readonly string[];
  /** Shim directories matched by bin name (Volta, asdf, mise). */
  readonly shimDirs: readonly string[];
  readonly binNames: readonly string[];
  readonly ownerUser: string | null;
  readonly rule: QuarantineManifest['rule'];
  readonly policyVersion: number;
  readonly package: QuarantineManifest['package'];
  /**
   * The install read gate's key of the tree the path is in (the observation's `treeKey`): root's
   * looks at it (owner-fs `actorFor`) share that user's slot with the install sensor.
   */
  readonly gateKey?: GateKey;
}

export interface RestoreOptions {
  /** Restore even though `stillBanned` says the current policy bans it. */
  readonly force: boolean;
  /** True when the policy in force still bans what the manifest describes. */
  readonly stillBanned: (manifest: QuarantineManifest) => boolean;
}

export interface RestoreResult {
  readonly manifest: QuarantineManifest;
  /** Hash of the restored tree equals the one recorded at quarantine. */
  readonly hashVerified: boolean;
  readonly linksRestored: number;
  readonly forced: boolean;
}

export interface RecoverySummary {
  readonly finished: number;
  readonly rolledBack: number;
  readonly failed: number;
}

/** Where to look for links left by a package its installer removed (see `removeLeftoverLinks`). */
export interface LeftoverLinksRequest {
  /** Where the package was. */
  readonly path: string;
  /** Bin dirs of its root (symlinks and shims into the path). */
  readonly linkDirs: readonly string[];
  /** Dirs whose symlinks into the path are aliases of it (the root, the scope dir). */
  readonly aliasDirs: readonly string[];
  /** As QuarantineRequest.gateKey. */
  readonly gateKey?: GateKey;
}

export interface QuarantineStoreOptions {
  readonly db: Db;
  /** Root-only directory under the state dir; created 0700. */
  readonly quarantineDir: string;
  readonly logger: Logger;
  /**
   * guardd's own dirs no move, link removal or restore may act in. The quarantine dir, its parent
   * (the state dir) and guardd's own package root are always included.
   */
  readonly protectedDirs?: readonly string[];
  /**
   * Test hook: awaited after the checks and the write-ahead record, right before the tree is
   * copied (lets a test swap the path deterministically at the worst moment).
   */
  readonly beforeCopy?: (path: string) => Promise<void> | void;
}

export class QuarantineStore {
  private readonly log: Logger;
  private readonly journal: QuarantineJournal;
  private readonly ownDirs: readonly string[];

  constructor(private readonly options: QuarantineStoreOptions) {
    this.log = options.logger.child({ component: 'quarantine.store' });
    const q = resolve(options.quarantineDir);
    this.ownDirs = [q, dirname(q), APP_DIR, ...(options.protectedDirs ?? []).map((d) => resolve(d))];
    this.journal = new QuarantineJournal(options.db);
  }

  /**
   * Creates the quarantine dir (0700). Idempotent; `recover()` and `quarantine()` call it
   * themselves, so calling it explicitly is only needed to fail early at start.
   */
  init(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.options.quarantineDir, { recursive: true, mode: 0o700 });
      await chmod(this.options.quarantineDir, 0o700);
    })();
    return this.ready;
  }

  private ready: Promise<void> | null = null;

  /**
   * The operation on each entry that runs now, by id: a late-link sweep and a restore of the same
   * entry run one after the other, never interleaved (a restore that read the manifest while a
   * sweep removed a link would miss that link and leave it removed).
   */
  private readonly turns = new Map<string, Promise<unknown>>();

  /** Runs `fn` once every operation on entry `id` started before it has finished. */
  private inTurn<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.turns.get(id) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(id, settled);
    void settled.then(() => {
      if (this.turns.get(id) === settled) this.turns.delete(id);
    });
    return run;
  }

  /**
   * Moves `req.path` into quarantine and removes the links/shims pointing into it. Throws
   * GUARD_QUARANTINE_UNSAFE_PATH when the path is not what was expected, left its root, resolves
   * into a protected dir or is controlled by more than one user (nothing moved),
   * GUARD_QUARANTINE_BUSY when it did not answer root's looks in time (nothing recorded or moved),
   * GUARD_QUARANTINE_IO when moving failed (rolled back). Resolves with the manifest.
   */
  quarantine(req: QuarantineRequest): Promise<QuarantineManifest> {
    return withSessions((sessions) => this.quarantineWith(sessions, req), req.gateKey);
  }

  private async quarantineWith(sessions: OwnerSessions, req: QuarantineRequest): Promise<QuarantineManifest> {
    await this.init();
    const s = await sessions.forPath(req.path);
    const st = await this.assertSafe(s, req.path, req.root, req.expect);
    const entryType = st.type === 'directory' ? 'directory' : st.type === 'symlink' ? 'symlink' : 'file';
    const search = {
      linkDirs: req.linkDirs,
      aliasDirs: req.aliasDirs ?? [],
      shimDirs: req.shimDirs,
      binNames: req.binNames,
    };
    const found = await findLinks(sessions, req.path, { ...search, ownDirs: this.ownDirs });
    const id = uuidv7();
    const storedDir = join(this.options.quarantineDir, id);
    await mkdir(storedDir, { mode: 0o700 });
    const createdAt = new Date().toISOString();
    let manifest: QuarantineManifest = {
      id,
      kind: req.kind,
      originalPath: req.path,
      root: req.root,
      storedPath: join(storedDir, 'payload'),
      entryType,
      owner: { uid: st.uid, gid: st.gid, user: req.ownerUser },
      actor: { uid: s.actor.uid, gid: s.actor.gid },
      mode: st.mode & 0o7777,
      links: found.links,
      treeHash: null,
      files: 0,
      bytes: 0,
      method: 'copy',
      quarantinedAt: createdAt,
      rule: req.rule,
      policyVersion: req.policyVersion,
      package: req.package,
      restoredAt: null,
      restoredForced: null,
      note: null,
      linksRefused: found.refused,
      top: { dev: st.dev, ino: st.ino },
      ...(req.gateKey !== undefined ? { gateKey: req.gateKey } : {}),
      search,
    };
    this.journal.insert(id, createdAt, 'moving', manifest);
    let removing = false;
    try {
      await this.options.beforeCopy?.(req.path);
      const h = await copyFromOwner(s, req.path, manifest.storedPath);
      // What was copied must be what was checked: a swap after the check shows as another type
      // at the top, and the removal below refuses another inode (ESTALE).
      const stored = await lstat(manifest.storedPath);
      const storedType = stored.isDirectory() ? 'directory' : stored.isSymbolicLink() ? 'symlink' : 'file';
      if (storedType !== entryType)
        throw new GuardError(
          'GUARD_QUARANTINE_UNSAFE_PATH',
          `${req.path} was replaced while being quarantined`,
          {
            path: req.path,
          },
        );
      manifest = {
        ...manifest,
        treeHash: h.hash,
        files: h.files,
        bytes: h.bytes,
        specialModes: h.modes,
      };
      this.save(id, 'copied', manifest);
      removing = true;
      await s.rmTree(req.path, { dev: st.dev, ino: st.ino });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (removing && code !== 'ESTALE') {
        // The copy is whole and recorded; the original may be partly gone. Keep the entry as
        // `copied` (restorable, and recovery retries the removal at the next start) rather than
        // dropping the only complete copy.
        this.save(id, 'copied', { ...manifest, note: `original not fully removed: ${errorMessage(err)}` });
        throw new GuardError(
          'GUARD_QUARANTINE_IO',
          `copied ${req.path} into quarantine (${id}) but could not remove it: ${errorMessage(err)}`,
          { path: req.path, id },
        );
      }
      await rm(storedDir, { recursive: true, force: true }).catch(() => undefined);
      const e =
        err instanceof GuardError
          ? err
          : code === 'ESTALE'
            ? new GuardError(
                'GUARD_QUARANTINE_UNSAFE_PATH',
                `${req.path} was replaced while being quarantined`,
                {
                  path: req.path,
                },
              )
            : new GuardError('GUARD_QUARANTINE_IO', `cannot quarantine ${req.path}: ${errorMessage(err)}`, {
                path: req.path,
              });
      this.save(id, 'rolled_back', { ...manifest, note: e.message });
      throw e;
    }
    return this.finishQuarantine(sessions, manifest);
  }

  /**
   * Removes links/shims into a quarantined entry's original path that appeared after the move (an
   * installer still linking bins when the package was taken) and records them in the manifest so
   * restore puts them back too: recorded before they are removed (a crash in between leaves a
   * record of a link still there, which restore skips, rather than a removed link no record
   * knows), and in turn with a restore of the same entry. Returns how many were removed; 0 when
   * the entry is not (or no longer) quarantined or its original path is occupied again. Never
   * rejects.
   */
  sweepLinks(id: string): Promise<number> {
    return this.inTurn(id, async () => {
      try {
        const known = this.get(id);
        if (known?.state !== 'quarantined') return 0;
        return await withSessions(async (sessions) => {
          const entry = this.get(id);
          if (entry?.state !== 'quarantined' || !entry.manifest.search) return 0;
          const m = entry.manifest;
          const s = await sessions.forPath(m.originalPath);
          if (await s.exists(m.originalPath)) return 0;
          const search = m.search as NonNullable<QuarantineManifest['search']>;
          const found = await findLinks(sessions, m.originalPath, { ...search, ownDirs: this.ownDirs });
          const recorded = new Set(m.links.map((l) => l.path));
          const late = found.links.filter((l) => !recorded.has(l.path));
          if (late.length === 0) return 0;
          this.save(id, 'quarantined', { ...m, links: [...m.links, ...late] });
          const removed: LinkRecord[] = [];
          for (const link of late) {
            const r = await removeLink(sessions, link, this.ownDirs);
            if (r === true) removed.push(link);
            else this.log.warn({ id, link: link.path, why: r }, 'late link not removed');
          }
          // Only what was removed stays recorded (restore must not write over what it did not take).
          if (removed.length < late.length)
            this.save(id, 'quarantined', { ...m, links: [...m.links, ...removed] });
          if (removed.length > 0)
            this.log.info(
              { id, links: removed.map((l) => l.path) },
              'removed late links into a quarantined path',
            );
          return removed.length;
        }, gateKeyOf(known.manifest));
      } catch (err) {
        this.log.warn({ err, id }, 'late link sweep failed');
        return 0;
      }
    });
  }

  /**
   * Removes the links and shims left pointing into `req.path` after the package manager removed
   * the package there itself (a reverted install): only entries `findLinks` proves point into it
   * (a symlink whose target resolves into the path, a small shim naming it), each as the owner of
   * its directory (removeLink). Nothing is done while something exists at `req.path` again (a new
   * install: the sensor reports that one). Nothing is recorded for restore: the package is gone.
   * Never rejects; what was not removed comes back in `refused`.
   */
  async removeLeftoverLinks(
    req: LeftoverLinksRequest,
  ): Promise<{ removed: string[]; refused: LinkRefusal[] }> {
    try {
      return await withSessions(async (sessions) => {
        const s = await sessions.forPath(req.path);
        if (await s.exists(req.path)) return { removed: [], refused: [] };
        const found = await findLinks(sessions, req.path, {
          linkDirs: req.linkDirs,
          aliasDirs: req.aliasDirs,
          shimDirs: [],
          binNames: [],
          ownDirs: this.ownDirs,
        });
        const removed: string[] = [];
        const refused = [...found.refused];
        for (const link of found.links) {
          const r = await removeLink(sessions, link, this.ownDirs);
          if (r === true) removed.push(link.path);
          else if (r !== 'gone') refused.push({ path: link.path, reason: r });
        }
        if (removed.length + refused.length > 0)
          this.log.info({ path: req.path, removed, refused }, 'leftover links of a reverted install');
        return { removed, refused };
      }, req.gateKey);
    } catch (err) {
      const reason = isGuardError(err) ? `${err.code}: ${err.message}` : errorMessage(err);
      return { removed: [], refused: [{ path: req.path, reason }] };
    }
  }

  /**
   * Finishes or rolls back every move interrupted by a crash. Await it once at start, before any
   * sensor runs (a sensor could otherwise report a path that recovery is about to put back).
   * Safe to call repeatedly; never rejects for one bad entry (counted as `failed`).
   */
  async recover(): Promise<RecoverySummary> {
    await this.init();
    let finished = 0;
    let rolledBack = 0;
    let failed = 0;
    for (const state of ['moving', 'copied', 'restoring', 'restore_copied'] as const) {
      for (const { manifest: m } of this.journal.inState(state)) {
        try {
          const outcome = await withSessions((sessions) => this.recoverOne(sessions, state, m), gateKeyOf(m));
          if (outcome === 'finished') finished++;
          else rolledBack++;
        } catch (err) {
          failed++;
          this.log.error({ err, id: m.id, state }, 'quarantine recovery failed');
        }
      }
    }
    if (finished + rolledBack + failed > 0)
      this.log.warn({ finished, rolledBack, failed }, 'recovered interrupted quarantine moves');
    return { finished, rolledBack, failed };
  }

  /** Every entry, oldest first (bounded by what was ever quarantined on this machine). */
  list(): QuarantineEntry[] {
    return this.journal.list();
  }

  /** One entry, or null. */
  get(id: string): QuarantineEntry | null {
    return this.journal.get(id);
  }

  /**
   * Puts a quarantined tree, its links and modes back exactly, written as the owner of the
   * directory it goes back into. GUARD_QUARANTINE_NOT_FOUND for an unknown id or one not in
   * quarantine; GUARD_QUARANTINE_STILL_BANNED when the policy still bans it and `force` is false;
   * GUARD_QUARANTINE_UNSAFE_PATH when a parent now leads outside the root or into a protected dir;
   * GUARD_QUARANTINE_BUSY when the original path does not answer root's looks in time (nothing
   * written); GUARD_QUARANTINE_IO when the original path is taken or writing fails.
   */
  restore(id: string, opts: RestoreOptions): Promise<RestoreResult> {
    return this.inTurn(id, () => this.restoreNow(id, opts));
  }

  private async restoreNow(id: string, opts: RestoreOptions): Promise<RestoreResult> {
    const entry = this.get(id);
    if (entry?.state !== 'quarantined')
      throw new GuardError(
        'GUARD_QUARANTINE_NOT_FOUND',
        entry ? `quarantine entry ${id} is ${entry.state}, not quarantined` : `no quarantine entry ${id}`,
        { id },
      );
    let m = entry.manifest;
    const banned = opts.stillBanned(m);
    if (banned && !opts.force)
      throw new GuardError(
        'GUARD_QUARANTINE_STILL_BANNED',
        `the policy in force still bans ${m.package ? m.package.name : m.originalPath} (rule ${m.rule.id}); restore with --force`,
        { id, rule: m.rule.id },
      );
    return withSessions(async (sessions) => {
      const s = await sessions.forPath(m.originalPath);
      assertSameActor(s.actor, m);
      if (await s.exists(m.originalPath))
        throw new GuardError('GUARD_QUARANTINE_IO', `${m.originalPath} exists again; move it away first`, {
          id,
        });
      const escapes = (): GuardError =>
        new GuardError(
          'GUARD_QUARANTINE_UNSAFE_PATH',
          `refusing to restore ${m.originalPath}: a parent directory now leads outside ${m.root} (or the root is gone)`,
          { id, path: m.originalPath, root: m.root },
        );
      if (!(await this.parentInsideRoot(s, m.originalPath, m.root))) throw escapes();
      const parent = dirname(m.originalPath);
      const created = await s.mkdirp(parent, 0o755);
      if (!(await this.parentInsideRoot(s, m.originalPath, m.root))) throw escapes();
      // Parents that had gone (an emptied scope dir the user removed) come back as the owner's:
      // a user actor makes them its own; a root actor (root-controlled path) gives them away.
      if (created && s.actor.uid === 0)
        for (let d = parent; inside(d, created); d = dirname(d)) {
          await s.lchown(d, m.owner.uid, m.owner.gid).catch(() => undefined);
          if (d === created) break;
        }
      m = { ...m, restoredForced: banned };
      this.save(id, 'restoring', m);
      let h: TreeHash | null;
      try {
        await copyToOwner(s, m.storedPath, m.originalPath, m.specialModes ?? {});
        h = await hashAsOwner(s, m.originalPath).catch(() => null);
      } catch (err) {
        // The payload is still whole in quarantine: remove the partial copy (as the owner).
        await s.rmTree(m.originalPath).catch(() => undefined);
        this.save(id, 'quarantined', m);
        throw new GuardError(
          'GUARD_QUARANTINE_IO',
          `cannot restore ${m.originalPath}: ${errorMessage(err)}`,
          {
            id,
          },
        );
      }
      this.save(id, 'restore_copied', m);
      return this.finishRestore(sessions, m, banned, h);
    }, gateKeyOf(m));
  }

  // ---- finishing -------------------------------------------------------------------------

  private async finishQuarantine(
    sessions: OwnerSessions,
    m0: QuarantineManifest,
  ): Promise<QuarantineManifest> {
    let note = m0.note;
    let h: TreeHash | null =
      m0.treeHash !== null ? { hash: m0.treeHash, files: m0.files, bytes: m0.bytes } : null;
    if (h === null) {
      // Recovery of a move whose hash was not recorded: hash root's copy. A tree that cannot be
      // hashed stays quarantined, recorded without a hash, rather than stuck in `moving`.
      try {
        h = await treeHash(m0.storedPath);
      } catch (err) {
        note = `not hashed: ${errorMessage(err)}`;
        this.log.warn({ id: m0.id, err: errorMessage(err) }, 'quarantined tree cannot be hashed');
      }
    }
    const removed: LinkRecord[] = [];
    const refused: LinkRefusal[] = [...(m0.linksRefused ?? [])];
    for (const link of m0.links) {
      const r = await removeLink(sessions, link, this.ownDirs);
      if (r === true) removed.push(link);
      else if (r !== 'gone') refused.push({ path: link.path, reason: r });
    }
    const m = {
      ...m0,
      treeHash: h?.hash ?? null,
      files: h?.files ?? 0,
      bytes: h?.bytes ?? 0,
      links: removed,
      linksRefused: refused,
      note,
    };
    this.save(m.id, 'quarantined', m);
    if (refused.length > 0)
      this.log.warn(
        { id: m.id, path: m.originalPath, refused },
        'link dirs or links left alone (not provably the package’s, or not the owner’s to change)',
      );
    this.log.info({ id: m.id, path: m.originalPath, links: removed.length, method: m.method }, 'quarantined');
    return m;
  }

  private async finishRestore(
    sessions: OwnerSessions,
    m0: QuarantineManifest,
    forced: boolean,
    h: TreeHash | null,
  ): Promise<RestoreResult> {
    let linksRestored = 0;
    for (const link of m0.links) {
      if (await restoreLink(sessions, link, this.ownDirs)) linksRestored++;
    }
    await rm(dirname(m0.storedPath), { recursive: true, force: true });
    const m = { ...m0, restoredAt: new Date().toISOString() };
    this.save(m.id, 'restored', m);
    const hashVerified = h !== null && h.hash === m.treeHash;
    if (!hashVerified) this.log.error({ id: m.id }, 'restored tree hash differs from the quarantined one');
    this.log.info({ id: m.id, path: m.originalPath, forced }, 'restored from quarantine');
    return { manifest: m, hashVerified, linksRestored, forced };
  }

  // ---- recovery --------------------------------------------------------------------------

  private async recoverOne(
    sessions: OwnerSessions,
    state: QuarantineState,
    m: QuarantineManifest,
  ): Promise<'finished' | 'rolled_back'> {
    const s = await sessions.forPath(m.originalPath);
    // Removing (copied, restoring) or writing (restoring) at the original path only as the actor
    // that quarantined it; 'moving' with the original gone only touches guardd's own dir.
    if (state === 'copied' || state === 'restoring') assertSameActor(s.actor, m);
    const original = await s.exists(m.originalPath);
    const stored = await exists(m.storedPath);
    switch (state) {
      case 'moving':
        if (stored && !original) {
          await this.finishQuarantine(sessions, { ...m, method: m.method ?? 'rename' });
          return 'finished';
        }
        // Never moved, or a partial copy: the original is authoritative.
        await rm(dirname(m.storedPath), { recursive: true, force: true });
        this.save(m.id, 'rolled_back', { ...m, note: original ? 'interrupted before the move' : 'lost' });
        return 'rolled_back';
      case 'copied':
        // The copy verified before this state was written: finish removing the original — only
        // if it is still what was copied (same inode when recorded), inside its root, removed as
        // its owner (assertSafe throws: counted `failed`, left as it is for an admin).
        if (original) {
          await this.assertSafe(s, m.originalPath, m.root, m.entryType);
          await s.rmTree(m.originalPath, m.top);
        }
        await this.finishQuarantine(sessions, m);
        return 'finished';
      case 'restoring':
        if (stored && original) {
          if (!(await this.parentInsideRoot(s, m.originalPath, m.root)))
            throw new GuardError(
              'GUARD_QUARANTINE_UNSAFE_PATH',
              `not removing the partial restore at ${m.originalPath}: a parent directory now leads outside ${m.root}`,
            );
          await s.rmTree(m.originalPath);
          this.save(m.id, 'quarantined', m);
          return 'rolled_back';
        }
        if (stored) {
          this.save(m.id, 'quarantined', m);
          return 'rolled_back';
        }
        await this.finishRestore(
          sessions,
          m,
          m.restoredForced === true,
          await hashAsOwner(s, m.originalPath).catch(() => null),
        );
        return 'finished';
      case 'restore_copied':
        await this.finishRestore(
          sessions,
          m,
          m.restoredForced === true,
          await hashAsOwner(s, m.originalPath).catch(() => null),
        );
        return 'finished';
      default:
        return 'finished';
    }
  }

  // ---- safety ----------------------------------------------------------------------------

  /**
   * The entry at `path` as its owner sees it, after checking (as that owner) that its directory
   * resolves inside `root`, outside protected dirs, and that it is of the expected type.
   */
  private async assertSafe(
    s: OwnerSession,
    path: string,
    root: string,
    expect: QuarantineRequest['expect'],
  ): Promise<OwnerStatLike> {
    const unsafe = (why: string): GuardError =>
      new GuardError('GUARD_QUARANTINE_UNSAFE_PATH', `refusing to move ${path}: ${why}`, { path, root });
    if (!isAbsolute(path) || !isAbsolute(root)) throw unsafe('not an absolute path');
    const rel = relative(resolve(root), resolve(path));
    if (!rel || rel.startsWith('..') || isAbsolute(rel)) throw unsafe('not inside its root');
    let rootReal: string;
    let parentReal: string;
    try {
      rootReal = await s.realpath(root);
      parentReal = await s.realpath(dirname(path));
    } catch (err) {
      throw unsafe(`cannot resolve (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
    }
    if (!inside(parentReal, rootReal)) throw unsafe('a parent directory now leads outside the root');
    const real = join(parentReal, rel.split(sep).at(-1) as string);
    assertNotProtected(real, this.ownDirs, path);
    let st: OwnerStatLike;
    try {
      st = await s.lstat(path);
    } catch (err) {
      throw unsafe(`gone (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
    }
    const ok =
      expect === 'directory'
        ? st.type === 'directory'
        : expect === 'file'
          ? st.type === 'file'
          : expect === 'symlink'
            ? st.type === 'symlink'
            : st.type === 'file' || st.type === 'symlink';
    if (!ok) throw unsafe(`expected a ${expect}, found a ${st.type}`);
    if (st.type === 'directory') {
      // The directory itself must not be one of guardd's or the system's either (a path glob
      // that matched a symlinked base is caught above; this catches a bind mount or a rename).
      assertNotProtected(await s.realpath(path), this.ownDirs, path);
    }
    return st;
  }

  /**
   * True when the directory holding `path` resolves (as its owner sees it) to `root`'s real path
   * or below it; a missing parent is judged by its nearest existing ancestor.
   */
  private async parentInsideRoot(s: OwnerSession, path: string, root: string): Promise<boolean> {
    let rootReal: string;
    try {
      rootReal = await s.realpath(root);
    } catch {
      return false;
    }
    const lexicalRoot = resolve(root);
    let dir = dirname(resolve(path));
    for (;;) {
      try {
        const real = await s.realpath(dir);
        if (!inside(real, rootReal)) return false;
        assertNotProtected(real, this.ownDirs, path);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || (await s.exists(dir))) return false;
        const up = dirname(dir);
        if (up === dir || !inside(up, lexicalRoot)) return false;
        dir = up;
      }
    }
  }

  private save(id: string, state: QuarantineState, m: QuarantineManifest): void {
    this.journal.save(id, state, m);
  }
}

/** guardd's own install (the package root holding bin/, dist/, node_modules/): never a target. */
/** guardd's install directory (dist/ and native/ live there): never acted on, never marked. */
export const APP_DIR = resolve(fileURLToPath(import.meta.url), '..', '..', '..');

type OwnerStatLike = Awaited<ReturnType<OwnerSession['lstat']>>;

/** lstat-exists for root's own paths (the quarantine dir). */
async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

/** The install read gate's key of root's looks at an entry's original path (see `gateKey`). */
function gateKeyOf(m: QuarantineManifest): GateKey {
  return m.gateKey ?? m.actor?.uid ?? m.owner.uid;
}

/**
 * Refuses to act at a quarantined entry's original path as anyone but the actor that quarantined it
 * (manifest `actor`; the owner for older entries): GUARD_QUARANTINE_UNSAFE_PATH.
 */
function assertSameActor(actor: { readonly uid: number }, m: QuarantineManifest): void {
  const expected = m.actor?.uid ?? m.owner.uid;
  if (actor.uid !== expected)
    throw new GuardError(
      'GUARD_QUARANTINE_UNSAFE_PATH',
      `refusing to act at ${m.originalPath}: its directory is now controlled by uid ${actor.uid}, not uid ${expected} as when it was quarantined (a parent was replaced, e.g. by a link)`,
      { id: m.id, path: m.originalPath },
    );
}
