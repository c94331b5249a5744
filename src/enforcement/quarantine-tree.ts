/**
 * Owns tree operations of the quarantine: hashing a tree, copying a tree out of a user's tree into
 * root's quarantine dir (read as the owner through owner-fs, written by root into its own dir),
 * and back (read by root from its own dir, written as the owner). Trees are walked with lstat and
 * never followed through a symlink; links are copied as links. Only regular files, directories and
 * symlinks are accepted; names come from readdir (no `/`, no `..`); entry count is capped.
 */
import { createHash } from 'node:crypto';
import {
  chmod,
  copyFile,
  constants as fsc,
  lchown,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  symlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import { GuardError } from '../common/errors.js';
import { type OwnerSession, type OwnerStat, READ_CHUNK_BYTES } from './owner-fs.js';

/** Trees with more entries than this are not quarantined (bounds time and memory of one move). */
export const MAX_TREE_ENTRIES = 200_000;

export interface TreeHash {
  readonly hash: string;
  readonly files: number;
  readonly bytes: number;
}

/** Read access to a tree: root's own (local) or a user's (an owner-fs session). */
interface TreeReader {
  lstat(path: string): Promise<OwnerStat>;
  readdir(path: string, max: number): Promise<string[]>;
  readlink(path: string): Promise<string>;
  readChunk(path: string, offset: number, length: number, id: { dev: number; ino: number }): Promise<Buffer>;
}

const localReader: TreeReader = {
  async lstat(path) {
    const st = await lstat(path);
    const type = st.isSymbolicLink()
      ? 'symlink'
      : st.isDirectory()
        ? 'directory'
        : st.isFile()
          ? 'file'
          : 'other';
    return {
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      dev: st.dev,
      ino: st.ino,
    };
  },
  async readdir(path, max) {
    return (await readdir(path)).slice(0, max);
  },
  readlink: (path) => readlink(path),
  async readChunk(path, offset, length, id) {
    const fh = await open(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.dev !== id.dev || st.ino !== id.ino)
        throw new GuardError('GUARD_QUARANTINE_IO', `${path} changed while being read`);
      const buf = Buffer.alloc(Math.max(0, Math.min(length, st.size - offset)));
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  },
};

/** What the walk hands to a visitor for each entry, in sorted order. */
type Visit = { rel: string; mode: number; uid: number; gid: number } & (
  | { kind: 'dir' }
  | { kind: 'link'; target: string }
  | { kind: 'file'; chunks: AsyncIterable<Buffer> }
  | { kind: 'dir-end' }
);

async function walk(reader: TreeReader, root: string, visit: (v: Visit) => Promise<void>): Promise<void> {
  let entries = 0;
  const go = async (abs: string, rel: string): Promise<void> => {
    if (++entries > MAX_TREE_ENTRIES)
      throw new GuardError('GUARD_QUARANTINE_IO', `${root} has more than ${MAX_TREE_ENTRIES} entries`);
    const st = await reader.lstat(abs);
    if (st.type === 'symlink') {
      const o = { rel, mode: st.mode, uid: st.uid, gid: st.gid };
      await visit({ ...o, kind: 'link', target: await reader.readlink(abs) });
    } else if (st.type === 'file') {
      const chunks = async function* (): AsyncIterable<Buffer> {
        for (let off = 0; ; ) {
          const c = await reader.readChunk(abs, off, READ_CHUNK_BYTES, st);
          if (c.length === 0) return;
          off += c.length;
          yield c;
          if (c.length < READ_CHUNK_BYTES) return;
        }
      };
      await visit({ rel, mode: st.mode, uid: st.uid, gid: st.gid, kind: 'file', chunks: chunks() });
    } else if (st.type === 'directory') {
      // Reading as root, every directory below must be root's alone: another user could swap
      // a subdir they own (or can write) for a symlink between our listing it and reading in it.
      if (
        (reader as Partial<OwnerSession>).actor?.uid === 0 &&
        (st.uid !== 0 || ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0))
      )
        throw new GuardError(
          'GUARD_QUARANTINE_UNSAFE_PATH',
          `${abs} is a directory another user can change inside a tree root would read; not quarantined as root`,
          { path: abs },
        );
      await visit({ rel, mode: st.mode, uid: st.uid, gid: st.gid, kind: 'dir' });
      const names = (await reader.readdir(abs, MAX_TREE_ENTRIES + 1)).sort();
      for (const name of names) {
        if (name === '' || name === '.' || name === '..' || name.includes('/'))
          throw new GuardError('GUARD_QUARANTINE_IO', `${abs} lists a bad entry name`);
        await go(join(abs, name), rel ? `${rel}/${name}` : name);
      }
      await visit({ rel, mode: st.mode, uid: st.uid, gid: st.gid, kind: 'dir-end' });
    } else {
      throw new GuardError('GUARD_QUARANTINE_IO', `${abs} is a special file; not quarantined`);
    }
  };
  await go(root, '');
}

/** Accumulates the tree hash in the format documented on `treeHash`. */
class Hasher {
  private readonly h = createHash('sha256');
  files = 0;
  bytes = 0;
  dir(mode: number, rel: string): void {
    this.h.update(`d ${mode.toString(8)} ${rel}\n`);
  }
  link(mode: number, rel: string, target: string): void {
    this.h.update(`l ${mode.toString(8)} ${rel} ${target}\n`);
  }
  file(mode: number, rel: string, contentHash: string, size: number): void {
    this.files++;
    this.bytes += size;
    this.h.update(`f ${mode.toString(8)} ${rel} ${contentHash}\n`);
  }
  done(): TreeHash {
    return { hash: this.h.digest('hex'), files: this.files, bytes: this.bytes };
  }
}

