/**
 * The pre-exec listener the kernel-cached-allow tests play guardd with: the real execperm addon in
 * the test process, answering every exec permission request at once — allowed and cacheable
 * unless its path is in `refused` (a path or name rule) — and recording each request it was asked
 * to decide. Asynchronous callers only: a test that blocked its event loop would hold every exec
 * on the marked file systems until the deadline. Not a test file (no `.test.ts`): shared by
 * execperm-kernel-cache.test.ts and execperm-kernel-cache-attacks.test.ts.
 */
import { chmodSync, copyFileSync, mkdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import {
  type ExecPermAddon,
  type ExecPermEvent,
  loadExecPermAddon,
  MOUNT_SKIP_RULES,
} from '../../src/enforcement/exec-deny.js';

const TRUE = realpathSync('/bin/true');

export interface DecidingListener {
  readonly addon: ExecPermAddon;
  /** Paths refused; everything else is allowed, cacheable. */
  readonly refused: Set<string>;
  /** Requests for `path` decided or answered as denied from the cache so far. */
  asked(path: string): number;
}

/**
 * Starts the addon (deadline `deadlineMs`) answering as above; the caller marks and stops it. 2 s:
 * a request this worker has not answered by then is allowed, and a refused program that ran for
 * it would fail its test on a busy machine (seen once at 300 ms with parallel suites).
 */
export function startDecidingListener(deadlineMs = 2000): DecidingListener {
  const addon = loadExecPermAddon();
  const refused = new Set<string>();
  const decided: ExecPermEvent[] = [];
  addon.start({ deadlineMs, skipFstypes: MOUNT_SKIP_RULES }, (ev) => {
    if (ev.kind !== 'decide' && ev.kind !== 'denied_cached') return;
    decided.push(ev);
    if (ev.kind === 'decide') addon.respond(ev.id, !refused.has(ev.path), true);
  });
  return {
    addon,
    refused,
    asked: (path) => decided.filter((e) => 'path' in e && e.path === path).length,
  };
}

/** A copy of `true` at `path`, root's, `mode` (0755), its missing directories made 0755. */
export function rootProgram(path: string, mode = 0o755): string {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o755 });
  copyFileSync(TRUE, path);
  chmodSync(path, mode);
  return path;
}
