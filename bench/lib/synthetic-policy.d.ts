// Types of synthetic-policy.js (imported by TypeScript tests).
import type { PolicyBody, PolicyRule } from '../../src/policy/policy-types.js';

export function syntheticRule(i: number): PolicyRule;
export function syntheticRules(n: number): PolicyRule[];
export function syntheticPolicyBody(
  rules: PolicyRule[],
  opts?: { version?: number; now?: number },
): PolicyBody;
