/**
 * Owns validating a policy body: the JSON Schema in policy/policy.schema.json (ajv + ajv-formats)
 * and the semantic checks a schema cannot express (argv patterns compile with the matcher's RE2
 * engine within its size limit, globs have balanced brackets, semver ranges parse, expires_at after issued_at, rule ids unique,
 * content markers parse, are long enough, fit the policy's marker budget, a block/warn rule
 * does not rest on a marker set every Bun-built program carries, nor on an Apple platform signing id).
 * Every problem is reported with the JSON path of the offending value (`$.rules[2].process.names[0]`),
 * all of them at once, so an admin fixes a policy in one round.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import picomatch from 'picomatch';
import semver from 'semver';
import { type ErrorCode, GuardError } from '../common/errors.js';
import { isBunGenericSet, MAX_POLICY_MARKER_BYTES, markerKey, parseMarker } from './content-markers.js';
import { compileArgvPattern, compileGlob, MAX_ARGV_PATTERN_PROGRAM_SIZE } from './matcher.js';
import type { PolicyBody } from './policy-types.js';

/** One problem found in a policy body. */
export interface PolicyIssue {
  /** JSONPath-like location, `$` = the body root. */
  readonly path: string;
  readonly message: string;
  /** The code a device refuses it with when not GUARD_POLICY_SCHEMA (e.g. GUARD_POLICY_REGEX_UNSUPPORTED). */
  readonly code?: ErrorCode;
}

/** The error message lists at most this many issues (all are in `details.issues`, capped below). */
const MAX_ISSUES_IN_MESSAGE = 20;
/** Issues kept in error details: bounds the size of an error built from a hostile 1 MiB body. */
const MAX_ISSUES_KEPT = 200;

/** Where the JSON Schema lives: policy/ at the package root, the same from src/ (tests) and dist/. */
const SCHEMA_URL = new URL('../../policy/policy.schema.json', import.meta.url);

// ajv-formats is CommonJS; under NodeNext its default export arrives as the module object.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => Ajv;

let validator: ReturnType<Ajv['compile']> | null = null;

/** The policy JSON Schema as a parsed object (for docs and tools). */
export function policySchema(): Record<string, unknown> {
  return JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as Record<string, unknown>;
}

function compiledValidator(): ReturnType<Ajv['compile']> {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: false });
    addFormats(ajv);
    validator = ajv.compile(policySchema());
  }
  return validator;
}

/** `/rules/0/process/names/1` → `$.rules[0].process.names[1]`. */
export function jsonPath(pointer: string, extra?: string): string {
  const parts = pointer === '' ? [] : pointer.slice(1).split('/');
  if (extra !== undefined) parts.push(extra);
  let out = '$';
  for (const raw of parts) {
    const p = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(p)
      ? `[${p}]`
      : /^[A-Za-z_][A-Za-z0-9_]*$/.test(p)
        ? `.${p}`
        : `[${JSON.stringify(p)}]`;
  }
  return out;
}

