/**
 * Owns the bin links and shims removed with a quarantined package: finding them (only entries
 * proven to belong to the package: a symlink whose target leads into it, a small file whose text
 * names it), removing them and putting them back on restore. Every look at or change in a link
 * directory goes through owner-fs, i.e. runs as the user who controls that directory, so a bin or
 * shim dir swapped for a symlink into root's or another user's files reaches nothing the user
 * could not already remove. Finding who that is (owner-fs `actorFor`) is root's only own look at a
 * directory, gated with a deadline: a bin dir on a stalled mount is a refusal
 * (GUARD_QUARANTINE_BUSY), not a hang. Refusals are returned (and logged by the store), never
 * thrown.
 */
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { errorMessage, isGuardError } from '../common/errors.js';
import { assertNotProtected, type OwnerSession, type OwnerSessions } from './owner-fs.js';

/** A bin link or shim removed with the package, recorded so restore can put it back exactly. */
export type LinkRecord =
  | {
      readonly path: string;
      readonly type: 'symlink';
      readonly target: string;
      readonly uid: number;
      readonly gid: number;
      /** Real path of the directory it was found in (seen by its owner). */
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
      /** Real path of the directory it was found in (seen by its owner). */
      readonly dirReal?: string;
    };

/** A link directory or link that was not touched, and why (reported in the manifest and log). */
export interface LinkRefusal {
  readonly path: string;
  readonly reason: string;
}

/** Files in bin dirs larger than this are not read as shims (real shims are < 2 KiB). */
export const MAX_SHIM_BYTES = 64 * 1024;
/** At most this many entries of one bin dir are examined (a hostile bin dir can be huge). */
const MAX_LINK_DIR_ENTRIES = 20_000;

export interface LinkSearch {
  readonly linkDirs: readonly string[];
  readonly shimDirs: readonly string[];
  readonly binNames: readonly string[];
  readonly aliasDirs: readonly string[];
  /** guardd's own dirs (state, quarantine): a link dir resolving there is refused. */
  readonly ownDirs: readonly string[];
}

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

function reason(err: unknown): string {
  if (isGuardError(err)) return `${err.code}: ${err.message}`;
  const code = (err as NodeJS.ErrnoException).code;
  return code ? `${code}: ${errorMessage(err)}` : errorMessage(err);
}

/**
 * Links and shims pointing into `target`: symlinks in `linkDirs` and `aliasDirs` whose target
 * (lexically or fully resolved) is inside it, small files in `linkDirs` whose text names it or an
 * alias (npm/pnpm/cmd shims), and entries of `shimDirs` named after one of `binNames` that are
 * symlinks or small files naming the bin. Never throws; dirs that cannot be read as their owner or
 * resolve into protected dirs are skipped and returned as refusals.
 */
