/**
 * Owns the one path every observation takes: sensor → matcher → enforcer (→ event in the outbox).
 * Holds the matcher in force; a new policy swaps it in one assignment, so an observation is always
 * matched against exactly one whole policy, never a half-applied one.
 *
 * One report per process identity and decision: a running process matched again with the same
 * rule, action and mode (the sensors report every process again after a policy change and at
 * start) is counted as a repeat instead of handed to the enforcer — except an enforced block, which is
 * acted on (and reported) every time: a process still alive after a block must be stopped again.
 *
 * An action turned away because the user's tree did not answer in time (GUARD_QUARANTINE_BUSY)
 * is handed back to the sensors (`Sensor.turnedAway`), which report the thing again later.
 *
 * With a shadow policy in force, every observation is also handed to the ShadowEvaluator
 * (shadow-evaluator.ts) with the enforced decision, after the enforced matching and before the
 * action; the shadow never changes what is done.
 */
import type { Logger } from '../common/logger.js';
import type { Enforcer } from '../enforcement/enforcer.js';
import type { MatchContext, Matcher } from '../policy/matcher.js';
import type { Observation } from '../sensors/observation.js';
import type { Sensor } from '../sensors/sensor.js';
import { type ShadowEvaluator, sensorView } from './shadow-evaluator.js';

export interface PipelineOptions {
  readonly enforcer: Enforcer;
  readonly logger: Logger;
  readonly hostname: string;
  readonly deviceTags: readonly string[];
  /** What was reported per process identity (state DB); absent = every match is handed over. */
  readonly reports?: { isRepeat(pid: number, startTime: number, decision: string): boolean };
  /** The shadow policy's evaluator (absent = no shadow channel). */
  readonly shadow?: ShadowEvaluator;
  readonly now?: () => number;
}

export class Pipeline {
  private matcher: Matcher | null = null;
  private readonly sensors: Sensor[] = [];
  private readonly now: () => number;
  private observed = 0;
  private matched = 0;
  private repeats = 0;
  private inFlight = new Set<Promise<unknown>>();
  /** Counts down (negative) for each change of the sensors' widened view (shadow-evaluator.ts sensorView). */
  private viewGeneration = 0;

  constructor(private readonly options: PipelineOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Registers a sensor so it hears about matcher changes. Call before `setMatcher`. */
  addSensor(sensor: Sensor): void {
    this.sensors.push(sensor);
    const view = this.sensorMatcher();
    if (view) sensor.setMatcher(view);
  }

  /** Puts `matcher` in force for every observation from now on, and tells the sensors. */
  setMatcher(matcher: Matcher): void {
    this.matcher = matcher;
    this.tellSensors();
  }

  /** Puts the shadow matcher in force (null = none), and tells the sensors what to observe for it. */
  setShadowMatcher(matcher: Matcher | null): void {
    this.options.shadow?.setMatcher(matcher);
    this.tellSensors();
  }

  private tellSensors(): void {
    const view = this.sensorMatcher();
    if (view) for (const s of this.sensors) s.setMatcher(view);
  }

  /** What the sensors observe for: the enforced matcher, widened by the shadow's when one is in force. */
  private sensorMatcher(): Matcher | null {
    const shadow = this.options.shadow?.matcherInForce() ?? null;
    if (!this.matcher || !shadow) return this.matcher;
    return sensorView(this.matcher, shadow, --this.viewGeneration);
  }

  /**
   * The sensors' `onObservation`. Matching is synchronous; the action runs asynchronously so a
   * slow kill or move never delays the next observation. Never throws.
   */
  readonly handle = (obs: Observation): void => {
    this.observed++;
    const matcher = this.matcher;
    if (!matcher) return;
    let decision: ReturnType<Matcher['match']>;
    try {
      decision = matcher.match(obs, this.context());
    } catch (err) {
      this.options.logger.error({ err, kind: obs.kind }, 'matcher failed on an observation');
      return;
    }
    if (this.options.shadow) {
      try {
        // version 0 is the empty matcher of "no policy yet" (real versions start at 1)
        const version = matcher.policyVersion > 0 ? matcher.policyVersion : null;
        this.options.shadow.evaluate(obs, this.context(), decision, version);
      } catch (err) {
        this.options.logger.error({ err, kind: obs.kind }, 'shadow evaluation failed on an observation');
      }
    }
    if (!decision) return;
    this.matched++;
    if (
      obs.kind === 'process' &&
      !(decision.rule.action === 'block' && decision.mode === 'enforce') &&
      // an unknown start time (0: ps-list on Windows) is no identity: a reused pid is another process
      obs.startTime > 0 &&
      this.options.reports?.isRepeat(
        obs.pid,
        obs.startTime,
        `${decision.rule.id}|${decision.rule.action}|${decision.mode}`,
      )
    ) {
      this.repeats++;
      return;
    }
    const p = this.options.enforcer
      .handle(obs, decision)
      .then((result) => {
        // Nothing was done because the user's tree did not answer in time: the sensor reports it
        // again on a later look (not only once the thing changes or a new policy comes).
        if (result.error?.startsWith('GUARD_QUARANTINE_BUSY'))
          for (const s of this.sensors) s.turnedAway?.(obs);
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  };

  /** True when the matcher in force would block `obs` (quarantine restore asks before putting it back). */
  wouldMatch(obs: Observation): boolean {
    return this.matcher?.match(obs, this.context())?.rule.action === 'block';
  }

  /** The matcher in force, or null before the first policy (the pre-exec listener decides with it). */
  matcherInForce(): Matcher | null {
    return this.matcher;
  }

  /** The facts of this machine and moment every decision is taken with. */
  matchContext(): MatchContext {
    return this.context();
  }

  /** Resolves when every action started so far has finished (for a clean stop). */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** observed/matched since start; repeats = matches not reported again (same process, same decision). */
  counts(): { observed: number; matched: number; repeats: number } {
    return { observed: this.observed, matched: this.matched, repeats: this.repeats };
  }

  private context(): MatchContext {
    return { now: this.now(), hostname: this.options.hostname, deviceTags: this.options.deviceTags };
  }
}
