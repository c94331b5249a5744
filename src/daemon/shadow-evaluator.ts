/**
 * Owns the shadow policy's side of the pipeline (docs/policy.md "Shadow policies"): every
 * observation the pipeline takes is also decided against the shadow matcher through the same
 * `decide()` as the enforced policy (enforcement/decide.ts: exceptions, mode and enforcement scope
 * applied alike) — and never acted on. A match becomes one `policy.shadow_match` event: the shadow
 * rule and the verdict it would take, what the enforced policy decided for the same observation,
 * and the subject described exactly as the enforced event would (`observationFields`).
 *
 * Bounded, so a shadow rule that matches every process cannot flood the outbox:
 *   - once per (subject identity, rule, shadow version): a process is pid + start time (as the
 *     enforced reports), a package or path its path; the identities remembered are capped
 *     (oldest forgotten first) and forgotten when the shadow changes;
 *   - a token bucket over all shadow events: `burst` at once, then `perHour` an hour. What the
 *     bucket refuses is counted (`suppressed`, in `guardctl status`) and not remembered, so the
 *     subject is reported when the budget allows, if it is observed again.
 *
 * The sensors fill costly observation fields only for rules that need them; `sensorView()` gives
 * them the enforced matcher widened by the shadow's needs, package names and path globs, so a
 * shadow rule sees what it would see once enforced (content markers: the shadow's automaton is
 * used only when the enforced policy has none — documented limitation).
 */
import { decide, type Verdict, verdictFor } from '../enforcement/decide.js';
import type { EnforcementScope } from '../enforcement/enforcement-scope.js';
import { observationFields } from '../enforcement/enforcer.js';
import type { EventSink } from '../events/event-types.js';
import { type MarkerAutomaton, markerAutomaton } from '../policy/content-markers.js';
import type { Decision, MatchContext, Matcher, PathScanBase } from '../policy/matcher.js';
import type { Observation } from '../sensors/observation.js';

/** Defaults of the flood bound. */
export const SHADOW_DEFAULTS = {
  /** Shadow events at once. */
  burst: 100,
  /** Shadow events an hour after the burst. */
  perHour: 360,
  /** (subject, rule) pairs remembered per shadow version. */
  remember: 10_000,
} as const;

export interface ShadowEvaluatorOptions {
  readonly events: EventSink;
  /** The enforcement scope the enforcer uses (local mode narrows it). */
  readonly scope: EnforcementScope;
  readonly burst?: number;
  readonly perHour?: number;
  readonly remember?: number;
  readonly now?: () => number;
}

/** The shadow counters of `guardctl status`. */
export interface ShadowCounts {
  /** Observations the shadow policy matched. */
  readonly matches: number;
  /** policy.shadow_match events emitted. */
  readonly reported: number;
  /** Matches of a subject and rule already reported for this shadow version. */
  readonly repeats: number;
  /** Matches the rate bound dropped. */
  readonly suppressed: number;
}

export class ShadowEvaluator {
  private matcher: Matcher | null = null;
  private readonly seen = new Set<string>();
  private readonly now: () => number;
  private readonly burst: number;
  private readonly perMs: number;
  private readonly remember: number;
  private tokens: number;
  private refilledAt: number;
  private matches = 0;
  private reported = 0;
  private repeats = 0;
  private suppressed = 0;

  constructor(private readonly options: ShadowEvaluatorOptions) {
    this.now = options.now ?? Date.now;
    this.burst = options.burst ?? SHADOW_DEFAULTS.burst;
    this.perMs = (options.perHour ?? SHADOW_DEFAULTS.perHour) / 3_600_000;
    this.remember = options.remember ?? SHADOW_DEFAULTS.remember;
    this.tokens = this.burst;
    this.refilledAt = this.now();
  }

  /** Puts the shadow matcher in force (null = no shadow). A new version forgets what was reported. */
  setMatcher(matcher: Matcher | null): void {
    if (matcher?.policyVersion !== this.matcher?.policyVersion) this.seen.clear();
    this.matcher = matcher;
  }

  /** The shadow matcher in force, or null. */
  matcherInForce(): Matcher | null {
    return this.matcher;
  }

