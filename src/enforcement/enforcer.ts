/**
 * Owns turning a decision into an outcome: applies the policy's global mode and the rule's action,
 * rate-limits warnings per user and rule, runs the action, and records exactly one event per
 * handled observation (appended to the outbox before anything is sent).
 *
 * block → processes: the block-process action (stop, verify identity, tell, kill the tree);
 *         packages and path artifacts: the quarantine action.
 * warn  → the notify action (rate-limited), the thing keeps running / stays installed.
 * audit → event only. In `monitor` mode block acts as warn and the event says `would_block`.
 * Which of these applies is the pure verdict of decide.ts (shared with the pre-exec listener); a
 * pre-exec deny, already answered to the kernel, is recorded through `denied()`.
 * A package the installer removed itself (`removed`: a killed install script made npm roll back)
 * is `install_reverted`: under block + enforce its leftover bin links are removed (quarantine
 * action); otherwise it is only recorded, nobody is told about a package that is not there.
 *
 * Before any of that, the enforcement scope (enforcement-scope.ts) is asked whether guardd may act
 * on the observation at all; outside it, a match is recorded only (block → `would_block`, warn →
 * `warn_suppressed`, nobody is told) and `outcome.details.scope` says why. A real deployment's
 * scope is everything; local mode narrows it.
 */
import type { Logger } from '../common/logger.js';
import { redactArgv } from '../common/redact.js';
import type { EventSink, EventType } from '../events/event-types.js';
import type { Decision } from '../policy/matcher.js';
import type {
  Observation,
  PackageObservation,
  PathObservation,
  ProcessObservation,
} from '../sensors/observation.js';
import type { Action, ActionResult, ActionTaken } from './action.js';
import { verdictFor } from './decide.js';
import { DenialFold } from './denial-fold.js';
import { type EnforcementScope, FULL_SCOPE } from './enforcement-scope.js';

export interface EnforcerActions {
  /** Stops and kills a matched process and its descendants, after telling the user. */
  readonly blockProcess: Action<ProcessObservation>;
  /** Tells the user (terminal, desktop) about a process rule without stopping it. */
  readonly notifyProcess: Action<ProcessObservation>;
  /** Moves a package or artifact into quarantine and tells the owner. */
  readonly quarantine: Action<PackageObservation | PathObservation>;
  /** Tells the owner about an installed package or artifact without moving it. */
  readonly notifyInstall: Action<PackageObservation | PathObservation>;
  /**
   * Tells the user why the kernel refused an exec (pre-exec deny); the refusal itself is done.
   * Optional: without it a refusal is recorded and nobody is told.
   */
  readonly denyExec?: Action<ProcessObservation>;
}

/** Identity of a file whose exec or open was refused (event field `outcome.details.file`). */
export interface DeniedFile {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
}

export interface EnforcerOptions {
  readonly actions: EnforcerActions;
  readonly events: EventSink;
  readonly logger: Logger;
  /** A warning for the same user and rule is shown at most once per this many ms (0 = always). */
  readonly warnIntervalMs: number;
  /** What guardd may act on; default everything (a real deployment). Local mode narrows it. */
  readonly scope?: EnforcementScope;
  /**
   * Told of every process about to be blocked (verdict `block`), as its action starts: the
   * pre-exec listener marks the banned script file it identified (open-marks.ts). Must not throw.
   */
  readonly onProcessBlock?: (obs: ProcessObservation, decision: Decision) => void;
  readonly now?: () => number;
  /** Window and burst of the refusal fold (denial-fold.ts); tests shorten them. */
  readonly denialFold?: { readonly windowMs?: number; readonly burst?: number };
}

export interface EnforcerCounts {
  /** Processes killed (a block whose process had already exited or was protected counts as failed). */
  blocked: number;
  quarantined: number;
  /** Execs refused before the program ran (pre-exec deny), every attempt counted. */
  denied: number;
  warned: number;
  audited: number;
  failed: number;
}

/** Warn rate-limit entries older than this many intervals are forgotten, bounding memory. */
const WARN_MEMORY_INTERVALS = 2;
/** …and the table never holds more than this many (user, rule) pairs. */
const WARN_MEMORY_MAX = 10_000;

export class Enforcer {
  private readonly counts: EnforcerCounts = {
    blocked: 0,
    quarantined: 0,
    denied: 0,
    warned: 0,
    audited: 0,
    failed: 0,
  };
  private readonly lastWarned = new Map<string, number>();
  private readonly now: () => number;
  private readonly scope: EnforcementScope;

  /** Repeated refusals (same user, rule, file, exec or open) folded into counted events. */
  private readonly denials: DenialFold<{ obs: ProcessObservation; decision: Decision; result: ActionResult }>;

