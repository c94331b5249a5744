/**
 * Owns the decision step between matching and acting: `decide(observation, context)` says what
 * guardd will do about an observation — the matched rule (exceptions already applied by the
 * matcher), the policy's global mode and the enforcement scope folded into one `Verdict`. Pure: no
 * I/O, no clock (the time is in the context). Every consumer acts on the same verdict:
 *
 *   - the post-exec path (pipeline → enforcer): `block` kills, `warn` tells, `record` records;
 *   - the quarantine of packages and path artifacts (same enforcer);
 *   - the pre-exec listener (exec-deny.ts): only `block` answers the kernel FAN_DENY; every other
 *     verdict allows the exec.
 *
 * `Verdict.act`:
 *   block  — the rule blocks, the policy enforces, the observation is in scope;
 *   warn   — a warn rule, or a block rule in monitor mode (`wouldBlock`): tell the user, let it run;
 *   record — out of the enforcement scope: record only (`taken` = would_block / warn_suppressed);
 *   audit  — an audit rule: record only.
 */
import type { Decision, MatchContext, Matcher } from '../policy/matcher.js';
import type { Observation } from '../sensors/observation.js';
import type { EnforcementScope, OutOfScope } from './enforcement-scope.js';

export type Verdict =
  | { readonly act: 'block'; readonly decision: Decision }
  | { readonly act: 'warn'; readonly decision: Decision; readonly wouldBlock: boolean }
  | {
      readonly act: 'record';
      readonly decision: Decision;
      readonly taken: 'would_block' | 'warn_suppressed';
      readonly scope: OutOfScope;
    }
  | { readonly act: 'audit'; readonly decision: Decision };

export interface DecideContext {
  readonly matcher: Matcher;
  readonly match: MatchContext;
  readonly scope: EnforcementScope;
}

/** The verdict for `obs`, or null when no (non-excepted) rule matches. Pure. */
export function decide(obs: Observation, ctx: DecideContext): Verdict | null {
  const decision = ctx.matcher.match(obs, ctx.match);
  return decision ? verdictFor(obs, decision, ctx.scope) : null;
}

/** The verdict for a decision already taken by the matcher (mode and scope applied). Pure. */
export function verdictFor(obs: Observation, decision: Decision, scope: EnforcementScope): Verdict {
  const action = decision.rule.action;
  const outOfScope = action === 'audit' ? null : scope.exclude(obs);
  if (outOfScope) {
    return {
      act: 'record',
      decision,
      taken: action === 'block' ? 'would_block' : 'warn_suppressed',
      scope: outOfScope,
    };
  }
  if (action === 'block' && decision.mode === 'enforce') return { act: 'block', decision };
  if (action === 'block' || action === 'warn')
    return { act: 'warn', decision, wouldBlock: action === 'block' };
  return { act: 'audit', decision };
}
