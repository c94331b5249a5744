/**
 * Owns `guardctl policy lint`: everything the verifier refuses (schema, semantics, argv patterns RE2
 * cannot run, unsafe rules — judged against this machine's critical programs, see rule-safety.ts),
 * plus warn/audit rules that would fire on critical programs, plus authoring mistakes a device would accept but an admin wants to hear about: exceptions that
 * name no rule, rules that can never decide anything (no criteria, or shadowed by an earlier or
 * stronger rule), criteria shared by several rules, expiry in the past. `sign` refuses a body with
 * any `error` finding; warnings are advice.
 */
import type { ErrorCode } from '../common/errors.js';
import { markerKey, parseMarker } from './content-markers.js';
import { type PolicyIssue, policyIssues, semanticIssues } from './policy-schema.js';
import type { PolicyBody, PolicyRule, RuleAction } from './policy-types.js';
import { ruleSafetyIssues, type SafetyOptions } from './rule-safety.js';

export type LintKind =
  | 'schema'
  | 'regex'
  | 'regex-unsupported'
  | 'glob'
  | 'semver'
  | 'dates'
  | 'duplicate-id'
  | 'unknown-rule'
  | 'unsafe'
  | 'unreachable'
  | 'overlap'
  | 'expired'
  | 'markers';

export interface LintFinding {
  readonly severity: 'error' | 'warning';
  readonly kind: LintKind;
  /** Stable code: the GUARD_POLICY_* code a device would refuse it with, or GUARD_POLICY_LINT for advice. */
  readonly code: ErrorCode | 'GUARD_POLICY_LINT';
  readonly path: string;
  readonly message: string;
}

export interface LintOptions {
  /** ms since the epoch; when set, an expires_at at or before it is an error. */
  readonly now?: number;
  /** Passed to the safety check (protected dirs, whether to probe this machine). */
  readonly safety?: SafetyOptions;
}

const RANK: Record<RuleAction, number> = { block: 3, warn: 2, audit: 1 };

/** Lints a parsed body (anything: the schema is checked first). */
export function lintPolicy(body: unknown, options: LintOptions = {}): LintFinding[] {
  const base = policyIssues(body);
  if (base.length > 0) {
    // Schema problems first: the rest of the checks need a well-formed body. The semantic checks
    // (regexes, globs, semver, markers) still run best-effort on what is there, so one schema error
    // does not hide a catastrophic regex elsewhere in the same file.
    const seen = new Set(base.map((i) => `${i.path}\0${i.message}`));
    const extra = bestEffortSemanticIssues(body).filter((i) => !seen.has(`${i.path}\0${i.message}`));
    return [...base, ...extra].map((i) => ({ severity: 'error', ...classify(i) }));
  }
  const b = body as PolicyBody;
  const findings: LintFinding[] = [];
  for (const i of ruleSafetyIssues(b, options.safety)) {
    findings.push({
      severity: i.severity,
      kind: 'unsafe',
      // A warning is advice (guardd applies the policy); an error is what guardd refuses it with.
      code: i.severity === 'error' ? 'GUARD_POLICY_UNSAFE_RULE' : 'GUARD_POLICY_LINT',
      path: i.path,
      message: i.message,
    });
  }
  const ids = new Set(b.rules.map((r) => r.id));
  (b.exceptions ?? []).forEach((e, i) => {
    if (!ids.has(e.rule)) {
      findings.push({
        severity: 'error',
        kind: 'unknown-rule',
        code: 'GUARD_POLICY_SCHEMA',
        path: `$.exceptions[${i}].rule`,
        message: `names rule "${e.rule}", which this policy does not have`,
      });
    }
    if (options.now !== undefined && Date.parse(e.expires_at) <= options.now) {
      findings.push({
        severity: 'warning',
        kind: 'expired',
        code: 'GUARD_POLICY_LINT',
        path: `$.exceptions[${i}].expires_at`,
        message: `already expired (${e.expires_at}); it has no effect`,
      });
    }
  });
  findings.push(...reachability(b));
  if (options.now !== undefined && Date.parse(b.expires_at) <= options.now) {
    findings.push({
      severity: 'error',
      kind: 'expired',
      code: 'GUARD_POLICY_EXPIRED',
      path: '$.expires_at',
      message: `is in the past (${b.expires_at}); devices would refuse this policy`,
    });
  }
  return findings;
}

/** The semantic issues of a schema-invalid body, as far as its shape lets them run (none when it throws). */
function bestEffortSemanticIssues(body: unknown): PolicyIssue[] {
  const b = body as { rules?: unknown } | null;
  if (!b || typeof b !== 'object' || !Array.isArray(b.rules)) return [];
  try {
    return semanticIssues(body as PolicyBody);
  } catch {
    return [];
  }
}

function classify(i: PolicyIssue): Omit<LintFinding, 'severity'> {
  if (i.code === 'GUARD_POLICY_REGEX_UNSUPPORTED') {
    return { kind: 'regex-unsupported', code: i.code, path: i.path, message: i.message };
  }
  const kind: LintKind = i.message.startsWith('duplicate rule id')
    ? 'duplicate-id'
    : i.message.includes('regular expression')
      ? 'regex'
      : i.message.includes('not a valid glob')
        ? 'glob'
        : i.path.includes('.process.markers') || i.message.includes('content markers')
          ? 'markers'
          : i.message.includes('semver range')
            ? 'semver'
            : i.message.includes('later than issued_at')
              ? 'dates'
              : 'schema';
  return { kind, code: 'GUARD_POLICY_SCHEMA', path: i.path, message: i.message };
}