  constructor(private readonly options: EnforcerOptions) {
    this.now = options.now ?? Date.now;
    this.scope = options.scope ?? FULL_SCOPE;
    this.denials = new DenialFold({
      now: this.now,
      onError: (err) => this.options.logger.error({ err }, 'recording folded refusals failed'),
      ...(options.denialFold ?? {}),
      emit: ({ obs, decision, result }, repeats) =>
        this.options.events.emit('process.denied', {
          ...observationFields(obs),
          ...decisionFields(
            decision,
            repeats > 1 ? { ...result, details: { ...(result.details ?? {}), repeats } } : result,
          ),
        }),
    });
  }

  /**
   * Handles one matched observation. Resolves (never rejects) once the action finished and its
   * event is in the outbox. Concurrent calls for different observations are fine.
   */
  async handle(obs: Observation, decision: Decision): Promise<ActionResult> {
    const started = performance.now();
    let result: ActionResult;
    let verb: 'blocked' | 'quarantined' | 'warned' | 'audited';
    try {
      const verdict = verdictFor(obs, decision, this.scope);
      if (obs.kind === 'package' && obs.removed && (verdict.act === 'warn' || verdict.act === 'audit')) {
        // Nothing is installed any more: nobody to warn about it, nothing to leave alone.
        verb = verdict.act === 'audit' ? 'audited' : 'warned';
        result = this.result('install_reverted', started, null, { links_removed: 0 });
      } else {
        switch (verdict.act) {
          case 'record':
            verb = 'warned';
            result = this.result(verdict.taken, started, null, { scope: verdict.scope });
            break;
          case 'block':
            verb = obs.kind === 'process' ? 'blocked' : 'quarantined';
            if (obs.kind === 'process') {
              // Told once the action is under way (the listener marks on a later turn of the loop).
              const killing = this.options.actions.blockProcess.execute(obs, decision);
              this.options.onProcessBlock?.(obs, decision);
              result = await killing;
            } else {
              result = await this.options.actions.quarantine.execute(obs, decision);
            }
            break;
          case 'warn': {
            verb = 'warned';
            const { wouldBlock } = verdict;
            if (this.warnAllowed(obs, decision)) {
              const r =
                obs.kind === 'process'
                  ? await this.options.actions.notifyProcess.execute(obs, decision)
                  : await this.options.actions.notifyInstall.execute(obs, decision);
              result = wouldBlock && r.error === null ? { ...r, actionTaken: 'would_block' } : r;
            } else {
              result = this.result(wouldBlock ? 'would_block' : 'warn_suppressed', started, null, {
                notified: false,
              });
            }
            break;
          }
          case 'audit':
            verb = 'audited';
            result = this.result('audited', started, null);
            break;
        }
      }
    } catch (err) {
      // Actions must not throw; if one does, the event still records the attempt.
      verb =
        decision.rule.action === 'audit'
          ? 'audited'
          : decision.rule.action === 'warn'
            ? 'warned'
            : obs.kind === 'process'
              ? 'blocked'
              : 'quarantined';
      result = this.result('failed', started, (err as Error).message);
      this.options.logger.error({ err, rule: decision.rule.id }, 'action threw');
    }
    result = {
      ...result,
      latencyMs: result.latencyMs || Math.round((performance.now() - started) * 100) / 100,
    };
    this.count(verb, result.actionTaken);
    const type = `${obs.kind}.${verb}` as EventType;
    this.options.events.emit(type, { ...observationFields(obs), ...decisionFields(decision, result) });
    return result;
  }

  /**
   * Records one exec — or one open of a banned package's marked file (`facts.opened`: its path) —
   * the kernel already refused (pre-exec deny, verdict `block`): tells the user
   * on the exec'ing process's terminal and desktop — at most once per `warnIntervalMs` for the same
   * user, rule and file, since a loop of refused execs must not flood the terminal — and records
   * the attempt as one `process.denied` event, whether or not the user was told; past a burst of
   * identical refusals, the rest of the window are folded into one event with
   * `outcome.details.repeats` (denial-fold.ts).
   * `latencyMs` is from the kernel's question to its answer. Resolves, never rejects.
   */
  async denied(
    obs: ProcessObservation,
    decision: Decision,
    facts: {
      readonly latencyMs: number;
      readonly cached: boolean;
      readonly fileKey: string;
      readonly file: DeniedFile;
      /** Set for a refused open: the path of the marked file the process tried to open. */
      readonly opened?: string;
    },
  ): Promise<ActionResult> {
    let result: ActionResult;
    try {
      const tell = this.options.actions.denyExec;
      if (tell && this.warnAllowed(obs, decision, facts.fileKey)) {
        const r = await tell.execute(obs, decision);
        result = { ...r, latencyMs: facts.latencyMs };
      } else {
        result = {
          actionTaken: 'denied',
          latencyMs: facts.latencyMs,
          error: null,
          details: { notified: false },
        };
      }
    } catch (err) {
      this.options.logger.error({ err, rule: decision.rule.id }, 'deny notification threw');
      result = {
        actionTaken: 'denied',
        latencyMs: facts.latencyMs,
        error: null,
        details: { notified: false },
      };
    }
    result = {
      ...result,
      details: {
        ...(result.details ?? {}),
        refused: facts.opened === undefined ? 'exec' : 'open',
        verdict_cached: facts.cached,
        file: facts.opened === undefined ? facts.file : { ...facts.file, path: facts.opened },
      },
    };
    this.counts.denied++;
    const kind = facts.opened === undefined ? 'exec' : 'open';
    try {
      this.denials.add(`${obs.owner.uid}\u0000${decision.rule.id}\u0000${facts.fileKey}\u0000${kind}`, {
        obs,
        decision,
        result,
      });
    } catch (err) {
      // the outbox refused the event (guardd stopping: the DB is closed); the kernel's refusal stands
      this.options.logger.error({ err, rule: decision.rule.id }, 'recording a refusal failed');
    }
    return result;
  }

