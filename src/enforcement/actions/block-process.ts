/**
 * Owns blocking a matched process: stop it at once, make sure it is still the process that was
 * matched, stop every descendant (so none can fork away), tell the user on its terminal and
 * desktop with a short bounded wait, then SIGKILL the whole stopped tree.
 *
 * Safety: only the identity that was matched (pid + start time) is ever signalled. The identity is
 * checked before SIGSTOP (cheap) and again after it; if the pid changed hands in between, the stop
 * is undone with SIGCONT and nothing else is sent. guardd itself, PID 1 and guardd's ancestors
 * (and whatever `protectedPids` names) are never signalled, neither as the target nor as a
 * descendant. Where the OS cannot suspend a process (Windows), the tree is collected and killed
 * top-down right after the identity check, without the stop, and the user is told afterwards.
 *
 * When the source saw the exec happen (Linux exec events: `obs.execNs`, the kernel's timestamp),
 * the result says how long after the exec the SIGKILL went out (`details.since_exec_ms`, on the
 * kernel's clock): guardd's own latency, without the process's fork before it or its teardown after.
 */
import type { Logger } from '../../common/logger.js';
import type { Decision } from '../../policy/matcher.js';
import type { ProcessObservation } from '../../sensors/observation.js';
import { type ProcessControl, processControlFor } from '../../sensors/process-sources/process-control.js';
import type { Action, ActionResult } from '../action.js';
import { type NotifyResult, notifyWithin, type UserNotifier } from '../notifier.js';

export interface BlockProcessActionOptions {
  readonly notifier: UserNotifier;
  readonly logger: Logger;
  /** guardd's pid. Default process.pid. */
  readonly selfPid?: number;
  /** More pids never to signal (e.g. the embedded collector in local mode). */
  readonly protectedPids?: () => Set<number>;
  /** OS primitives; tests pass a procfs control on a fake root. Default: this OS's. */
  readonly control?: ProcessControl;
  /** Longest wait for the notification before the kill (ms). */
  readonly notifyWaitMs?: number;
  /** CLOCK_MONOTONIC now in ns, the clock of `obs.execNs` and of re-reading guardd's ancestors (tests). Default process.hrtime. */
  readonly monotonicNs?: () => number;
}

/** The kill must not wait on people: 50 ms is enough for a terminal write; desktop runs on. */
export const NOTIFY_WAIT_MS = 50;
/**
 * guardd's ancestors are read once and then at most this often: they change only when one exits
 * and guardd is reparented (under systemd: never, its parent is PID 1). Reading them was one
 * /proc/<pid>/stat per ancestor before every kill, on the way to the SIGSTOP (up to 4 ms when the
 * machine was busy). In between, a dead ancestor's pid stays protected (a process that got it is
 * not killed until the next read), and a new ancestor is PID 1 or a subreaper above guardd, which
 * were ancestors already.
 */
export const ANCESTORS_REREAD_MS = 1000;
/** A tree larger than this is cut (and logged): bounds the walk on a fork bomb. */
export const MAX_DESCENDANTS = 4096;

export class BlockProcessAction implements Action<ProcessObservation> {
  private readonly control: ProcessControl;
  private readonly selfPid: number;
  private readonly notifyWaitMs: number;
  private readonly monotonicNs: () => number;
  private ancestors: { readonly at: number; readonly pids: readonly number[] } | null = null;

  constructor(private readonly options: BlockProcessActionOptions) {
    this.control = options.control ?? processControlFor();
    this.selfPid = options.selfPid ?? process.pid;
    this.notifyWaitMs = options.notifyWaitMs ?? NOTIFY_WAIT_MS;
    this.monotonicNs = options.monotonicNs ?? (() => Number(process.hrtime.bigint()));
  }