function describeAjvError(e: ErrorObject): PolicyIssue {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return {
        path: jsonPath(e.instancePath, String(params.additionalProperty)),
        message: 'is not a known field',
      };
    case 'required':
      return { path: jsonPath(e.instancePath, String(params.missingProperty)), message: 'is required' };
    case 'const':
      return { path: jsonPath(e.instancePath), message: `must be ${JSON.stringify(params.allowedValue)}` };
    case 'enum':
      return {
        path: jsonPath(e.instancePath),
        message: `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    case 'anyOf':
      return {
        path: jsonPath(e.instancePath),
        message: 'must name at least one of users, groups, hosts, device_tags',
      };
    default:
      return { path: jsonPath(e.instancePath), message: e.message ?? e.keyword };
  }
}

/** Schema problems of `body` (empty = valid against policy/policy.schema.json). */
export function schemaIssues(body: unknown): PolicyIssue[] {
  const validate = compiledValidator();
  if (validate(body)) return [];
  const issues = (validate.errors ?? []).filter((e) => e.keyword !== 'if').map(describeAjvError);
  // anyOf reports one error per branch plus its own; keep the summary only.
  return dedupe(issues.filter((i, _n, all) => !(i.message === 'is required' && isAnyOfBranch(i, all))));
}

function isAnyOfBranch(issue: PolicyIssue, all: readonly PolicyIssue[]): boolean {
  const parent = issue.path.replace(/\.[a-z_]+$/, '');
  return (
    /\.(users|groups|hosts|device_tags)$/.test(issue.path) &&
    all.some((o) => o.path === parent && o.message.startsWith('must name at least one'))
  );
}

function dedupe(issues: PolicyIssue[]): PolicyIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const k = `${i.path}\0${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * Why `src` is not an argv pattern the matcher can run, or null. The pattern language is RE2's
 * (linear-time matching): a pattern JavaScript would accept but RE2 refuses (backreference,
 * lookahead/lookbehind, `\u` escapes, repeat count above 1000) or one that compiles larger than
 * MAX_ARGV_PATTERN_PROGRAM_SIZE is GUARD_POLICY_REGEX_UNSUPPORTED; a pattern no engine reads is
 * a plain GUARD_POLICY_SCHEMA problem.
 */
export function regexProblem(src: string): { readonly message: string; readonly code?: ErrorCode } | null {
  let size: number;
  try {
    size = compileArgvPattern(src).programSize();
  } catch (err) {
    const why = (err as Error).message.replace(/^error parsing regexp: /, '');
    let jsValid = true;
    try {
      new RegExp(src);
    } catch {
      try {
        new RegExp(src, 'u');
      } catch {
        jsValid = false;
      }
    }
    return jsValid
      ? {
          code: 'GUARD_POLICY_REGEX_UNSUPPORTED',
          message: `uses syntax the linear-time RE2 engine does not support (${why}); argv patterns are RE2 syntax: no backreferences or lookaround (docs/policy.md)`,
        }
      : { message: `is not a valid regular expression (RE2 syntax): ${why}` };
  }
  if (size > MAX_ARGV_PATTERN_PROGRAM_SIZE) {
    return {
      code: 'GUARD_POLICY_REGEX_UNSUPPORTED',
      message: `compiles to ${size} RE2 instructions, more than the ${MAX_ARGV_PATTERN_PROGRAM_SIZE} a pattern may have (large counted repetitions such as .{1000})`,
    };
  }
  return null;
}

/** Why `glob` is not a usable glob (unbalanced brackets/braces/parens), or null. */
export function globProblem(glob: string): string | null {
  try {
    picomatch.makeRe(glob, { strictBrackets: true, dot: true });
    return null;
  } catch (err) {
    return `is not a valid glob: ${(err as Error).message}`;
  }
}

/**
 * Why `glob` is not a usable exe/path glob, or null: invalid, or not runnable on the matcher's
 * linear-time glob engine (matcher.ts globRe2Source: a negated extglob `!(…)` needs lookahead).
 */
export function pathGlobProblem(glob: string): string | null {
  const invalid = globProblem(glob);
  if (invalid) return invalid;
  try {
    for (const nocase of [false, true]) compileGlob([glob.replace(/\\/g, '/')], nocase);
    return null;
  } catch (err) {
    return `cannot be matched in linear time: ${(err as Error).message}`;
  }
}

/**
 * Semantic problems of a schema-valid body: things the matcher would choke on or that make the
 * policy ambiguous. Run only after `schemaIssues` returned nothing.
 */
export function semanticIssues(body: PolicyBody): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  // RFC 3339 allows a leap second (…T23:59:60Z) but Date.parse returns NaN for it, and every
  // comparison with NaN is false: such a policy (or exception) would never expire.
  const unreadable = (v: string): boolean => !Number.isFinite(Date.parse(v));
  const NOT_COMPARABLE = 'is a date-time this device cannot compare (a leap second?); use another second';
  for (const key of ['issued_at', 'expires_at'] as const) {
    if (unreadable(body[key])) issues.push({ path: `$.${key}`, message: NOT_COMPARABLE });
  }
  if (Date.parse(body.expires_at) <= Date.parse(body.issued_at)) {
    issues.push({ path: '$.expires_at', message: 'must be later than issued_at' });
  }
  const markerBytes = new Map<string, number>();
  const firstIndex = new Map<string, number>();
  body.rules.forEach((rule, i) => {
    const at = `$.rules[${i}]`;
    const prev = firstIndex.get(rule.id);
    if (prev !== undefined) {
      issues.push({
        path: `${at}.id`,
        message: `duplicate rule id "${rule.id}" (first at $.rules[${prev}])`,
      });
    } else firstIndex.set(rule.id, i);
    const p = rule.process ?? {};
    (p.argv_patterns ?? []).forEach((src, j) => {
      const problem = regexProblem(src);
      if (problem) issues.push({ path: `${at}.process.argv_patterns[${j}]`, ...problem });
    });
    (p.markers ?? []).forEach((set, j) => {
      set.forEach((src, k) => {
        const bytes = parseMarker(src);
        if (typeof bytes === 'string')
          issues.push({ path: `${at}.process.markers[${j}][${k}]`, message: bytes });
        else markerBytes.set(markerKey(bytes), bytes.length);
      });
      if (rule.action !== 'audit' && isBunGenericSet(set)) {
        issues.push({
          path: `${at}.process.markers[${j}]`,
          message: `matches every Bun single-file executable (only strings the Bun runtime itself carries); such a set may drive an audit rule at most, not ${rule.action}`,
        });
      }
    });
    (p.signing_ids ?? []).forEach((id, j) => {
      // Banning Apple's own binaries (shells, launchd helpers) by signing id would stop the machine.
      if (rule.action !== 'audit' && id.startsWith('platform:'))
        issues.push({
          path: `${at}.process.signing_ids[${j}]`,
          message: `names an Apple platform binary; such a signing id may drive an audit rule at most, not ${rule.action}`,
        });
    });
    (p.exe_globs ?? []).forEach((g, j) => {
      const problem = pathGlobProblem(g);
      if (problem) issues.push({ path: `${at}.process.exe_globs[${j}]`, message: problem });
    });
    (rule.paths ?? []).forEach((g, j) => {
      const problem = pathGlobProblem(g);
      if (problem) issues.push({ path: `${at}.paths[${j}]`, message: problem });
    });
    (rule.packages ?? []).forEach((k, j) => {
      if (semver.validRange(k.range) === null) {
        issues.push({
          path: `${at}.packages[${j}].range`,
          message: `"${k.range}" is not a valid semver range`,
        });
      }
    });
  });
  let totalMarkerBytes = 0;
  for (const n of markerBytes.values()) totalMarkerBytes += n;
  if (totalMarkerBytes > MAX_POLICY_MARKER_BYTES) {
    issues.push({
      path: '$.rules',
      message: `content markers total ${totalMarkerBytes} distinct bytes, more than the ${MAX_POLICY_MARKER_BYTES} a policy may have`,
    });
  }
  (body.exceptions ?? []).forEach((e, i) => {
    if (unreadable(e.expires_at))
      issues.push({ path: `$.exceptions[${i}].expires_at`, message: NOT_COMPARABLE });
    const problem = (e.hosts ?? []).map(globProblem).find((x) => x !== null);
    if (problem) issues.push({ path: `$.exceptions[${i}].hosts`, message: problem });
  });
  return issues;
}

/** Every schema problem, then (when the schema passes) every semantic problem. */
export function policyIssues(body: unknown): PolicyIssue[] {
  const s = schemaIssues(body);
  return s.length > 0 ? s : semanticIssues(body as PolicyBody);
}

/** Formats issues as one message naming every path (the first MAX_ISSUES_IN_MESSAGE of them). */
export function formatIssues(issues: readonly PolicyIssue[]): string {
  const shown = issues.slice(0, MAX_ISSUES_IN_MESSAGE).map((i) => `${i.path} ${i.message}`);
  const more =
    issues.length > MAX_ISSUES_IN_MESSAGE ? `; and ${issues.length - MAX_ISSUES_IN_MESSAGE} more` : '';
  return shown.join('; ') + more;
}

/**
 * Returns `body` typed when it passes schema and semantics; else throws naming every path: with
 * the issues' own code when they all share one (GUARD_POLICY_REGEX_UNSUPPORTED), else
 * GUARD_POLICY_SCHEMA.
 */
export function assertValidPolicyBody(body: unknown): PolicyBody {
  const issues = policyIssues(body);
  if (issues.length > 0) {
    const first = issues[0]?.code;
    const code: ErrorCode =
      first !== undefined && issues.every((i) => i.code === first) ? first : 'GUARD_POLICY_SCHEMA';
    throw new GuardError(code, `policy body is invalid: ${formatIssues(issues)}`, {
      issues: issues.slice(0, MAX_ISSUES_KEPT),
    });
  }
  return body as PolicyBody;
}
