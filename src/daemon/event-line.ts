/**
 * Owns the one-line, human-readable rendering of an event, used by the local mode's console and
 * by `guardctl events` for people. Fields are read defensively: an event is data, not a promise.
 */
import type { AgentEvent } from '../events/event-types.js';

export function describeEvent(e: AgentEvent): string {
  const time = typeof e.time === 'string' ? e.time.slice(11, 23) : '';
  const rule = e.rule as { id?: string; name?: string } | undefined;
  const outcome = e.outcome as
    | { action_taken?: string; error?: string | null; latency_ms?: number; details?: { scope?: unknown } }
    | undefined;
  const ruleText = rule ? ` rule=${rule.id}` : '';
  const scope = outcome?.details?.scope;
  const outcomeText = outcome
    ? ` → ${outcome.action_taken}${outcome.error ? ` (${outcome.error})` : ''}${typeof scope === 'string' ? ` (not acted on: ${scope})` : ''}`
    : '';
  let what = '';
  if (e.type.startsWith('process.')) {
    what = ` pid=${e.pid} user=${e.user ?? e.uid} ${e.exe ?? e.name}`;
  } else if (e.type.startsWith('package.')) {
    const pkg = e.package as { name?: string; version?: string; path?: string } | undefined;
    what = ` ${pkg?.name}@${pkg?.version ?? '?'} at ${pkg?.path}`;
  } else if (e.type.startsWith('path.')) {
    what = ` ${e.path}`;
  } else if (e.type.startsWith('policy.')) {
    what = ` v${e.policy_version ?? '?'}${e.reason ? ` reason=${e.reason}` : ''}${e.message ? `: ${e.message}` : ''}`;
  } else if (e.type === 'events.dropped') {
    what = ` count=${e.count}`;
  } else if (e.type === 'agent.tamper') {
    what = ` ${e.reason}: ${e.detail}`;
  }
  return `${time} #${e.seq} ${e.type}${what}${ruleText}${outcomeText}`;
}
