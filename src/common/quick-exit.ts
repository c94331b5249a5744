/**
 * Owns ending a process whose work is done without waiting for file system calls that never
 * return: `exitNow(code)` is `_exit` through native/quickexit (its header says why: libuv joins
 * its pool threads at exit, and a thread stuck in a user's FUSE mount or a hung NFS server held
 * `process.exit()` for ever). Where the addon is missing (Windows, whose payload has none; a failed
 * build) it is `process.exit`. Callers have already stopped and closed everything they own, and
 * logs are written synchronously (logger.ts), so nothing is lost by skipping the exit-time work.
 */
import { createRequire } from 'node:module';
import { nativeAddonPath } from './native-addon.js';

interface QuickExitAddon {
  exitNow(code: number): never;
}

let addon: QuickExitAddon | null | undefined;

/** Ends the process with `code` now (see the module header). */
export function exitNow(code: number): never {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(nativeAddonPath('quickexit')) as QuickExitAddon;
    } catch {
      addon = null;
    }
  }
  addon?.exitNow(code);
  process.exit(code);
}

/**
 * Once `main` has answered `code`: the process ends by itself when nothing is left to do; this
 * ends it after `graceMs` when something still holds it (an fs call stuck in a user's FUSE mount
 * keeps the event loop alive, and then exit) — but never while standard output or error still has
 * bytes to write (a slow reader of a pipe: they are written first). The timers are unref'd: they
 * never hold the process.
 */
export function exitAfterGrace(code: number, graceMs: number): void {
  const end = (): void => {
    if (process.stdout.writableLength > 0 || process.stderr.writableLength > 0)
      setTimeout(end, OUTPUT_DRAIN_POLL_MS).unref();
    else exitNow(code);
  };
  setTimeout(end, graceMs).unref();
}

/** How often exitAfterGrace looks again whether the output was written (ms). */
const OUTPUT_DRAIN_POLL_MS = 200;