  async execute(obs: ProcessObservation, decision: Decision): Promise<ActionResult> {
    const started = performance.now();
    const result = (
      actionTaken: ActionResult['actionTaken'],
      error: string | null,
      details?: Record<string, unknown>,
    ): ActionResult => ({
      actionTaken,
      latencyMs: Math.round((performance.now() - started) * 100) / 100,
      error,
      ...(details ? { details } : {}),
    });
    const { pid } = obs;
    const c = this.control;
    try {
      const protectedSet = await this.protectedSet();
      if (!Number.isInteger(pid) || pid <= 1 || protectedSet.has(pid)) {
        return result('skipped', 'protected_process', { killed: [] });
      }
      // Cheap identity check before the first signal: never stop a pid that changed hands.
      if (!(await c.sameProcess(pid, obs.startTime, obs.name))) {
        const gone = !(await c.exists(pid));
        return result('skipped', gone ? 'exited' : 'identity_changed', { killed: [] });
      }
      let stopped: number[];
      let notified: NotifyResult | null = null;
      if (c.canStop) {
        const stop = c.signal(pid, 'SIGSTOP');
        if (stop !== 'ok') {
          return result(stop === 'gone' ? 'skipped' : 'failed', `stop_${stop}`, { killed: [] });
        }
        // Re-verify now that it cannot run: the pid could have been reused between check and stop.
        if (!(await c.sameProcess(pid, obs.startTime, obs.name))) {
          c.signal(pid, 'SIGCONT');
          return result('skipped', 'identity_changed', { killed: [] });
        }
        stopped = await this.stopDescendants(pid, protectedSet);
        // Stopped, the tree can wait for the message: the user reads it before the tool vanishes.
        notified = await this.notify(obs, decision);
      } else {
        // Windows cannot suspend by signal: collect the tree and kill it top-down at once. Waiting
        // for the notification first would let the tool run on, and leave longer for a collected
        // pid to exit and be handed to an unrelated process (Windows reuses pids quickly).
        stopped = await this.collectTree(pid, protectedSet);
      }
      const killed: number[] = [];
      let denied = 0;
      let killedAtNs: number | null = null;
      for (const p of stopped) {
        const k = c.signal(p, 'SIGKILL');
        if (k === 'ok') killed.push(p);
        else if (k === 'denied') denied++;
        if (p === pid && k === 'ok') killedAtNs = this.monotonicNs();
      }
      notified ??= await this.notify(obs, decision);
      const details = {
        killed,
        notified: { terminal: notified.terminal, desktop: notified.desktop },
        ...sinceExec(obs.execNs, killedAtNs),
      };
      if (!killed.includes(pid)) return result('failed', 'kill_failed', details);
      return result('killed', denied > 0 ? 'kill_failed_descendants' : null, details);
    } catch (err) {
      this.options.logger.error({ pid, err: (err as Error).message }, 'block failed');
      return result('failed', (err as Error).message, { killed: [] });
    }
  }

  /** guardd, PID 1, guardd's ancestors (read at most every ANCESTORS_REREAD_MS), the caller's extra pids. */
  private async protectedSet(): Promise<Set<number>> {
    const now = this.monotonicNs();
    if (this.ancestors === null || !(now - this.ancestors.at < ANCESTORS_REREAD_MS * 1e6))
      this.ancestors = { at: now, pids: await this.control.ancestors(this.selfPid) };
    const set = new Set<number>([1, this.selfPid, ...this.ancestors.pids]);
    if (this.options.protectedPids) for (const p of this.options.protectedPids()) set.add(p);
    return set;
  }

  /** Stops the tree below `root` breadth-first; returns root + every stopped descendant. */
  private async stopDescendants(root: number, protectedSet: Set<number>): Promise<number[]> {
    const stopped = [root];
    const seen = new Set<number>(stopped);
    // Each parent is already stopped when its children are read, so the tree cannot grow behind us.
    for (let i = 0; i < stopped.length && stopped.length < MAX_DESCENDANTS; i++) {
      for (const child of await this.control.children(stopped[i] as number)) {
        if (seen.has(child) || protectedSet.has(child)) continue;
        seen.add(child);
        if (this.control.signal(child, 'SIGSTOP') === 'ok') stopped.push(child);
      }
    }
    if (stopped.length >= MAX_DESCENDANTS) {
      this.options.logger.warn({ pid: root, descendants: stopped.length }, 'process tree cut at the maximum');
    }
    return stopped;
  }

  /** root + descendants without stopping them (platforms without SIGSTOP). */
  private async collectTree(root: number, protectedSet: Set<number>): Promise<number[]> {
    const tree = [root];
    const seen = new Set<number>(tree);
    for (let i = 0; i < tree.length && tree.length < MAX_DESCENDANTS; i++) {
      for (const child of await this.control.children(tree[i] as number)) {
        if (seen.has(child) || protectedSet.has(child)) continue;
        seen.add(child);
        tree.push(child);
      }
    }
    return tree;
  }

  private notify(obs: ProcessObservation, decision: Decision): Promise<NotifyResult> {
    return notifyWithin(
      this.options.notifier,
      { uid: obs.owner.uid, user: obs.owner.user, tty: obs.tty },
      { title: `blocked ${decision.rule.name}`, body: decision.message, url: decision.url },
      this.notifyWaitMs,
    );
  }
}

/** `since_exec_ms` (0.01 ms steps) when both instants are known and in order; else nothing. */
function sinceExec(execNs: number | undefined, killedAtNs: number | null): { since_exec_ms?: number } {
  if (execNs === undefined || killedAtNs === null || !(killedAtNs >= execNs)) return {};
  return { since_exec_ms: Math.round((killedAtNs - execNs) / 1e4) / 100 };
}
