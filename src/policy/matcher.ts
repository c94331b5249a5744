/**
 * Owns the compiled matcher: built once per verified policy, then a pure function
 * `(observation, context) → Decision | null` — no I/O, no clock (the time comes in the context).
 * Processes, packages and path artifacts all go through the same rules and the same exceptions.
 *
 * When several rules match, the strongest action wins (block > warn > audit); among equals the
 * first rule in policy order. A rule is skipped for an observation when an unexpired exception
 * for it matches every criterion it names (users, groups, hosts, device tags).
 *
 * argv patterns are RE2 syntax and run on re2js (a port of RE2): matching is linear in the
 * command line's length whatever the pattern, so a crafted command line cannot make a launch
 * slow (a backtracking engine took 16 s on `a.*b.*c.*d.*e` and 4 KiB). Every pattern of the
 * policy goes into RE2 sets, so one pass over the command line answers every rule at once.
 *
 * exe and path globs run on RE2 too (compileGlob): picomatch translates the glob to a regex, the
 * few lookarounds it emits (only to keep `*` off `.`/`..` segments, which normalized absolute paths
 * never have) are removed and the rest goes to re2js. A backtracking engine took 266 s on
 * `/home/*​/proj/a*a*a*a*a*a*c*b` and a 251-char file name; RE2 is linear in the path.
 */
import { basename, posix } from 'node:path';
import picomatch from 'picomatch';
import { RE2JS, RE2Set } from 're2js';
import semver from 'semver';
import { anyGlobTest } from '../common/glob-test.js';
import type { Platform } from '../common/platform-paths.js';
import type {
  CodeSigning,
  Observation,
  Owner,
  PackageObservation,
  ProcessObservation,
} from '../sensors/observation.js';
import { type MarkerAutomaton, markerAutomaton, markerKey, parseMarker } from './content-markers.js';
import type { PolicyBody, PolicyException, PolicyMode, PolicyRule, RuleAction } from './policy-types.js';

/** Why a rule matched; the enumeration is part of the event schema. */
export type MatchReason =
  | 'name'
  | 'exe_path'
  | 'argv'
  | 'script_package'
  | 'sha256'
  | 'content'
  | 'signing'
  | 'npm_package'
  | 'path';

export interface Decision {
  readonly rule: { readonly id: string; readonly name: string; readonly action: RuleAction };
  readonly reason: MatchReason;
  /** What matched: the name, glob, pattern, package@range or hash from the rule. */
  readonly detail: string;
  readonly message: string;
  readonly url: string | null;
  readonly policyVersion: number;
  /** The policy's global mode; in `monitor`, the enforcer turns block into "would block". */
  readonly mode: PolicyMode;
}

/** Facts about the machine and the moment, passed in so the matcher stays pure. */
export interface MatchContext {
  /** Milliseconds since the epoch (exception expiry). */
  readonly now: number;
  readonly hostname: string;
  readonly deviceTags: readonly string[];
}

export interface CompileOptions {
  readonly platform: Platform;
  /** Every local user's home, for `~` in path globs. */
  readonly homes: readonly string[];
}

export interface Matcher {
  readonly policyVersion: number;
  readonly mode: PolicyMode;
  /** Which costly observation fields any rule needs; sensors fill only these. */
  readonly needs: { readonly sha256: boolean; readonly scriptPackage: boolean; readonly markers: boolean };
  /**
   * The automaton of every content marker of the rules active here, built on the first call and
   * shared (content-markers.ts markerAutomaton); null when no rule has markers. Sensors scan an
   * executable with it and report the keys found (`ProcessObservation.contentMarkers`).
   */
  markers(): MarkerAutomaton | null;
  /** Package names any rule bans (so the install sensor can skip reading others' package.json). */
  readonly packageNames: ReadonlySet<string>;
  /**
   * Where path artifacts can be (what the install sensor watches and walks): each distinct literal
   * base of the path globs, a `~` glob's for every home, with how many levels below it a glob can
   * reach (Infinity for `**`). Computed on first use, then kept.
   */
  readonly pathScanBases: readonly PathScanBase[];
  /** Whether any rule's path glob matches `path` (exceptions and actions aside): an artifact. */
  pathMatches(path: string): boolean;
  /** Number of rules active on this platform. */
  readonly ruleCount: number;
  /**
   * Ids of the rules that have exceptions: their decisions depend on who runs a program, so the
   * pre-exec verdict cache (keyed by file, not user) must not keep them.
   */
  readonly exceptedRules: ReadonlySet<string>;
  /** The decision for an observation, or null when no (non-excepted) rule matches. */
  match(obs: Observation, ctx: MatchContext): Decision | null;
  /**
   * Every rule active on this platform that matches `obs`, each with the first of its criteria that
   * matched, ignoring exceptions and actions: what the rule alone would do to it. For the safety
   * check (rule-safety.ts) and explanations, not the hot path.
   */
  matchAll(obs: Observation): readonly RuleHit[];
}

/** A directory path globs reach below, and how deep (Matcher.pathScanBases). */
export interface PathScanBase {
  readonly base: string;
  readonly depth: number;
}

/** One rule matching an observation (Matcher.matchAll). */
export interface RuleHit {
  /** Index of the rule in the policy body's `rules`. */
  readonly ruleIndex: number;
  readonly reason: MatchReason;
  readonly detail: string;
}