  /**
   * Decides `obs` against the shadow and reports a match (bounded, see the header); `enforced` is
   * the enforced matcher's decision for the same observation (null: none matched) and
   * `enforcedVersion` its policy version (null: no policy). Never acts; never throws.
   */
  evaluate(
    obs: Observation,
    ctx: MatchContext,
    enforced: Decision | null,
    enforcedVersion: number | null,
  ): void {
    const matcher = this.matcher;
    if (!matcher) return;
    const verdict = decide(obs, { matcher, match: ctx, scope: this.options.scope });
    if (!verdict) return;
    this.matches++;
    const { decision } = verdict;
    const key = `${identityOf(obs)}\u0000${decision.rule.id}`;
    if (this.seen.has(key)) {
      this.repeats++;
      return;
    }
    if (!this.take()) {
      this.suppressed++;
      return;
    }
    this.seen.add(key);
    if (this.seen.size > this.remember) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    const enforcedVerdict: Verdict | null = enforced ? verdictFor(obs, enforced, this.options.scope) : null;
    this.options.events.emit('policy.shadow_match', {
      ...observationFields(obs),
      subject_kind: obs.kind,
      shadow_version: decision.policyVersion,
      rule: { id: decision.rule.id, name: decision.rule.name, action: decision.rule.action },
      reason: decision.reason,
      mode: decision.mode,
      would: verdict.act,
      enforced: {
        act: enforcedVerdict?.act ?? 'none',
        rule_id: enforced?.rule.id ?? null,
        policy_version: enforcedVersion,
      },
    });
    this.reported++;
  }

  counts(): ShadowCounts {
    return {
      matches: this.matches,
      reported: this.reported,
      repeats: this.repeats,
      suppressed: this.suppressed,
    };
  }

  /** Takes one token of the bucket; false when it is empty. */
  private take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + Math.max(0, t - this.refilledAt) * this.perMs);
    this.refilledAt = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Both lists of scan bases as one: each base once, at the deeper of its depths. */
function mergeScanBases(a: readonly PathScanBase[], b: readonly PathScanBase[]): PathScanBase[] {
  const depth = new Map<string, number>();
  for (const s of [...a, ...b]) depth.set(s.base, Math.max(depth.get(s.base) ?? 0, s.depth));
  return [...depth].map(([base, d]) => ({ base, depth: d }));
}

/** The subject's identity for "once per subject": what the enforced reports key a subject on. */
function identityOf(obs: Observation): string {
  switch (obs.kind) {
    case 'process':
      // an unknown start time (0) is no identity: the executable narrows a reused pid
      return obs.startTime > 0 ? `p:${obs.pid}:${obs.startTime}` : `p:${obs.pid}:${obs.exe ?? obs.name}`;
    case 'package':
      return `k:${obs.path}:${obs.version ?? ''}`;
    case 'path':
      return `f:${obs.path}`;
  }
}

/**
 * The matcher the sensors get while a shadow is in force: the enforced one, widened by what the
 * shadow's rules need observed (costly fields, content markers, package names, path globs). Its `policyVersion` is
 * `generation` (negative, never a real version) so a sensor sees every change of either policy as a
 * new policy and reports what is present again; decisions never come from it.
 */
export function sensorView(enforced: Matcher, shadow: Matcher, generation: number): Matcher {
  // Both policies' markers in one automaton (built on first use, then kept: asked for every exec).
  let automaton: MarkerAutomaton | null | undefined;
  const markers = (): MarkerAutomaton | null => {
    if (automaton === undefined) {
      const [a, b] = [enforced.markers(), shadow.markers()];
      automaton =
        a === null || b === null
          ? (a ?? b)
          : markerAutomaton([...new Set([...a.keys, ...b.keys])].map((k) => Buffer.from(k, 'hex')));
    }
    return automaton;
  };
  return {
    policyVersion: generation,
    mode: enforced.mode,
    needs: {
      sha256: enforced.needs.sha256 || shadow.needs.sha256,
      scriptPackage: enforced.needs.scriptPackage || shadow.needs.scriptPackage,
      markers: enforced.needs.markers || shadow.needs.markers,
    },
    markers,
    packageNames: new Set([...enforced.packageNames, ...shadow.packageNames]),
    // both policies' bases (each at the deeper of their depths), and paths either one matches
    pathScanBases: mergeScanBases(enforced.pathScanBases, shadow.pathScanBases),
    pathMatches: (path) => enforced.pathMatches(path) || shadow.pathMatches(path),
    ruleCount: enforced.ruleCount,
    exceptedRules: enforced.exceptedRules,
    match: (obs, ctx) => enforced.match(obs, ctx),
    matchAll: (obs) => enforced.matchAll(obs),
  };
}