  /** Records the refusals still folded (guardd stopping): see denial-fold.ts. */
  flushDenials(): void {
    this.denials.flush();
  }

  /** Counters since start, for `guardctl status`. */
  status(): Readonly<EnforcerCounts> {
    return { ...this.counts };
  }

  private warnAllowed(obs: Observation, decision: Decision, extra = ''): boolean {
    const interval = this.options.warnIntervalMs;
    if (interval <= 0) return true;
    const now = this.now();
    const key = `${obs.owner.uid}\u0000${decision.rule.id}\u0000${obs.kind}\u0000${extra}`;
    const last = this.lastWarned.get(key);
    // A clock stepped back (NTP, a VM resumed) must not silence warnings until it catches up.
    if (last !== undefined && now >= last && now - last < interval) return false;
    this.lastWarned.delete(key);
    this.lastWarned.set(key, now);
    if (this.lastWarned.size > WARN_MEMORY_MAX) {
      for (const [k, t] of this.lastWarned) {
        if (this.lastWarned.size <= WARN_MEMORY_MAX && now - t < interval * WARN_MEMORY_INTERVALS) break;
        this.lastWarned.delete(k);
      }
    }
    return true;
  }

  private result(
    actionTaken: ActionTaken,
    started: number,
    error: string | null,
    details?: Record<string, unknown>,
  ): ActionResult {
    return {
      actionTaken,
      latencyMs: Math.round((performance.now() - started) * 100) / 100,
      error,
      ...(details ? { details } : {}),
    };
  }

  /**
   * `blocked` / `quarantined` count only what was really stopped or moved (an install its package
   * manager reverted counts as quarantined: the package is off the disk); the rest of those
   * attempts are `failed`.
   */
  private count(verb: string, taken: ActionTaken): void {
    if (verb === 'blocked' || verb === 'quarantined') {
      if (taken === 'killed') this.counts.blocked++;
      else if (taken === 'quarantined' || taken === 'install_reverted') this.counts.quarantined++;
      else this.counts.failed++;
      return;
    }
    if (taken === 'failed') this.counts.failed++;
    else if (verb === 'warned') this.counts.warned++;
    else this.counts.audited++;
  }
}

/** The event fields describing what was observed (argv redacted here, before storage). */
export function observationFields(obs: Observation): Record<string, unknown> {
  const owner = { uid: obs.owner.uid, user: obs.owner.user };
  switch (obs.kind) {
    case 'process':
      return {
        ...owner,
        pid: obs.pid,
        ppid: obs.ppid,
        name: obs.name,
        exe: obs.exe,
        argv: redactArgv(obs.argv),
        start_time: obs.startTime,
        tty: obs.tty,
        ...(obs.sha256 ? { sha256: obs.sha256 } : {}),
        ...(obs.scriptPackage
          ? {
              script_package: {
                name: obs.scriptPackage.name,
                version: obs.scriptPackage.version,
                path: obs.scriptPackage.root,
              },
            }
          : {}),
      };
    case 'package':
      return {
        ...owner,
        package: {
          ecosystem: obs.ecosystem,
          name: obs.name,
          version: obs.version,
          path: obs.path,
          root: obs.root,
          manager: obs.manager,
        },
      };
    case 'path':
      return { ...owner, path: obs.path, is_directory: obs.isDirectory };
  }
}

function decisionFields(decision: Decision, result: ActionResult): Record<string, unknown> {
  // Only the schema's fields (src/events/event.schema.json): the rule object at run time may be
  // the whole policy rule, and everything in an event is sent, so pick what is documented.
  const details = result.details ? { ...result.details } : undefined;
  if (details && typeof details.notified === 'boolean')
    details.notified = { terminal: details.notified, desktop: details.notified };
  return {
    rule: { id: decision.rule.id, name: decision.rule.name, action: decision.rule.action },
    reason: decision.reason,
    policy_version: decision.policyVersion,
    mode: decision.mode,
    outcome: {
      action_taken: result.actionTaken,
      latency_ms: Math.max(0, result.latencyMs),
      error: result.error,
      ...(details ? { details } : {}),
    },
  };
}
