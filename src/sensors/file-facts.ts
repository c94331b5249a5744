/**
 * Owns the caches of what is known about one version of an executable, keyed by its identity
 * (`identityKey`: device, inode, size, mtime, ctime, and the unique id of the mount it was read
 * through — file-id.ts; nothing is cached for a mount whose blocks a user can write, mount-trust.ts):
 * its SHA-256 (exe-hash.ts) and the content
 * markers found in it (content-markers.ts). One pair serves both readers of executables — the
 * pre-exec listener, which reads every new file before it first runs, and the process sensor,
 * which reads it after exec — so a file read by one is not read again by the other, and the
 * sensor can answer an exec from the cache alone when it knows the identity (the exec-events
 * source reads it right after the exec: ProcessSource.exeIdentity). Each reader keeps its own
 * admission gate; only what the bytes said is shared.
 *
 * An identity names one version of the bytes only once it has settled (`settled`): timestamps are
 * as coarse as their file system keeps them (whole seconds on ext4 with 128-byte inodes, 2 s on
 * msdos FAT, a jiffy on ext4/xfs before Linux 6.13), so a file's owner can overwrite it in place
 * within one tick and keep size, mtime and ctime — and mtime they may set back anyway. Only ctime
 * is out of their hands: what was read of a file whose ctime was IDENTITY_SETTLE_MS old when the
 * read began belongs to that identity for good (a later change gets a later ctime); facts of a
 * younger file are used for the read at hand and not remembered. native/execperm keeps the same
 * rule for its verdict cache's allows.
 */

/** How old a file's ctime must be when it is read for what was read to be cached (ms). */
export const IDENTITY_SETTLE_MS = 3000;

/** Whether what is read from now on (`readStartMs`, the wall clock) of a file of this ctime may be cached. */
export function settled(identity: { readonly ctimeMs: number }, readStartMs: number): boolean {
  return readStartMs - identity.ctimeMs >= IDENTITY_SETTLE_MS;
}

export interface FileFactCaches {
  /** identityKey → lower-case hex SHA-256. */
  readonly hashes: Map<string, string>;
  /** `${identityKey}|${marker automaton generation}` → canonical keys of the markers found. */
  readonly markers: Map<string, readonly string[]>;
}

export function newFileFactCaches(): FileFactCaches {
  return { hashes: new Map(), markers: new Map() };
}