export async function findLinks(
  sessions: OwnerSessions,
  target: string,
  search: LinkSearch,
): Promise<{ links: LinkRecord[]; refused: LinkRefusal[] }> {
  const out: LinkRecord[] = [];
  const refused: LinkRefusal[] = [];
  const seen = new Set<string>();
  // Paths that stand for the package: itself, its real path, and every symlink found pointing
  // into it (pnpm's node_modules/<name> link — shims name that path, not the .pnpm one).
  const targets = [target];
  try {
    const s = await sessions.forPath(target);
    const st = await s.lstat(target);
    if (st.type !== 'symlink') {
      const real = await s.realpath(target);
      if (real !== target) targets.push(real);
    }
  } catch {
    // gone or refused: lexical matching only
  }
  const names = new Set(search.binNames);
  const consider = async (dir: string, byName: boolean, linksOnly = false): Promise<boolean> => {
    let entries: string[];
    let dirReal: string;
    let s: OwnerSession;
    try {
      s = await sessions.forDir(dir);
      dirReal = await s.realpath(dir);
      assertNotProtected(dirReal, search.ownDirs, dir, true);
      entries = await s.readdir(dir, MAX_LINK_DIR_ENTRIES);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') refused.push({ path: dir, reason: reason(err) });
      return false;
    }
    let found = false;
    for (const name of entries) {
      const path = join(dir, name);
      if (targets.includes(path) || seen.has(path)) continue;
      const rec = await linkRecord(s, path, targets, dir, dirReal, byName ? names : null).catch(() => null);
      if (rec && (!linksOnly || rec.type === 'symlink')) {
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
    for (const dir of search.aliasDirs) if (await consider(dir, false, true)) found = true;
    for (const dir of search.linkDirs) if (await consider(dir, false)) found = true;
    if (!found) break;
  }
  for (const dir of search.shimDirs) await consider(dir, true);
  return { links: out, refused };
}

async function linkRecord(
  s: OwnerSession,
  path: string,
  targets: readonly string[],
  dir: string,
  dirReal: string,
  byName: ReadonlySet<string> | null,
): Promise<LinkRecord | null> {
  const st = await s.lstat(path);
  const base = basename(path).replace(/\.(cmd|ps1|exe|bat)$/i, '');
  const within = (p: string): boolean => targets.some((t) => inside(p, t));
  if (st.type === 'symlink') {
    const raw = await s.readlink(path);
    let hit = byName ? byName.has(base) : within(resolve(dir, raw));
    if (!hit && !byName) {
      const real = await s.realpath(path).catch(() => null);
      hit = real !== null && within(real);
    }
    return hit ? { path, type: 'symlink', target: raw, uid: st.uid, gid: st.gid, dirReal } : null;
  }
  if (st.type !== 'file' || st.size > MAX_SHIM_BYTES) return null;
  if (byName && !byName.has(base)) return null;
  const content = await s.readChunk(path, 0, MAX_SHIM_BYTES, { dev: st.dev, ino: st.ino });
  const text = content.toString('utf8');
  // Proof that the file belongs to the package: it names the package (path or relative path) or,
  // for version-manager shims found by name, it invokes that very bin name.
  const names = targets.some((t) => {
    const relPosix = relative(dir, t).split(sep).join('/');
    const relWin = relPosix.split('/').join('\\');
    return text.includes(t) || (relPosix.length > 0 && (text.includes(relPosix) || text.includes(relWin)));
  });
  const invokes =
    byName !== null &&
    (text.includes(`"${base}"`) || text.includes(`'${base}'`) || text.includes(` ${base} `));
  if (!names && !invokes) return null;
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
 * Removes a recorded link if it is still the recorded thing, as the owner of its directory, and
 * only while that directory still resolves (for that owner) to where the link was found.
 * Resolves `true` when removed, else the reason it was not.
 */
export async function removeLink(
  sessions: OwnerSessions,
  link: LinkRecord,
  ownDirs: readonly string[],
): Promise<true | string> {
  try {
    const s = await sessions.forPath(link.path);
    const real = await s.realpath(dirname(link.path));
    if (real !== (link.dirReal ?? dirname(link.path))) return 'its directory now resolves elsewhere';
    assertNotProtected(real, ownDirs, link.path, true);
    const ok = await s.unlinkIf(
      link.path,
      link.type === 'symlink'
        ? { symlinkTarget: link.target }
        : { contentB64: link.content, maxBytes: MAX_SHIM_BYTES },
    );
    return ok ? true : 'changed since it was found';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'gone';
    return reason(err);
  }
}

/**
 * Recreates a removed link or shim as the owner of its directory, if its path is free and its
 * directory resolves to where it was. True when recreated.
 */
export async function restoreLink(
  sessions: OwnerSessions,
  link: LinkRecord,
  ownDirs: readonly string[],
): Promise<boolean> {
  try {
    const s = await sessions.forPath(link.path);
    if (await s.exists(link.path)) return false;
    await s.mkdirp(dirname(link.path), 0o755);
    const real = await s.realpath(dirname(link.path));
    if (real !== (link.dirReal ?? dirname(link.path))) return false;
    assertNotProtected(real, ownDirs, link.path, true);
    if (link.type === 'symlink') await s.symlink(link.target, link.path);
    else {
      await s.writeFile(link.path, Buffer.from(link.content, 'base64'), false, link.mode & 0o777);
      await s.chmod(link.path, link.mode & 0o777);
    }
    return true;
  } catch {
    return false;
  }
}
