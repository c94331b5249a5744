/**
 * Owns the quarantine: moving a package directory or artifact into the root-only quarantine dir,
 * the bin links / shims removed with it, the manifest of each entry in the `quarantine` table of
 * the state DB, recovery of interrupted moves at start, listing and exact restore.
 *
 * Write-ahead: the intent (state `moving`, with every path involved) is committed before anything
 * is touched, so a crash at any point is finished or rolled back by `recover()`:
 *   moving → (copied, only across filesystems) → quarantined → restoring → (restore_copied) → restored
 * A failed or refused move ends as `rolled_back`. Nothing is ever followed through a symlink for
 * moving: trees are walked with lstat, links are moved/copied as links.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import {
  chmod,
  copyFile,
  constants as fsc,
  lchown,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { errorMessage, GuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { uuidv7 } from '../common/uuidv7.js';
import type { ControlMethods } from '../control/protocol.js';
import type { EventSink } from '../events/event-types.js';
import type { PackageManager, PackageObservation, PathObservation } from '../sensors/observation.js';
import type { Db } from '../store/database.js';
import { observationFields } from './enforcer.js';

export type QuarantineState =
  | 'moving'
  | 'copied'
  | 'quarantined'
  | 'restoring'
  | 'restore_copied'
  | 'restored'
  | 'rolled_back';

/** A bin link or shim removed with the package, recorded so restore can put it back exactly. */
export type LinkRecord =
  | {
      readonly path: string;
      readonly type: 'symlink';
      readonly target: string;
      readonly uid: number;
      readonly gid: number;
      /** Real path of the directory it was found in (see sameLinkDir). */
      readonly dirReal?: string;
    }
  | {
      readonly path: string;
      readonly type: 'file';
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
      /** The shim's bytes, base64 (shims are capped at MAX_SHIM_BYTES). */
      readonly content: string;
      /** Real path of the directory it was found in (see sameLinkDir). */
      readonly dirReal?: string;
    };

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

export interface QuarantineStoreOptions {
  readonly db: Db;
  /** Root-only directory under the state dir; created 0700. */
  readonly quarantineDir: string;
  readonly logger: Logger;
}

/** Trees with more entries than this are not quarantined (bounds time and memory of one move). */
export const MAX_TREE_ENTRIES = 200_000;
/** Files in bin dirs larger than this are not read as shims (real shims are < 2 KiB). */
const MAX_SHIM_BYTES = 64 * 1024;
/** At most this many entries of one bin dir are examined (a hostile bin dir can be huge). */
const MAX_LINK_DIR_ENTRIES = 20_000;

export class QuarantineStore {
  private readonly log: Logger;
  private readonly insertStmt;
  private readonly updateStmt;
  private readonly getStmt;
  private readonly listStmt;
  private readonly byStateStmt;