const ACTION_RANK: Record<RuleAction, number> = { block: 3, warn: 2, audit: 1 };

/**
 * argv longer than this (joined) is cut before pattern matching. RE2 is linear, but linear in
 * (characters × compiled size of every pattern) when a policy's patterns defeat RE2's DFA and it
 * falls back to its NFA: the worst 1,000-pattern policy in bench/policy.bench.js costs ~1 s per
 * 4 KiB there, and Linux allows 2 MiB of argv. 4 KiB holds any real invocation's flags; a banned
 * flag pushed past it by padding is still caught by names, hashes and script packages
 * (docs/policy.md).
 */
export const MAX_ARGV_MATCH_CHARS = 4 * 1024;

/**
 * argv patterns per RE2 set. One set answers "which of these patterns match" in one pass; a chunk
 * this size compiles in ~30-80 ms and its DFA stays within ARGV_SET_DFA_BYTES for ordinary
 * patterns, while 1,000 patterns in one set would make a single compile of ~0.3 s.
 */
const ARGV_SET_CHUNK = 250;

/**
 * DFA cache budget of one RE2 set, in bytes. RE2 drops to its NFA (still linear, slower) when a
 * set's DFA needs more: this is what bounds the matcher's memory whatever the patterns (4 sets for
 * a 1,000-pattern policy = 8 MiB at most), where a DFA per pattern could take 8 MiB each.
 */
const ARGV_SET_DFA_BYTES = 2 * 1024 * 1024;

/**
 * Compiled size (RE2 instructions) one argv pattern may have. Matching cost is linear in the
 * compiled size too; real patterns are 10-100 instructions, `.{1000}` is 1,002. Checked by the
 * schema (GUARD_POLICY_REGEX_UNSUPPORTED).
 */
export const MAX_ARGV_PATTERN_PROGRAM_SIZE = 2000;

/**
 * Compiles one argv pattern with the matcher's engine and semantics (RE2 syntax, case-sensitive,
 * `^`/`$` at the ends of the joined command line). Throws re2js' syntax error on what RE2 refuses
 * (backreferences, lookaround, repeat counts above 1000, bad syntax).
 */
export function compileArgvPattern(src: string): RE2JS {
  return RE2JS.compile(src);
}

/** picomatch's lookarounds that only exclude `.`/`..` segments (absent from normalized paths). */
const DOT_SEGMENT_GUARDS = ['(?!\\.{1,2}(?:\\/|$))', '(?!(?:^|\\/)\\.{1,2}(?:\\/|$))'];

/**
 * The RE2 source of an exe/path glob (picomatch syntax, `dot: true`, anchored both ends), or throws
 * an Error naming what RE2 cannot run (a negated extglob `!(…)` needs lookahead). Equivalent to
 * picomatch on paths without `.`/`..` segments and without empty segments, which is every path a
 * sensor reports (real, absolute, normalized).
 */
export function globRe2Source(glob: string, nocase: boolean): string {
  const key = `${nocase ? 'i' : 's'}${glob}`;
  const cached = re2SourceCache.get(key);
  if (cached !== undefined) return cached;
  const src = translateGlob(glob, nocase);
  if (re2SourceCache.size >= RE2_SOURCE_CACHE_MAX) re2SourceCache.clear();
  re2SourceCache.set(key, src);
  return src;
}

/**
 * Translations kept (globRe2Source): a 1,000-rule policy expands to ~10,000 globs with the homes,
 * translated again by every check of the same policy (verifier, safety check, three platforms).
 */
const RE2_SOURCE_CACHE_MAX = 50_000;
const re2SourceCache = new Map<string, string>();

