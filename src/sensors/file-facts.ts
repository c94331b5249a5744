/**
 * Owns the caches of what is known about one version of an executable, keyed by its identity
 * (`identityKey`: device, inode, size, mtime, ctime): its SHA-256 (exe-hash.ts) and the content
 * markers found in it (content-markers.ts). One pair serves both readers of executables — the
 * pre-exec listener, which reads every new file before it first runs, and the process sensor,
 * which reads it after exec — so a file read by one is not read again by the other, and the
 * sensor can answer an exec from the cache alone when it knows the identity (the exec-events
 * source reads it right after the exec: ProcessSource.exeIdentity). Each reader keeps its own
 * admission gate; only what the bytes said is shared.
 */

export interface FileFactCaches {
  /** identityKey → lower-case hex SHA-256. */
  readonly hashes: Map<string, string>;
  /** `${identityKey}|${marker automaton generation}` → canonical keys of the markers found. */
  readonly markers: Map<string, readonly string[]>;
}

export function newFileFactCaches(): FileFactCaches {
  return { hashes: new Map(), markers: new Map() };
}