  constructor(private readonly options: QuarantineStoreOptions) {
    this.log = options.logger.child({ component: 'quarantine.store' });
    const db = options.db;
    this.insertStmt = db.prepare(
      'INSERT INTO quarantine(id, created_at, state, manifest) VALUES (?, ?, ?, ?)',
    );
    this.updateStmt = db.prepare('UPDATE quarantine SET state = ?, manifest = ? WHERE id = ?');
    this.getStmt = db.prepare<[string], Row>(
      'SELECT id, created_at, state, manifest FROM quarantine WHERE id = ?',
    );
    this.listStmt = db.prepare<[], Row>('SELECT id, created_at, state, manifest FROM quarantine ORDER BY id');
    this.byStateStmt = db.prepare<[string], Row>(
      'SELECT id, created_at, state, manifest FROM quarantine WHERE state = ? ORDER BY id',
    );
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
   * Moves `req.path` into quarantine and removes the links/shims pointing into it. Throws
   * GUARD_QUARANTINE_UNSAFE_PATH when the path is not what was expected or left its root (nothing
   * moved), GUARD_QUARANTINE_IO when moving failed (rolled back). Resolves with the manifest.
   */
  async quarantine(req: QuarantineRequest): Promise<QuarantineManifest> {
    await this.init();
    const st = await this.assertSafe(req.path, req.root, req.expect);
    const entryType = st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'file';
    const links = await findLinks(req.path, req.linkDirs, req.shimDirs, req.binNames, req.aliasDirs ?? []);
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
      mode: st.mode & 0o7777,
      links,
      treeHash: null,
      files: 0,
      bytes: 0,
      method: null,
      quarantinedAt: createdAt,
      rule: req.rule,
      policyVersion: req.policyVersion,
      package: req.package,
      restoredAt: null,
      restoredForced: null,
      note: null,
      search: {
        linkDirs: req.linkDirs,
        aliasDirs: req.aliasDirs ?? [],
        shimDirs: req.shimDirs,
        binNames: req.binNames,
      },
    };
    this.insertStmt.run(id, createdAt, 'moving', JSON.stringify(manifest));
    try {
      // Re-check immediately before the move: the window an attacker has is now one syscall.
      const again = await this.assertSafe(req.path, req.root, req.expect);
      if (again.ino !== st.ino || again.dev !== st.dev)
        throw new GuardError(
          'GUARD_QUARANTINE_UNSAFE_PATH',
          `${req.path} was replaced while being quarantined`,
        );
      manifest = await this.moveIn(manifest, st);
    } catch (err) {
      await rm(storedDir, { recursive: true, force: true }).catch(() => undefined);
      this.save(id, 'rolled_back', { ...manifest, note: errorMessage(err) });
      if (err instanceof GuardError) throw err;
      throw new GuardError('GUARD_QUARANTINE_IO', `cannot quarantine ${req.path}: ${errorMessage(err)}`, {
        path: req.path,
      });
    }
    return this.finishQuarantine(manifest);
  }