async function hashWith(reader: TreeReader, root: string): Promise<TreeHash> {
  const h = new Hasher();
  await walk(reader, root, async (v) => {
    if (v.kind === 'dir') h.dir(v.mode, v.rel);
    else if (v.kind === 'link') h.link(v.mode, v.rel, v.target);
    else if (v.kind === 'file') {
      const fh = createHash('sha256');
      let size = 0;
      for await (const c of v.chunks) {
        fh.update(c);
        size += c.length;
      }
      h.file(v.mode, v.rel, fh.digest('hex'), size);
    }
  });
  return h.done();
}

/**
 * Hex SHA-256 over a tree walked with lstat (never following links): for each entry in sorted
 * order its relative path, type, permission bits and content hash or link target. Equal hashes
 * mean byte-for-byte equal trees with equal modes. Reads as root: use it on root's own trees
 * (the quarantine dir) or through `hashAsOwner` on a user's.
 */
export function treeHash(root: string): Promise<TreeHash> {
  return hashWith(localReader, root);
}

/** `treeHash` of a tree in a user's tree, read as its owner. */
export function hashAsOwner(s: OwnerSession, root: string): Promise<TreeHash> {
  return hashWith(s, root);
}

/**
 * Copies the tree at `src` (read as the owner through `s`) to `dst` in root's quarantine dir and
 * returns the hash of what was copied (computed from the bytes written). Setuid/setgid bits are
 * recorded in the hash but not set on the root-owned copy (a root-owned setuid file must never
 * exist, even in a 0700 dir); restore puts them back as the owner would have them.
 */
export async function copyFromOwner(
  s: OwnerSession,
  src: string,
  dst: string,
): Promise<TreeHash & { modes: Record<string, number> }> {
  const h = new Hasher();
  const modes: Record<string, number> = {};
  await walk(s, src, async (v) => {
    const d = v.rel ? join(dst, v.rel) : dst;
    if ((v.mode & 0o6000) !== 0) modes[v.rel] = v.mode;
    // Owners are kept on root's copy (lchown never follows; the dir is root's own).
    const own = (): Promise<void> => lchown(d, v.uid, v.gid).catch(() => undefined);
    if (v.kind === 'dir') {
      h.dir(v.mode, v.rel);
      await mkdir(d, { mode: 0o700 });
    } else if (v.kind === 'dir-end') {
      await own();
      await chmod(d, v.mode & 0o1777);
    } else if (v.kind === 'link') {
      h.link(v.mode, v.rel, v.target);
      await symlink(v.target, d);
      await own();
    } else {
      const fh = createHash('sha256');
      let size = 0;
      const out = await open(d, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      try {
        for await (const c of v.chunks) {
          fh.update(c);
          size += c.length;
          await out.write(c);
        }
      } finally {
        await out.close();
      }
      await own();
      await chmod(d, v.mode & 0o1777);
      h.file(v.mode, v.rel, fh.digest('hex'), size);
    }
  });
  return { ...h.done(), modes };
}

/**
 * Recreates root's stored tree `src` at `dst` as the owner through `s` (never through a symlink:
 * every create is O_EXCL/O_NOFOLLOW in the child). `modes` restores the recorded permission bits
 * (including setuid/setgid the owner may set on their own files).
 */
export async function copyToOwner(
  s: OwnerSession,
  src: string,
  dst: string,
  modes: Readonly<Record<string, number>>,
): Promise<void> {
  // Only a root actor can give entries their recorded owners back; a user actor owns what it makes.
  const own = async (d: string, v: { uid: number; gid: number }): Promise<void> => {
    if (s.actor.uid === 0) await s.lchown(d, v.uid, v.gid).catch(() => undefined);
  };
  await walk(localReader, src, async (v) => {
    const d = v.rel ? join(dst, v.rel) : dst;
    const mode = modes[v.rel] ?? v.mode;
    if (v.kind === 'dir') await s.mkdir(d, 0o700);
    else if (v.kind === 'dir-end') {
      await own(d, v);
      await s.chmod(d, mode);
    } else if (v.kind === 'link') {
      await s.symlink(v.target, d);
      await own(d, v);
    } else {
      let first = true;
      for await (const c of v.chunks) {
        await s.writeFile(d, c, !first, 0o600);
        first = false;
      }
      if (first) await s.writeFile(d, Buffer.alloc(0), false, 0o600);
      await own(d, v);
      await s.chmod(d, mode);
    }
  });
}

/**
 * Copies a tree without following links, keeping modes and (when permitted) owners — root copying
 * its own trees (recovery tools and tests); never used on a user's tree. The owner is set before
 * the mode: chown clears setuid/setgid bits, so the other order loses them.
 */
export async function copyTree(src: string, dst: string): Promise<void> {
  let entries = 0;
  const go = async (sp: string, dp: string): Promise<void> => {
    if (++entries > MAX_TREE_ENTRIES)
      throw new GuardError('GUARD_QUARANTINE_IO', `${src} has more than ${MAX_TREE_ENTRIES} entries`);
    const st = await lstat(sp);
    const own = (): Promise<void> => lchown(dp, st.uid, st.gid).catch(() => undefined);
    if (st.isSymbolicLink()) {
      await symlink(await readlink(sp), dp);
      await own();
    } else if (st.isFile()) {
      await copyFile(sp, dp, fsc.COPYFILE_EXCL);
      await own();
      await chmod(dp, st.mode & 0o7777);
    } else if (st.isDirectory()) {
      await mkdir(dp, { mode: 0o700 });
      for (const name of await readdir(sp)) await go(join(sp, name), join(dp, name));
      await own();
      await chmod(dp, st.mode & 0o7777);
    } else {
      throw new GuardError('GUARD_QUARANTINE_IO', `${sp} is a special file; not copied`);
    }
  };
  await go(src, dst);
}