/** Every criterion value of a rule, as comparable strings, grouped by criterion. */
function criteria(rule: PolicyRule): Map<string, Set<string>> {
  const p = rule.process ?? {};
  return new Map<string, Set<string>>([
    ['process.names', new Set(p.names ?? [])],
    ['process.exe_globs', new Set(p.exe_globs ?? [])],
    ['process.argv_patterns', new Set(p.argv_patterns ?? [])],
    ['process.script_packages', new Set(p.script_packages ?? [])],
    ['process.sha256', new Set((p.sha256 ?? []).map((h) => h.toLowerCase()))],
    // A set is one criterion value: its markers, canonical and sorted.
    ['process.markers', new Set((p.markers ?? []).map((set) => markerSetKey(set)))],
    ['process.team_ids', new Set(p.team_ids ?? [])],
    ['process.signing_ids', new Set(p.signing_ids ?? [])],
    ['packages', new Set((rule.packages ?? []).map((k) => `${k.name}@${k.range}`))],
    ['paths', new Set(rule.paths ?? [])],
  ]);
}

function platformsOf(rule: PolicyRule): Set<string> {
  return new Set(rule.platforms ?? ['linux', 'darwin', 'win32']);
}

/**
 * Unreachable: no criteria at all; or every criterion value also belongs to a rule without
 * exceptions that wins over this one (stronger action, or same action and earlier) on all of this
 * rule's platforms — the matcher would always pick that rule. Overlap: values shared with another rule.
 */
function reachability(b: PolicyBody): LintFinding[] {
  const findings: LintFinding[] = [];
  const excepted = new Set((b.exceptions ?? []).map((e) => e.rule));
  const all = b.rules.map((r) => ({ rule: r, crit: criteria(r), platforms: platformsOf(r) }));
  const reportedOverlap = new Set<string>();
  all.forEach((l, j) => {
    const at = `$.rules[${j}]`;
    const values = [...l.crit.entries()].flatMap(([k, set]) => [...set].map((v) => [k, v] as const));
    if (values.length === 0) {
      findings.push({
        severity: 'error',
        kind: 'unreachable',
        code: 'GUARD_POLICY_LINT',
        path: at,
        message: `rule "${l.rule.id}" has no criteria (process, packages or paths): it can never match`,
      });
      return;
    }
    const shadow = all.find(
      (r, i) =>
        i !== j &&
        !excepted.has(r.rule.id) &&
        (RANK[r.rule.action] > RANK[l.rule.action] ||
          (RANK[r.rule.action] === RANK[l.rule.action] && i < j)) &&
        [...l.platforms].every((p) => r.platforms.has(p)) &&
        values.every(
          ([k, v]) =>
            r.crit.get(k)?.has(v) ||
            (k === 'packages' && r.crit.get(k)?.has(`${v.split('@').slice(0, -1).join('@')}@*`)),
        ),
    );
    if (shadow) {
      findings.push({
        severity: 'warning',
        kind: 'unreachable',
        code: 'GUARD_POLICY_LINT',
        path: at,
        message: `rule "${l.rule.id}" is unreachable: everything it matches is matched by rule "${shadow.rule.id}" (${shadow.rule.action}), which wins`,
      });
      return;
    }
    all.forEach((r, i) => {
      if (i <= j) return;
      const shared = values
        .filter(([k, v]) => r.crit.get(k)?.has(v))
        .map(([k, v]) => `${k} ${JSON.stringify(v)}`);
      const pair = `${j}:${i}`;
      if (shared.length === 0 || reportedOverlap.has(pair)) return;
      reportedOverlap.add(pair);
      findings.push({
        severity: 'warning',
        kind: 'overlap',
        code: 'GUARD_POLICY_LINT',
        path: at,
        message: `rules "${l.rule.id}" and "${r.rule.id}" overlap on ${shared.join(', ')}; the stronger action (then the earlier rule) decides`,
      });
    });
  });
  return findings;
}

/** Text for people: one line per finding, then a summary. */
export function formatFindings(findings: readonly LintFinding[]): string {
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.length - errors;
  const lines = findings.map(
    (f) => `${f.severity === 'error' ? 'error  ' : 'warning'} ${f.path} ${f.message} [${f.kind}]`,
  );
  lines.push(
    errors === 0 && warnings === 0
      ? 'OK: no problems found'
      : `${errors} error(s), ${warnings} warning(s)${errors ? ' — FAIL' : ''}`,
  );
  return lines.join('\n');
}

/** A marker set as one comparable string (canonical keys, sorted; unparsable markers as written). */
function markerSetKey(set: readonly string[]): string {
  return set
    .map((src) => {
      const b = parseMarker(src);
      return typeof b === 'string' ? src : markerKey(b);
    })
    .sort()
    .join('&');
}