  /**
   * Removes links/shims into a quarantined entry's original path that appeared after the move (an
   * installer still linking bins when the package was taken) and records them in the manifest so
   * restore puts them back too. Returns how many were removed; 0 when the entry is not (or no
   * longer) quarantined or its original path is occupied again. Never rejects.
   */
  async sweepLinks(id: string): Promise<number> {
    try {
      const entry = this.get(id);
      if (entry?.state !== 'quarantined' || !entry.manifest.search) return 0;
      const m = entry.manifest;
      if (await exists(m.originalPath)) return 0;
      const search = m.search as NonNullable<QuarantineManifest['search']>;
      const found = await findLinks(
        m.originalPath,
        search.linkDirs,
        search.shimDirs,
        search.binNames,
        search.aliasDirs,
      );
      const known = new Set(m.links.map((l) => l.path));
      const removed: LinkRecord[] = [];
      for (const link of found) if (!known.has(link.path) && (await removeLink(link))) removed.push(link);
      if (removed.length === 0) return 0;
      // Re-read: a restore may have started meanwhile; only append while still quarantined.
      const now = this.get(id);
      if (now?.state !== 'quarantined') return removed.length;
      this.save(id, 'quarantined', { ...now.manifest, links: [...now.manifest.links, ...removed] });
      this.log.info({ id, links: removed.map((l) => l.path) }, 'removed late links into a quarantined path');
      return removed.length;
    } catch (err) {
      this.log.warn({ err, id }, 'late link sweep failed');
      return 0;
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
      for (const row of this.byStateStmt.all(state)) {
        const m = JSON.parse(row.manifest) as QuarantineManifest;
        try {
          const outcome = await this.recoverOne(state, m);
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
    return this.listStmt.all().map(toEntry);
  }

  /** One entry, or null. */
  get(id: string): QuarantineEntry | null {
    const row = this.getStmt.get(id);
    return row ? toEntry(row) : null;
  }

  /**
   * Puts a quarantined tree, its links and modes back exactly. GUARD_QUARANTINE_NOT_FOUND for an
   * unknown id or one not in quarantine; GUARD_QUARANTINE_STILL_BANNED when the policy still bans
   * it and `force` is false; GUARD_QUARANTINE_IO when the original path is taken or moving fails.
   */
  async restore(id: string, opts: RestoreOptions): Promise<RestoreResult> {
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
    if (await exists(m.originalPath))
      throw new GuardError('GUARD_QUARANTINE_IO', `${m.originalPath} exists again; move it away first`, {
        id,
      });
    // The user owns the directories above the original path and may have swapped one for a
    // symlink while the entry sat in quarantine: root must not follow it (before and after
    // creating missing parents, which could otherwise be created through such a link).
    const escapes = (): GuardError =>
      new GuardError(
        'GUARD_QUARANTINE_UNSAFE_PATH',
        `refusing to restore ${m.originalPath}: a parent directory now leads outside ${m.root} (or the root is gone)`,
        { id, path: m.originalPath, root: m.root },
      );
    if (!(await parentInsideRoot(m.originalPath, m.root))) throw escapes();
    const parent = dirname(m.originalPath);
    const created = await mkdir(parent, { recursive: true, mode: 0o755 });
    if (!(await parentInsideRoot(m.originalPath, m.root))) throw escapes();
    // Parents that had gone (an emptied scope dir the user removed) come back as the owner's, not
    // root's: a root-owned scope dir would stop the user from managing their own packages.
    if (created)
      for (let d = parent; inside(d, created); d = dirname(d)) {
        await lchown(d, m.owner.uid, m.owner.gid).catch(() => undefined);
        if (d === created) break;
      }
    m = { ...m, restoredForced: banned };
    this.save(id, 'restoring', m);
    try {
      await this.moveOut(m);
    } catch (err) {
      // The payload is still whole in quarantine (a partial copy at the original is removed).
      if (await exists(m.storedPath)) {
        if (await parentInsideRoot(m.originalPath, m.root))
          await rm(m.originalPath, { recursive: true, force: true }).catch(() => undefined);
        this.save(id, 'quarantined', m);
      }
      throw new GuardError('GUARD_QUARANTINE_IO', `cannot restore ${m.originalPath}: ${errorMessage(err)}`, {
        id,
      });
    }
    return this.finishRestore(m, banned);
  }

  // ---- moving in -------------------------------------------------------------------------

  private async moveIn(m: QuarantineManifest, checked: Stats): Promise<QuarantineManifest> {
    try {
      await rename(m.originalPath, m.storedPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      const srcHash = await treeHash(m.originalPath);
      await copyTree(m.originalPath, m.storedPath);
      const dstHash = await treeHash(m.storedPath);
      if (srcHash.hash !== dstHash.hash)
        throw new GuardError(
          'GUARD_QUARANTINE_IO',
          `copy of ${m.originalPath} does not verify (hash differs)`,
        );
      const copied = { ...m, method: 'copy' as const, treeHash: dstHash.hash };
      this.save(m.id, 'copied', copied);
      // Copying took a while: the path (or a parent) may have been swapped meanwhile, and root
      // removing recursively through a swapped parent deletes whatever it now leads to.
      const now = await this.assertSafe(m.originalPath, m.root, m.entryType);
      if (now.ino !== checked.ino || now.dev !== checked.dev)
        throw new GuardError(
          'GUARD_QUARANTINE_UNSAFE_PATH',
          `${m.originalPath} was replaced while being copied; not removed`,
        );
      await rm(m.originalPath, { recursive: true, force: true });
      return copied;
    }
    // A rename moves whatever is at the path now: if it is not what we checked, put it back.
    const moved = await lstat(m.storedPath);
    const type = moved.isDirectory() ? 'directory' : moved.isSymbolicLink() ? 'symlink' : 'file';
    if (type !== m.entryType) {
      await rename(m.storedPath, m.originalPath).catch(() => undefined);
      throw new GuardError(
        'GUARD_QUARANTINE_UNSAFE_PATH',
        `${m.originalPath} changed type while being moved`,
      );
    }
    return { ...m, method: 'rename' };
  }

  private async finishQuarantine(m0: QuarantineManifest): Promise<QuarantineManifest> {
    // The payload is in quarantine now: a tree that cannot be hashed (too many entries, paths
    // too long for their new place) stays there, recorded without a hash, rather than leaving
    // the entry in `moving` — unrestorable, and failing recovery at every start.
    let h: TreeHash | null = null;
    let note = m0.note;
    try {
      h = await treeHash(m0.storedPath);
    } catch (err) {
      note = `not hashed: ${errorMessage(err)}`;
      this.log.warn({ id: m0.id, err: errorMessage(err) }, 'quarantined tree cannot be hashed');
    }
    const removed: LinkRecord[] = [];
    for (const link of m0.links) {
      if (await removeLink(link)) removed.push(link);
    }
    const m = {
      ...m0,
      treeHash: h?.hash ?? null,
      files: h?.files ?? 0,
      bytes: h?.bytes ?? 0,
      links: removed,
      note,
    };
    this.save(m.id, 'quarantined', m);
    this.log.info({ id: m.id, path: m.originalPath, links: removed.length, method: m.method }, 'quarantined');
    return m;
  }

  // ---- moving out ------------------------------------------------------------------------

  private async moveOut(m: QuarantineManifest): Promise<void> {
    try {
      await rename(m.storedPath, m.originalPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      await copyTree(m.storedPath, m.originalPath);
      const h = await treeHash(m.originalPath);
      if (h.hash !== m.treeHash)
        throw new GuardError('GUARD_QUARANTINE_IO', `restored copy of ${m.originalPath} does not verify`);
      this.save(m.id, 'restore_copied', m);
      await rm(m.storedPath, { recursive: true, force: true });
    }
  }

  private async finishRestore(m0: QuarantineManifest, forced: boolean): Promise<RestoreResult> {
    let linksRestored = 0;
    for (const link of m0.links) {
      if (await restoreLink(link)) linksRestored++;
    }
    const h = await treeHash(m0.originalPath).catch(() => null);
    const m = { ...m0, restoredAt: new Date().toISOString() };
    this.save(m.id, 'restored', m);
    await rm(dirname(m.storedPath), { recursive: true, force: true });
    const hashVerified = h !== null && h.hash === m.treeHash;
    if (!hashVerified) this.log.error({ id: m.id }, 'restored tree hash differs from the quarantined one');
    this.log.info({ id: m.id, path: m.originalPath, forced }, 'restored from quarantine');
    return { manifest: m, hashVerified, linksRestored, forced };
  }

  // ---- recovery --------------------------------------------------------------------------

  private async recoverOne(
    state: QuarantineState,
    m: QuarantineManifest,
  ): Promise<'finished' | 'rolled_back'> {
    const original = await exists(m.originalPath);
    const stored = await exists(m.storedPath);
    switch (state) {
      case 'moving':
        if (stored && !original) {
          await this.finishQuarantine({ ...m, method: m.method ?? 'rename' });
          return 'finished';
        }
        // Never moved, or a partial copy: the original is authoritative.
        await rm(dirname(m.storedPath), { recursive: true, force: true });
        this.save(m.id, 'rolled_back', { ...m, note: original ? 'interrupted before the move' : 'lost' });
        return 'rolled_back';
      case 'copied':
        // The copy verified before this state was written: finish removing the original — only
        // if it is still what was copied, inside its root (assertSafe throws: counted `failed`,
        // left as it is for an admin).
        if (original) {
          await this.assertSafe(m.originalPath, m.root, m.entryType);
          await rm(m.originalPath, { recursive: true, force: true });
        }
        await this.finishQuarantine(m);
        return 'finished';
      case 'restoring':
        if (stored && original) {
          if (!(await parentInsideRoot(m.originalPath, m.root)))
            throw new GuardError(
              'GUARD_QUARANTINE_UNSAFE_PATH',
              `not removing the partial restore at ${m.originalPath}: a parent directory now leads outside ${m.root}`,
            );
          await rm(m.originalPath, { recursive: true, force: true });
          this.save(m.id, 'quarantined', m);
          return 'rolled_back';
        }
        if (stored) {
          this.save(m.id, 'quarantined', m);
          return 'rolled_back';
        }
        await this.finishRestore(m, m.restoredForced === true);
        return 'finished';
      case 'restore_copied':
        await rm(m.storedPath, { recursive: true, force: true });
        await this.finishRestore(m, m.restoredForced === true);
        return 'finished';
      default:
        return 'finished';
    }
  }

  // ---- safety ----------------------------------------------------------------------------

  /** lstat of `path` after checking it is inside `root` (no symlinked parent leads out) and of the expected type. */
  private async assertSafe(path: string, root: string, expect: QuarantineRequest['expect']): Promise<Stats> {
    const unsafe = (why: string): GuardError =>
      new GuardError('GUARD_QUARANTINE_UNSAFE_PATH', `refusing to move ${path}: ${why}`, { path, root });
    if (!isAbsolute(path) || !isAbsolute(root)) throw unsafe('not an absolute path');
    const rel = relative(resolve(root), resolve(path));
    if (!rel || rel.startsWith('..') || isAbsolute(rel)) throw unsafe('not inside its root');
    let rootReal: string;
    let parentReal: string;
    try {
      rootReal = await realpath(root);
      parentReal = await realpath(dirname(path));
    } catch (err) {
      throw unsafe(`cannot resolve (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
    }
    if (parentReal !== rootReal && !parentReal.startsWith(rootReal + sep))
      throw unsafe('a parent directory now leads outside the root');
    let st: Stats;
    try {
      st = await lstat(path);
    } catch (err) {
      throw unsafe(`gone (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
    }
    const ok =
      expect === 'directory'
        ? st.isDirectory()
        : expect === 'file'
          ? st.isFile()
          : expect === 'symlink'
            ? st.isSymbolicLink()
            : st.isFile() || st.isSymbolicLink();
    if (!ok)
      throw unsafe(
        `expected a ${expect}, found a ${st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : 'file'}`,
      );
    return st;
  }

  private save(id: string, state: QuarantineState, m: QuarantineManifest): void {
    this.updateStmt.run(state, JSON.stringify(m), id);
  }
}

interface Row {
  id: string;
  created_at: string;
  state: string;
  manifest: string;
}

function toEntry(row: Row): QuarantineEntry {
  return {
    id: row.id,
    state: row.state as QuarantineState,
    createdAt: row.created_at,
    manifest: JSON.parse(row.manifest) as QuarantineManifest,
  };
}

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

/**
 * True when the directory holding `path` resolves (through any symlink) to `root`'s real path or
 * below it; a missing parent is judged by its nearest existing ancestor (a dangling link is not
 * "missing"). Checked before root creates, moves or removes anything at an original path, whose
 * parents the user owns and can swap for symlinks.
 */
async function parentInsideRoot(path: string, root: string): Promise<boolean> {
  let rootReal: string;
  try {
    rootReal = await realpath(root);
  } catch {
    return false;
  }
  const lexicalRoot = resolve(root);
  let dir = dirname(resolve(path));
  for (;;) {
    try {
      return inside(await realpath(dir), rootReal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || (await exists(dir))) return false;
      const up = dirname(dir);
      if (up === dir || !inside(up, lexicalRoot)) return false;
      dir = up;
    }
  }
}

// ---- links -------------------------------------------------------------------------------

/**
 * Links and shims pointing into `target`: symlinks in `linkDirs` and `aliasDirs` whose target
 * (lexically or fully resolved) is inside it, small files in `linkDirs` whose text names it or an
 * alias (npm/pnpm/cmd shims), and entries of `shimDirs` named after one of `binNames`. Never
 * throws; unreadable dirs are skipped.
 */
export async function findLinks(
  target: string,
  linkDirs: readonly string[],
  shimDirs: readonly string[],
  binNames: readonly string[],
  aliasDirs: readonly string[] = [],
): Promise<LinkRecord[]> {
  const out: LinkRecord[] = [];
  const seen = new Set<string>();
  // Paths that stand for the package: itself, its real path, and every symlink found pointing
  // into it (pnpm's node_modules/<name> link — shims name that path, not the .pnpm one).
  const targets = [target];
  try {
    const st = await lstat(target);
    if (!st.isSymbolicLink()) {
      const real = await realpath(target);
      if (real !== target) targets.push(real);
    }
  } catch {
    // gone: lexical matching only
  }
  const names = new Set(binNames);
  const consider = async (dir: string, byName: boolean, linksOnly = false): Promise<boolean> => {
    let entries: string[];
    let dirReal: string;
    try {
      dirReal = await realpath(dir);
      entries = (await readdir(dir)).slice(0, MAX_LINK_DIR_ENTRIES);
    } catch {
      return false;
    }
    let found = false;
    for (const name of entries) {
      const path = join(dir, name);
      if (targets.includes(path) || seen.has(path)) continue;
      let st: Stats;
      try {
        st = await lstat(path);
      } catch {
        continue;
      }
      if (linksOnly && !st.isSymbolicLink()) continue;
      const rec = await linkRecord(path, st, targets, dir, dirReal, byName ? names : null);
      if (rec) {
        seen.add(path);
        out.push(rec);
        if (rec.type === 'symlink') targets.push(path);
        found = true;
      }
    }
    return found;
  };
  // A second round sees shims that name an alias discovered in the first.
  for (let round = 0; round < 2; round++) {
    let found = false;
    for (const dir of aliasDirs) if (await consider(dir, false, true)) found = true;
    for (const dir of linkDirs) if (await consider(dir, false)) found = true;
    if (!found) break;
  }
  for (const dir of shimDirs) await consider(dir, true);
  return out;
}

async function linkRecord(
  path: string,
  st: Stats,
  targets: readonly string[],
  dir: string,
  dirReal: string,
  byName: ReadonlySet<string> | null,
): Promise<LinkRecord | null> {
  const base = basename(path).replace(/\.(cmd|ps1|exe|bat)$/i, '');
  const within = (p: string): boolean => targets.some((t) => inside(p, t));
  if (st.isSymbolicLink()) {
    const raw = await readlink(path).catch(() => null);
    if (raw === null) return null;
    let hit = byName ? byName.has(base) : within(resolve(dir, raw));
    if (!hit && !byName) {
      const real = await realpath(path).catch(() => null);
      hit = real !== null && within(real);
    }
    return hit ? { path, type: 'symlink', target: raw, uid: st.uid, gid: st.gid, dirReal } : null;
  }
  if (!st.isFile() || st.size > MAX_SHIM_BYTES) return null;
  let hit = byName ? byName.has(base) : false;
  let content: Buffer | null = null;
  if (!byName) {
    content = await readFile(path).catch(() => null);
    if (!content) return null;
    const text = content.toString('utf8');
    hit = targets.some((t) => {
      const relPosix = relative(dir, t).split(sep).join('/');
      const relWin = relPosix.split('/').join('\\');
      return text.includes(t) || (relPosix.length > 0 && (text.includes(relPosix) || text.includes(relWin)));
    });
  }
  if (!hit) return null;
  content ??= await readFile(path).catch(() => null);
  if (!content) return null;
  return {
    path,
    type: 'file',
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    content: content.toString('base64'),
    dirReal,
  };
}

/**
 * True when the link's directory still resolves to where the link was found. Bin dirs belong to
 * the user, who can swap one for a symlink (to /etc, say) between our finding a link and removing
 * or restoring it: root must then neither unlink nor create anything there.
 */
async function sameLinkDir(link: LinkRecord): Promise<boolean> {
  const dir = dirname(link.path);
  const real = await realpath(dir).catch(() => null);
  return real !== null && real === (link.dirReal ?? dir);
}

/** Removes a recorded link if it is still the recorded thing, where it was found. True when removed. */
async function removeLink(link: LinkRecord): Promise<boolean> {
  try {
    if (!(await sameLinkDir(link))) return false;
    const st = await lstat(link.path);
    if (link.type === 'symlink') {
      if (!st.isSymbolicLink() || (await readlink(link.path)) !== link.target) return false;
    } else {
      // Same bytes as the shim that was found: anything else at that path is not ours to remove.
      if (!st.isFile() || st.size > MAX_SHIM_BYTES) return false;
      if ((await readFile(link.path)).toString('base64') !== link.content) return false;
    }
    await unlink(link.path);
    return true;
  } catch {
    return false;
  }
}

/** Recreates a removed link or shim if its path is free and its directory is where it was. True when recreated. */
async function restoreLink(link: LinkRecord): Promise<boolean> {
  if (await exists(link.path)) return false;
  try {
    await mkdir(dirname(link.path), { recursive: true });
    if (!(await sameLinkDir(link))) return false;
    if (link.type === 'symlink') await symlink(link.target, link.path);
    else {
      await writeFile(link.path, Buffer.from(link.content, 'base64'), { mode: link.mode, flag: 'wx' });
      await chmod(link.path, link.mode);
    }
    await lchown(link.path, link.uid, link.gid).catch(() => undefined);
    return true;
  } catch {
    return false;
  }
}

// ---- trees -------------------------------------------------------------------------------

export interface TreeHash {
  readonly hash: string;
  readonly files: number;
  readonly bytes: number;
}

/**
 * Hex SHA-256 over a tree walked with lstat (never following links): for each entry in sorted
 * order its relative path, type, permission bits and content hash or link target. Equal hashes
 * mean byte-for-byte equal trees with equal modes.
 */
export async function treeHash(root: string): Promise<TreeHash> {
  const h = createHash('sha256');
  let files = 0;
  let bytes = 0;
  let entries = 0;
  const walk = async (abs: string, rel: string): Promise<void> => {
    if (++entries > MAX_TREE_ENTRIES)
      throw new GuardError('GUARD_QUARANTINE_IO', `${root} has more than ${MAX_TREE_ENTRIES} entries`);
    const st = await lstat(abs);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) {
      h.update(`l ${mode} ${rel} ${await readlink(abs)}\n`);
    } else if (st.isFile()) {
      files++;
      bytes += st.size;
      h.update(`f ${mode} ${rel} ${await fileHash(abs)}\n`);
    } else if (st.isDirectory()) {
      h.update(`d ${mode} ${rel}\n`);
      const names = (await readdir(abs)).sort();
      for (const name of names) await walk(join(abs, name), rel ? `${rel}/${name}` : name);
    } else {
      h.update(`o ${mode} ${rel}\n`);
    }
  };
  await walk(root, '');
  return { hash: h.digest('hex'), files, bytes };
}

function fileHash(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolvePromise(h.digest('hex')));
  });
}

/**
 * Copies a tree without following links, keeping modes and (when permitted) owners. The owner is
 * set before the mode: chown clears setuid/setgid bits, so the other order loses them.
 */
export async function copyTree(src: string, dst: string): Promise<void> {
  let entries = 0;
  const walk = async (s: string, d: string): Promise<void> => {
    if (++entries > MAX_TREE_ENTRIES)
      throw new GuardError('GUARD_QUARANTINE_IO', `${src} has more than ${MAX_TREE_ENTRIES} entries`);
    const st = await lstat(s);
    const own = (): Promise<void> => lchown(d, st.uid, st.gid).catch(() => undefined);
    if (st.isSymbolicLink()) {
      await symlink(await readlink(s), d);
      await own();
    } else if (st.isFile()) {
      await copyFile(s, d, fsc.COPYFILE_EXCL);
      await own();
      await chmod(d, st.mode & 0o7777);
    } else if (st.isDirectory()) {
      await mkdir(d, { mode: 0o700 });
      for (const name of await readdir(s)) await walk(join(s, name), join(d, name));
      // Modes last: a read-only directory must still receive its children first.
      await own();
      await chmod(d, st.mode & 0o7777);
    } else {
      throw new GuardError('GUARD_QUARANTINE_IO', `${s} is a special file; not copied`);
    }
  };
  await walk(src, dst);
}

// ---- control methods ---------------------------------------------------------------------

export interface QuarantineControlOptions {
  /**
   * True when the policy in force would still block this package / artifact (the daemon passes
   * `pipeline.wouldMatch`); asked with the observation rebuilt from the manifest.
   */
  readonly stillBanned: (obs: PackageObservation | PathObservation) => boolean;
  /**
   * When given, every successful restore is recorded as a `package.audited` / `path.audited` event
   * whose `outcome.details` is `{quarantine_id, restored: true, forced, links_removed}` (the links
   * put back) — events v1 has no `*.restored` type.
   */
  readonly events?: EventSink;
  /** Called after every successful restore. */
  readonly onRestored?: (result: RestoreResult) => void;
}

/** The observation a manifest describes (for asking the current policy about it). */
export function observationOf(m: QuarantineManifest): PackageObservation | PathObservation {
  const owner = { uid: m.owner.uid, user: m.owner.user, groups: [], home: null };
  if (m.kind === 'package' && m.package) {
    return {
      kind: 'package',
      ecosystem: 'npm',
      name: m.package.name,
      version: m.package.version,
      path: m.originalPath,
      root: m.root,
      manager: m.package.manager as PackageManager,
      owner,
    };
  }
  return { kind: 'path', path: m.originalPath, isDirectory: m.entryType === 'directory', owner };
}

/** Longest id accepted from a control request (a UUIDv7 is 36 characters). */
const MAX_ID_CHARS = 64;

/**
 * `quarantine.list` (public, read-only: what was removed and why is not secret to the machine's
 * users, and people need it to ask for a restore) and `quarantine.restore` (admin socket only).
 */
export function quarantineControlMethods(
  store: QuarantineStore,
  opts: QuarantineControlOptions,
): ControlMethods {
  return {
    'quarantine.list': {
      admin: false,
      summary: 'Entries in the quarantine (packages and artifacts moved away, and restored ones)',
      handle(params) {
        const all = params.all === true;
        return {
          entries: store
            .list()
            .filter((e) => all || e.state === 'quarantined')
            .map((e) => listItem(e)),
        };
      },
    },
    'quarantine.restore': {
      admin: true,
      summary: 'Put a quarantined package or artifact back (force needed when still banned)',
      async handle(params) {
        const started = performance.now();
        const id = params.id;
        if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_CHARS)
          throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'params.id must be a quarantine id string');
        if (params.force !== undefined && typeof params.force !== 'boolean')
          throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'params.force must be a boolean');
        const result = await store.restore(id, {
          force: params.force === true,
          stillBanned: (m) => opts.stillBanned(observationOf(m)),
        });
        opts.onRestored?.(result);
        const m = result.manifest;
        opts.events?.emit(m.kind === 'package' ? 'package.audited' : 'path.audited', {
          ...observationFields(observationOf(m)),
          rule: m.rule,
          reason: m.kind === 'package' ? 'npm_package' : 'path',
          policy_version: m.policyVersion,
          // Only `enforce` ever quarantines, so the entry was made under it.
          mode: 'enforce',
          outcome: {
            action_taken: 'audited',
            latency_ms: Math.round((performance.now() - started) * 100) / 100,
            error: result.hashVerified ? null : 'restored tree hash differs from the quarantined one',
            details: {
              quarantine_id: id,
              restored: true,
              forced: result.forced,
              links_removed: m.links.map((l) => l.path),
            },
          },
        });
        return {
          id,
          path: result.manifest.originalPath,
          hash_verified: result.hashVerified,
          links_restored: result.linksRestored,
          forced: result.forced,
        };
      },
    },
  };
}

/** What `quarantine.list` shows per entry (the JSON shape of `guardctl quarantine list --json`). */
export function listItem(e: QuarantineEntry): Record<string, unknown> {
  const m = e.manifest;
  return {
    id: e.id,
    state: e.state,
    quarantined_at: m.quarantinedAt,
    kind: m.kind,
    path: m.originalPath,
    package: m.package,
    owner: m.owner.user ?? m.owner.uid,
    rule: m.rule.id,
    policy_version: m.policyVersion,
    links: m.links.map((l) => l.path),
    files: m.files,
    bytes: m.bytes,
    tree_hash: m.treeHash,
    restored_at: m.restoredAt,
  };
}