function translateGlob(glob: string, nocase: boolean): string {
  let src = picomatch.makeRe(glob, { dot: true, nocase }).source;
  for (const guard of DOT_SEGMENT_GUARDS) src = src.split(guard).join('');
  // `(?=.)` before a segment's star: the star stands for at least one character.
  src = src.replace(/\(\?=\.\)\[\^\/\]\*\?/g, '[^/]+?');
  if (/\(\?[=!<]/.test(src)) {
    throw new Error('uses a negated extglob or lookaround, which the linear-time glob engine cannot run');
  }
  return src;
}

/** A compiled set of globs: true when any matches the whole (posix) path. */
export type GlobTest = (path: string) => boolean;

/**
 * Compiles globs (see globRe2Source) into one RE2 alternation: linear in the path's length. The
 * RE2 program is built on the first test (a rule's own exe globs are tested only when ExeGlobIndex
 * names the rule for the path, so most are never built); the translation runs now, so a bad glob throws here.
 */
export function compileGlob(globs: readonly string[], nocase: boolean): GlobTest {
  const source = globs.map((g) => `(?:${globRe2Source(g, nocase)})`).join('|');
  let re: RE2JS | null = null;
  return (path) => {
    re ??= RE2JS.compile(source, nocase ? RE2JS.CASE_INSENSITIVE : 0);
    return re.matches(path);
  };
}

interface CompiledRule {
  readonly rule: PolicyRule;
  readonly index: number;
  readonly names: ReadonlySet<string>;
  readonly exeGlob: GlobTest | null;
  /** This rule's argv patterns: source and index in the policy's ArgvPatternSet. */
  readonly argv: readonly { readonly source: string; readonly index: number }[];
  readonly scriptPackages: ReadonlySet<string>;
  readonly sha256: ReadonlySet<string>;
  /** Content marker sets: canonical keys (all must be found) and the set as written (the detail). */
  readonly markerSets: readonly { readonly keys: readonly string[]; readonly detail: string }[];
  /** Apple team identifiers (exact, upper-case as Apple issues them). */
  readonly teamIds: ReadonlySet<string>;
  /** `TEAMID:identifier` / `platform:identifier` signing ids (exact). */
  readonly signingIds: ReadonlySet<string>;
  readonly packages: readonly { name: string; range: string }[];
  /** The rule's path globs that name no home (`/opt/x/*`). */
  readonly pathGlob: GlobTest | null;
  /** Literal bases of those globs (globBase): only paths at or below one can match. */
  readonly pathBases: readonly string[];
  /** Where each of those globs can match (pathGate): tested before pathGlob is built. */
  readonly pathGates: readonly PathGate[];
  /**
   * The rule's `~` globs, compiled once for every home with HOME standing for the home
   * (`/~home/.x/*`): tested on a path with HOME in place of whichever home it is at or below.
   */
  readonly homeGlob: GlobTest | null;
  /** Their bases and gates, with HOME for the home (`/~home/.vscode/extensions`). */
  readonly homeBases: readonly string[];
  readonly homeGates: readonly PathGate[];
  readonly exceptions: readonly CompiledException[];
}

interface CompiledException {
  readonly expiresAt: number;
  readonly users: ReadonlySet<string> | null;
  readonly groups: ReadonlySet<string> | null;
  readonly host: ((h: string) => boolean) | null;
  readonly tags: ReadonlySet<string> | null;
}

/**
 * Compiles a verified policy body. Throws only on input the schema should have refused (bad glob).
 * argv patterns are compiled into RE2 sets on the first command line tested (see ArgvPatternSet):
 * they must have passed the schema's RE2 check (policy-schema.ts regexProblem), as every verified
 * body's have.
 */
export function compileMatcher(body: PolicyBody, options: CompileOptions): Matcher {
  const nocase = options.platform !== 'linux';
  const argvSources: string[] = [];
  // A home that is `/` (an account's home set to the root) takes `~` globs as they expand there,
  // with the absolute ones: `~/x` is `/x` (HOME stands only for homes below the root).
  const rootHome = options.homes.some((h) => homeKey(h) === '');
  const rules = body.rules
    .map((rule, index) => ({ rule, index }))
    .filter(({ rule }) => !rule.platforms || rule.platforms.includes(options.platform))
    .map(({ rule, index }) => compileRule(rule, index, body.exceptions ?? [], nocase, argvSources, rootHome));

  const markerPatterns = new Map<string, Buffer>();
  for (const r of rules) {
    for (const src of (r.rule.process?.markers ?? []).flat()) {
      const b = parseMarker(src);
      if (typeof b !== 'string') markerPatterns.set(markerKey(b), b);
    }
  }
  const needs = {
    markers: markerPatterns.size > 0,
    sha256: rules.some((r) => r.sha256.size > 0),
    scriptPackage: rules.some((r) => r.scriptPackages.size > 0 || r.exeGlob !== null),
  };
  const exeIndex = new ExeGlobIndex(rules, nocase);
  const argvSet = new ArgvPatternSet(argvSources);
  // Path globs are dispatched by their literal base (the part before the first wildcard): a path
  // can only match a glob whose base is the path or one of its ancestors, so a Set lookup per
  // ancestor answers "may any rule match?" without compiling thousands of globs (1,000 rules ×
  // homes); a rule's own RE2 glob is built only when a path under one of its bases is tested.
  const pathBaseIndex = new Set(rules.flatMap((r) => r.pathBases));
  const underBase = (index: ReadonlySet<string>, folded: string): boolean => {
    if (index.size === 0) return false;
    if (index.has('')) return true;
    let p = folded;
    for (;;) {
      if (index.has(p)) return true;
      const i = p.lastIndexOf('/');
      if (i < 0) return false;
      p = i === 0 ? (p === '/' ? '' : '/') : p.slice(0, i);
      if (p === '') return index.has('/');
    }
  };
  // `~` globs: one index of bases relative to a home, and the homes themselves (case-folded).
  const homeBaseIndex = new Set(rules.flatMap((r) => r.homeBases));
  const homeKeys = new Set(
    rules.some((r) => r.homeGlob)
      ? options.homes.map((h) => fold(homeKey(h), nocase)).filter((k) => k !== '')
      : [],
  );
  /** `path` with HOME for each home it is at or below (original case and folded). */
  const homeForms = (path: string, folded: string): HomeForm[] => {
    const out: HomeForm[] = [];
    if (homeKeys.size === 0) return out;
    for (let p = folded; ; ) {
      if (homeKeys.has(p))
        out.push({ posix: HOME + path.slice(p.length), folded: HOME + folded.slice(p.length) });
      const i = p.lastIndexOf('/');
      if (i <= 0) return out;
      p = p.slice(0, i);
    }
  };
  const pathFacts = (path: string): PathFacts | null => {
    const posix = toPosix(path);
    const folded = fold(posix, nocase);
    const homes = homeForms(posix, folded).filter((h) => underBase(homeBaseIndex, h.folded));
    return homes.length > 0 || underBase(pathBaseIndex, folded) ? { posix, folded, homes } : null;
  };
  const packageNames = new Set(rules.flatMap((r) => r.packages.map((p) => p.name)));
  let scanBases: PathScanBase[] | undefined;

  const matchWith = (
    ctx: MatchContext,
    owner: Owner,
    test: (r: CompiledRule) => { reason: MatchReason; detail: string } | null,
  ): Decision | null => {
    let best: { r: CompiledRule; hit: { reason: MatchReason; detail: string } } | null = null;
    for (const r of rules) {
      if (best && ACTION_RANK[r.rule.action] <= ACTION_RANK[best.r.rule.action]) continue;
      const hit = test(r);
      if (!hit || isExcepted(r, owner, ctx)) continue;
      best = { r, hit };
    }
    if (!best) return null;
    const { rule } = best.r;
    return {
      rule: { id: rule.id, name: rule.name, action: rule.action },
      reason: best.hit.reason,
      detail: best.hit.detail,
      message: rule.message,
      url: rule.url ?? null,
      policyVersion: body.version,
      mode: body.mode,
    };
  };

  // Built on first use, then kept: the sensors ask for every exec they scan.
  let automaton: MarkerAutomaton | null | undefined;
  return {
    policyVersion: body.version,
    mode: body.mode,
    needs,
    markers: () => {
      if (automaton === undefined)
        automaton = markerPatterns.size > 0 ? markerAutomaton([...markerPatterns.values()]) : null;
      return automaton;
    },
    packageNames,
    get pathScanBases() {
      scanBases ??= pathScanBases(
        rules.flatMap((r) => r.rule.paths ?? []),
        options.homes,
      );
      return scanBases;
    },
    pathMatches(path) {
      const facts = pathFacts(path);
      return facts !== null && rules.some((r) => matchPath(r, path, facts) !== null);
    },
    ruleCount: rules.length,
    exceptedRules: new Set(rules.filter((r) => r.exceptions.length > 0).map((r) => r.rule.id)),
    match(obs, ctx) {
      switch (obs.kind) {
        case 'process': {
          // Computed once per observation, not once per rule: with 1,000 rules this is the hot path.
          const facts: ProcessFacts = {
            names: processNames(obs, nocase),
            argvHits: null,
            exeCandidates: null,
            exeIndex,
            markerHits: null,
            argvSet,
          };
          return matchWith(ctx, obs.owner, (r) => matchProcess(r, obs, facts));
        }
        case 'package':
          return matchWith(ctx, obs.owner, (r) => matchPackage(r, obs));
        case 'path': {
          const facts = pathFacts(obs.path);
          if (!facts) return null;
          return matchWith(ctx, obs.owner, (r) => matchPath(r, obs.path, facts));
        }
      }
    },
    matchAll(obs) {
      const facts: ProcessFacts | null =
        obs.kind === 'process'
          ? {
              names: processNames(obs, nocase),
              argvHits: null,
              exeCandidates: null,
              exeIndex,
              markerHits: null,
              argvSet,
            }
          : null;
      const hits: RuleHit[] = [];
      const paths = obs.kind === 'path' ? pathFacts(obs.path) : null;
      if (obs.kind === 'path' && !paths) return hits;
      for (const r of rules) {
        const hit =
          obs.kind === 'process' && facts
            ? matchProcess(r, obs, facts)
            : obs.kind === 'package'
              ? matchPackage(r, obs)
              : obs.kind === 'path' && paths
                ? matchPath(r, obs.path, paths)
                : null;
        if (hit) hits.push({ ruleIndex: r.index, ...hit });
      }
      return hits;
    },
  };
}

function compileRule(
  rule: PolicyRule,
  index: number,
  exceptions: readonly PolicyException[],
  nocase: boolean,
  argvSources: string[],
  rootHome: boolean,
): CompiledRule {
  const p = rule.process ?? {};
  const exeGlobs = (p.exe_globs ?? []).map(toPosix);
  const homeRests = (rule.paths ?? []).map(homeRest).filter((r): r is string => r !== null);
  const pathGlobs = [
    ...(rule.paths ?? []).filter((g) => homeRest(g) === null).map(toPosix),
    ...(rootHome ? homeRests.map((r) => r || '/') : []),
  ];
  const homeGlobs = homeRests.map((r) => HOME + r);
  return {
    rule,
    index,
    // Case-insensitive file systems (macOS, Windows) run `CLAUDE.EXE` for `claude`: fold both sides.
    names: new Set((p.names ?? []).map((n) => (nocase ? n.toLowerCase() : n))),
    exeGlob: exeGlobs.length > 0 ? compileGlob(exeGlobs, nocase) : null,
    argv: (p.argv_patterns ?? []).map((source) => ({ source, index: argvSources.push(source) - 1 })),
    scriptPackages: new Set(p.script_packages ?? []),
    sha256: new Set((p.sha256 ?? []).map((h) => h.toLowerCase())),
    markerSets: (p.markers ?? []).map((set) => ({
      keys: set.map((src) => {
        const b = parseMarker(src);
        // Refused by the schema; a key no scan reports keeps the set from ever matching.
        return typeof b === 'string' ? `invalid:${src}` : markerKey(b);
      }),
      detail: set.map((src) => JSON.stringify(src)).join(' & '),
    })),
    teamIds: new Set(p.team_ids ?? []),
    signingIds: new Set(p.signing_ids ?? []),
    packages: (rule.packages ?? []).map((k) => ({ name: k.name, range: k.range })),
    pathGlob: pathGlobs.length > 0 ? compileGlob(pathGlobs, nocase) : null,
    pathBases: [...new Set(pathGlobs.map((g) => globBase(g, nocase)))],
    pathGates: uniqueGates(pathGlobs.map((g) => pathGate(g, nocase))),
    homeGlob: homeGlobs.length > 0 ? compileGlob(homeGlobs, nocase) : null,
    homeBases: [...new Set(homeGlobs.map((g) => globBase(g, nocase)))],
    homeGates: uniqueGates(homeGlobs.map((g) => pathGate(g, nocase))),
    exceptions: exceptions.filter((e) => e.rule === rule.id).map(compileException),
  };
}

function compileException(e: PolicyException): CompiledException {
  return {
    expiresAt: Date.parse(e.expires_at),
    users: e.users?.length ? new Set(e.users) : null,
    groups: e.groups?.length ? new Set(e.groups) : null,
    host: e.hosts?.length ? anyGlobTest(e.hosts, { nocase: true, dot: false }) : null,
    tags: e.device_tags?.length ? new Set(e.device_tags) : null,
  };
}

function isExcepted(r: CompiledRule, owner: Owner, ctx: MatchContext): boolean {
  return r.exceptions.some(
    (e) =>
      ctx.now < e.expiresAt &&
      (e.users === null || (owner.user !== null && e.users.has(owner.user))) &&
      (e.groups === null || owner.groups.some((g) => e.groups?.has(g))) &&
      (e.host === null || e.host(ctx.hostname)) &&
      (e.tags === null || ctx.deviceTags.some((t) => e.tags?.has(t))),
  );
}

/** Per-observation values shared by every rule's test. */
interface ProcessFacts {
  readonly names: readonly string[];
  /** Indices of the policy's argv patterns that match the joined, capped argv; computed on first use. */
  argvHits: ReadonlySet<number> | null;
  /** The rules whose exe globs may match this observation (ExeGlobIndex); computed on first use. */
  exeCandidates: ReadonlySet<CompiledRule> | null;
  readonly exeIndex: ExeGlobIndex;
  /** The observation's content markers as a set; built on first use. */
  markerHits: ReadonlySet<string> | null;
  readonly argvSet: ArgvPatternSet;
}

/**
 * Every argv pattern of the compiled policy, in RE2 sets of ARGV_SET_CHUNK. Built lazily on the
 * first command line to test (the verifier compiles matchers it never runs) and shared through a
 * small cache keyed by the chunk's patterns, so the safety check's compile and the matcher put in
 * force after it pay for one RE2 compilation.
 */
class ArgvPatternSet {
  private chunks: RE2Set[] | null = null;
  constructor(private readonly sources: readonly string[]) {}

  /** Indices (into the sources) of every pattern found in `text`. */
  matching(text: string): ReadonlySet<number> {
    if (this.sources.length === 0) return EMPTY_HITS;
    this.chunks ??= this.compile();
    const hits = new Set<number>();
    this.chunks.forEach((set, c) => {
      for (const i of set.match(text)) hits.add(c * ARGV_SET_CHUNK + i);
    });
    return hits;
  }

  private compile(): RE2Set[] {
    const out: RE2Set[] = [];
    for (let i = 0; i < this.sources.length; i += ARGV_SET_CHUNK) {
      const chunk = this.sources.slice(i, i + ARGV_SET_CHUNK);
      const key = JSON.stringify(chunk);
      let set = argvSetCache.get(key);
      if (set === undefined) {
        set = new RE2Set(RE2Set.UNANCHORED, 0, ARGV_SET_DFA_BYTES);
        for (const src of chunk) set.add(src);
        set.compile();
        if (argvSetCache.size >= ARGV_SET_CACHE_MAX) {
          const oldest = argvSetCache.keys().next().value;
          if (oldest !== undefined) argvSetCache.delete(oldest);
        }
      } else argvSetCache.delete(key); // re-inserted below: most recently used last
      argvSetCache.set(key, set);
      out.push(set);
    }
    return out;
  }
}

const EMPTY_HITS: ReadonlySet<number> = new Set();

/**
 * Compiled RE2 sets kept across matchers: 8 covers two policy versions × 4 chunks of a
 * 1,000-pattern policy, at ≤ ARGV_SET_DFA_BYTES of DFA cache each.
 */
const ARGV_SET_CACHE_MAX = 8;
const argvSetCache = new Map<string, RE2Set>();

/**
 * Which rules' exe globs can match a path, from each glob's most selective literal segment: a
 * glob whose segment `@vendor/tool` has no wildcard matches only paths that have that exact
 * segment, so a Map lookup per path segment yields the few rules worth testing, and only their own
 * RE2 globs are ever built. Globs with no literal segment (`**` + wildcards only) are candidates
 * for every path. An RE2 set over every glob of a 1,000-rule policy cost ~45 MiB of heap per case
 * mode once built, which pushed guardd against its V8 heap cap (docs/security.md "Memory budget");
 * this index costs a Map of the policy's segments.
 */
class ExeGlobIndex {
  private readonly bySegment = new Map<string, CompiledRule[]>();
  private readonly always: CompiledRule[] = [];

  constructor(
    rules: readonly CompiledRule[],
    private readonly nocase: boolean,
  ) {
    // Each glob is keyed by its literal segment shared by the fewest globs of the policy: for
    // `**/node_modules/@vendor/tool/**` that is `@vendor`, not the `node_modules` every npm path has.
    const globs = rules.map((r) => (r.rule.process?.exe_globs ?? []).map((g) => literalSegments(g, nocase)));
    const uses = new Map<string, number>();
    for (const segs of globs.flat()) for (const seg of new Set(segs)) uses.set(seg, (uses.get(seg) ?? 0) + 1);
    rules.forEach((r, i) => {
      const keys = new Set<string | null>();
      for (const segs of globs[i] ?? []) {
        let key: string | null = null;
        for (const seg of segs) {
          const better =
            key === null ||
            (uses.get(seg) ?? 0) < (uses.get(key) ?? 0) ||
            ((uses.get(seg) ?? 0) === (uses.get(key) ?? 0) && seg.length > key.length);
          if (better) key = seg;
        }
        keys.add(key);
      }
      for (const key of keys) {
        if (key === null) this.always.push(r);
        else {
          const list = this.bySegment.get(key);
          if (list) list.push(r);
          else this.bySegment.set(key, [r]);
        }
      }
    });
  }

  /** The rules whose exe globs may match one of `paths` (a superset of those that do). */
  candidates(paths: readonly string[]): ReadonlySet<CompiledRule> {
    const out = new Set<CompiledRule>(this.always);
    if (this.bySegment.size === 0) return out;
    for (const path of paths) {
      for (const seg of fold(toPosix(path), this.nocase).split('/')) {
        const rules = this.bySegment.get(seg);
        if (rules) for (const r of rules) out.add(r);
      }
    }
    return out;
  }
}

/**
 * A path segment picomatch reads literally: no wildcard, class, brace, extglob, negation or escape
 * character. On case-insensitive platforms ASCII only, where toLowerCase folds exactly as RE2's
 * case-insensitive match does.
 */
const LITERAL_SEGMENT = /^[^*?[\]{}()!|\\]+$/;

/** The literal segments of `glob`, case-folded like the matcher. */
function literalSegments(glob: string, nocase: boolean): string[] {
  return toPosix(glob)
    .split('/')
    .filter((seg) => seg !== '' && seg !== '.' && seg !== '..' && LITERAL_SEGMENT.test(seg))
    .filter((seg) => !nocase || /^[\x20-\x7e]+$/.test(seg))
    .map((seg) => fold(seg, nocase));
}

function matchProcess(
  r: CompiledRule,
  obs: ProcessObservation,
  facts: ProcessFacts,
): { reason: MatchReason; detail: string } | null {
  if (r.names.size > 0) {
    for (const candidate of facts.names) {
      if (r.names.has(candidate)) return { reason: 'name', detail: candidate };
    }
  }
  if (r.sha256.size > 0 && obs.sha256 && r.sha256.has(obs.sha256))
    return { reason: 'sha256', detail: obs.sha256 };
  if (r.markerSets.length > 0 && obs.contentMarkers && obs.contentMarkers.length > 0) {
    facts.markerHits ??= new Set(obs.contentMarkers);
    const hits = facts.markerHits;
    const set = r.markerSets.find((m) => m.keys.every((k) => hits.has(k)));
    if (set) return { reason: 'content', detail: set.detail };
  }
  if (obs.signing && (r.teamIds.size > 0 || r.signingIds.size > 0)) {
    const hit = signingHit(r, obs.signing);
    if (hit) return { reason: 'signing', detail: hit };
  }
  if (r.scriptPackages.size > 0 && obs.scriptPackage && r.scriptPackages.has(obs.scriptPackage.name)) {
    return { reason: 'script_package', detail: obs.scriptPackage.name };
  }
  if (r.exeGlob) {
    if (facts.exeCandidates === null) {
      const paths = [obs.exe, obs.scriptPackage?.script].filter((p): p is string => typeof p === 'string');
      facts.exeCandidates = facts.exeIndex.candidates(paths);
    }
    if (!facts.exeCandidates.has(r)) return argvHit(r, obs, facts);
    if (obs.exe && r.exeGlob(toPosix(obs.exe))) return { reason: 'exe_path', detail: obs.exe };
    const script = obs.scriptPackage?.script;
    if (script && r.exeGlob(toPosix(script))) return { reason: 'exe_path', detail: script };
  }
  return argvHit(r, obs, facts);
}

/**
 * The team id (`team:ABCDE12345`) or qualified signing id (`ABCDE12345:com.vendor.tool`,
 * `platform:com.apple.ls`) of `signing` that `r` names, or null. A signing id counts only with the
 * team that signed it (or Apple's platform flag): an ad-hoc signature may carry any identifier.
 */
function signingHit(r: CompiledRule, signing: CodeSigning): string | null {
  if (signing.teamId && r.teamIds.has(signing.teamId)) return `team:${signing.teamId}`;
  if (!signing.signingId || r.signingIds.size === 0) return null;
  const qualifier = signing.platformBinary ? 'platform' : signing.teamId;
  if (!qualifier) return null;
  const id = `${qualifier}:${signing.signingId}`;
  return r.signingIds.has(id) ? id : null;
}

function argvHit(
  r: CompiledRule,
  obs: ProcessObservation,
  facts: ProcessFacts,
): { reason: MatchReason; detail: string } | null {
  if (r.argv.length === 0) return null;
  facts.argvHits ??= facts.argvSet.matching(joinArgv(obs.argv));
  if (facts.argvHits.size === 0) return null;
  for (const p of r.argv) if (facts.argvHits.has(p.index)) return { reason: 'argv', detail: p.source };
  return null;
}

/** argv joined with spaces, cut at MAX_ARGV_MATCH_CHARS without joining a huge tail first. */
function joinArgv(argv: readonly string[]): string {
  let out = '';
  let first = true;
  for (const a of argv) {
    // Not `out === ''`: an empty argument still takes its separator, as argv.join(' ') does.
    out = first ? a : `${out} ${a}`;
    first = false;
    if (out.length >= MAX_ARGV_MATCH_CHARS) return out.slice(0, MAX_ARGV_MATCH_CHARS);
  }
  return out;
}

/**
 * The names a process goes by: comm, the executable's basename, argv[0]'s basename; a rule name
 * matches any of them. All three are chosen by whoever launches the program (rename, symlink,
 * `exec -a`), so names are only a first line: hashes, script packages and exe globs do not depend
 * on the name a user chose.
 */
export function processNames(obs: ProcessObservation, nocase: boolean): string[] {
  const names = [obs.name];
  if (obs.exe) names.push(basename(toPosix(obs.exe)));
  const argv0 = obs.argv[0];
  if (argv0) names.push(basename(toPosix(argv0)));
  // Windows and macOS: names are case-insensitive there (rule names are folded at compile time),
  // and "claude.exe" also matches the rule's bare name.
  if (!nocase) return names;
  return names.flatMap((n) => {
    const folded = n.toLowerCase();
    return folded.endsWith('.exe') ? [folded, folded.slice(0, -4)] : [folded];
  });
}

function matchPackage(
  r: CompiledRule,
  obs: PackageObservation,
): { reason: MatchReason; detail: string } | null {
  for (const k of r.packages) {
    if (k.name !== obs.name) continue;
    // A package with no valid version is treated as matching: fail closed on a banned name.
    if (obs.version === null || semver.satisfies(obs.version, k.range, { includePrerelease: true })) {
      return { reason: 'npm_package', detail: `${k.name}@${k.range}` };
    }
  }
  return null;
}

/**
 * What stands for the home in a compiled `~` glob and in the paths it is tested on: a literal
 * segment, so `~/x/**` matches a home's `x` exactly as the glob expanded for that home would
 * (`/home/a/x/**` for `/home/a/x`), for every home at once — a home's own name is never read as a
 * glob. Lower case: folding leaves it as it is.
 */
const HOME = '/~home';

/** A path with HOME in place of a home it is at or below: `/~home/.x/y` of `/home/a/.x/y`. */
interface HomeForm {
  readonly posix: string;
  readonly folded: string;
}

/** A path observation's path, computed once for every rule (see pathFacts in compileMatcher). */
interface PathFacts {
  readonly posix: string;
  readonly folded: string;
  /** Its forms with HOME for each home it is at or below that a `~` glob's base may match. */
  readonly homes: readonly HomeForm[];
}

function matchPath(
  r: CompiledRule,
  path: string,
  facts: PathFacts,
): { reason: MatchReason; detail: string } | null {
  const hit = { reason: 'path' as const, detail: path };
  if (r.pathGlob && r.pathGates.some((g) => passesGate(facts.folded, g)) && r.pathGlob(facts.posix))
    return hit;
  for (const h of facts.homes)
    if (r.homeGlob && r.homeGates.some((g) => passesGate(h.folded, g)) && r.homeGlob(h.posix)) return hit;
  return null;
}

/**
 * Where a path glob can match: at or below its literal `base` (globBase), with the path's segment
 * right after the base starting with `head`, the literal start of the glob's first wildcard segment
 * (`vendor.tool-` of `~/.vscode/extensions/vendor.tool-*`). Checked before the rule's RE2 glob is
 * built: a 1,000-rule policy whose rules share a base (every rule's `~/.vscode/extensions/…`) had
 * all its globs compiled by one path at that base — the directory itself, as the safety check's
 * probe or a sensor reports it — and each kept for the matcher's life (~15 MiB of RE2 programs).
 */
interface PathGate {
  readonly base: string;
  readonly head: string;
}

/** Characters that end a glob segment's literal start (picomatch's wildcards, braces, extglobs, escape). */
const GLOB_SPECIAL = /[*?[\]{}()!+@\\]/;

function pathGate(glob: string, nocase: boolean): PathGate {
  const base = globBase(glob, nocase);
  const scan = picomatch.scan(glob);
  if (base === '' || !scan.isGlob) return { base, head: '' };
  const first = scan.glob.split('/')[0] ?? '';
  const end = first.search(GLOB_SPECIAL);
  return { base, head: fold(end < 0 ? first : first.slice(0, end), nocase) };
}

function uniqueGates(gates: readonly PathGate[]): PathGate[] {
  const seen = new Map<string, PathGate>();
  for (const g of gates) seen.set(`${g.base}\0${g.head}`, g);
  return [...seen.values()];
}

/** Whether the (folded, posix) `path` is where a glob of `gate` can match. */
function passesGate(path: string, gate: PathGate): boolean {
  const { base, head } = gate;
  if (base === '') return true;
  let rest: string;
  if (base === '/') rest = path.slice(1);
  else if (path === base) rest = '';
  else if (path.startsWith(`${base}/`)) rest = path.slice(base.length + 1);
  else return false;
  return head === '' || rest.startsWith(head);
}

/**
 * The matcher's case folding on case-insensitive platforms (macOS, Windows), wherever a path is
 * compared with a glob's literal part before RE2 decides (bases, gates, `~` home prefixes, the exe
 * glob index). It must be at least as coarse as RE2's case-insensitive match, so that a literal
 * comparison never turns away what RE2 would match: `ſ` (U+017F) folds to `s` and the Kelvin sign
 * to `k` as in RE2 (and on NTFS), where toLowerCase left `ſ` alone — a path through `/etc/ſsh`
 * escaped `/etc/ssh/*`. And it keeps one UTF-16 unit per unit, so a folded prefix is as long as
 * the original (toLowerCase turns `İ` into two: a home named with it had its `~` forms cut short).
 */
function fold(s: string, nocase: boolean): string {
  if (!nocase) return s;
  if (ASCII.test(s)) return s.toLowerCase();
  let out = '';
  for (const ch of s) out += foldChar(ch);
  return out;
}

const ASCII = /^[ -~]*$/;
/** Folded non-ASCII characters (at most FOLD_CACHE_MAX, then started afresh). */
const foldCache = new Map<string, string>();
const FOLD_CACHE_MAX = 4096;

/** One character folded: lower case of its upper case (`ſ` → `S` → `s`), same length, or itself. */
function foldChar(ch: string): string {
  const cached = foldCache.get(ch);
  if (cached !== undefined) return cached;
  const up = ch.toUpperCase();
  const viaUp = up.length === ch.length ? up.toLowerCase() : '';
  const low = viaUp.length === ch.length ? viaUp : ch.toLowerCase();
  const out = low.length === ch.length ? low : ch;
  if (foldCache.size >= FOLD_CACHE_MAX) foldCache.clear();
  foldCache.set(ch, out);
  return out;
}

/**
 * The literal base of a (posix) glob: the directory part before its first wildcard, case-folded
 * like the matcher; '' when it has none or it cannot be read literally (an escape), which means
 * "test every path".
 */
function globBase(glob: string, nocase: boolean): string {
  const scan = picomatch.scan(glob);
  const base = scan.isGlob ? scan.base : glob;
  if (base.includes('\\') || (!base.startsWith('/') && !/^[A-Za-z]:\//.test(base))) return '';
  return fold(base.length > 1 ? base.replace(/\/+$/, '') : base, nocase);
}

/**
 * What a `~` glob names after the home ('' for `~`, `/x/*` for `~/x/*`), or null for a glob that
 * names no home. `~\` too: Windows admins write paths with backslashes; globs are matched in posix
 * form. (Only then are backslashes converted: in a `~/` glob a backslash is picomatch's escape.)
 */
export function homeRest(glob: string): string | null {
  if (glob === '~' || glob.startsWith('~/')) return glob.slice(1);
  if (glob.startsWith('~\\')) return toPosix(glob.slice(1));
  return null;
}

/** A home as a path prefix: posix, without trailing slashes ('' for `/`). */
function homeKey(home: string): string {
  return toPosix(home).replace(/\/+$/, '');
}

/**
 * The scan bases of path globs (Matcher.pathScanBases): a glob's literal base (picomatch's scan;
 * a glob without wildcards is an entry of its parent) and the levels below it its rest spans. A
 * `~` glob is scanned once with HOME and its base placed under each home (1,000 rules × 100 homes
 * cost a string join a base and home, not 200,000 scans).
 */
function pathScanBases(globs: readonly string[], homes: readonly string[]): PathScanBase[] {
  const out = new Map<string, number>();
  const add = ({ base, depth }: PathScanBase): void => {
    out.set(base, Math.max(out.get(base) ?? 0, depth));
  };
  const scanOf = (glob: string): PathScanBase => {
    const scan = picomatch.scan(glob);
    if (!scan.isGlob) return { base: posix.dirname(glob), depth: 0 };
    const segments = scan.glob.split('/').filter(Boolean);
    return {
      base: scan.base || '/',
      depth: segments.includes('**') ? Number.POSITIVE_INFINITY : Math.max(0, segments.length - 1),
    };
  };
  for (const g of globs) {
    const rest = homeRest(g);
    if (rest === null) {
      add(scanOf(toPosix(g)));
      continue;
    }
    const { base, depth } = scanOf(HOME + rest);
    for (const h of homes) {
      // `~` itself (its base is the home's parent) is scanned per home
      if (base === HOME || base.startsWith(`${HOME}/`))
        add({ base: homeKey(h) + base.slice(HOME.length) || '/', depth });
      else for (const e of expandHome(g, [h])) add(scanOf(e || '/'));
    }
  }
  return [...out].map(([base, depth]) => ({ base, depth }));
}

/** `~/x` → one glob per home; other globs unchanged. */
export function expandHome(glob: string, homes: readonly string[]): string[] {
  const rest = homeRest(glob);
  return rest === null ? [glob] : homes.map((h) => homeKey(h) + rest);
}

function toPosix(p: string): string {
  return p.includes('\\') ? p.replace(/\\/g, '/') : p;
}
