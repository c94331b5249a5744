/**
 * Owns the action contract. An action carries out one decision on one observation and reports
 * what it did; it never throws for an expected failure (the process already exited, a permission
 * was denied): that is an `ActionResult` with `error` set, counted by the enforcer.
 * Implementations live in src/enforcement/actions/<name>.ts.
 */
import type { Decision } from '../policy/matcher.js';
import type { Observation } from '../sensors/observation.js';

/** What was actually done; part of the event schema (`outcome.action_taken`). */
export type ActionTaken =
  | 'killed'
  /** Pre-exec deny: the kernel refused the exec; the program never ran. */
  | 'denied'
  | 'would_block'
  | 'warned'
  | 'warn_suppressed'
  | 'audited'
  | 'quarantined'
  /** The installer removed the banned package itself before it was quarantined; leftover links were cleaned. */
  | 'install_reverted'
  | 'excepted'
  | 'skipped'
  | 'failed';

export interface ActionResult {
  readonly actionTaken: ActionTaken;
  /** Milliseconds from the observation reaching the enforcer to the action completing. */
  readonly latencyMs: number;
  /** Why it failed or was skipped, as a stable short code or message; null on success. */
  readonly error: string | null;
  /** Action-specific facts that go into the event (e.g. killed descendants, quarantine id). */
  readonly details?: Readonly<Record<string, unknown>>;
}

export interface Action<O extends Observation = Observation> {
  /**
   * Carries out `decision` on `obs`. Called at most once per (observation, decision); may run
   * concurrently with other calls for other observations. Resolves, never rejects.
   */
  execute(obs: O, decision: Decision): Promise<ActionResult>;
}
