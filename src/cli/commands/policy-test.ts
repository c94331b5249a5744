/**
 * `guardctl policy test <file|pid|package-dir|path>`: what the policy in force (from guardd) — or
 * the one given with `--policy` — decides about it, and why; "why not" when nothing matches.
 * Observations come from the sensors' own readers (policy-test-target.ts); the decision from the
 * compiled matcher and decide(), exactly as guardd takes it. Exceptions are shown by asking the
 * same matcher again with one exception at a time, never by re-implementing their criteria.
 */
import { hostname } from 'node:os';
import { GuardError } from '../../common/errors.js';
import { currentPlatform } from '../../common/platform-paths.js';
import { USERS_ROUND_WAIT_MS, UserDirectory } from '../../common/users.js';
import { loadConfig } from '../../config/load-config.js';
import type { PolicyStatus } from '../../control/status.js';
import { decide, type Verdict } from '../../enforcement/decide.js';
import { FULL_SCOPE } from '../../enforcement/enforcement-scope.js';
import { compileMatcher, type MatchContext, type Matcher } from '../../policy/matcher.js';
import { assertValidPolicyBody } from '../../policy/policy-schema.js';
import type { PolicyBody, PolicyException, PolicyRule } from '../../policy/policy-types.js';
import type { Observation } from '../../sensors/observation.js';
import type { GuardctlCommand } from '../command.js';
import { printable, wrap } from '../format.js';
import { observeTarget, type TargetObservation, targetKind, uidOf } from '../policy-test-target.js';
import { readPolicyFile } from './policy-common.js';

/** One rule that names the observation, and what became of it. */
export interface TestMatch {
  readonly rule: { readonly id: string; readonly name: string; readonly action: string };
  readonly reason: string;
  readonly detail: string;
  /** decides: this is the decision; excepted: an exception lifts it; outranked: a stronger rule decides. */
  readonly status: 'decides' | 'excepted' | 'outranked';
  /** The exceptions that lift it for this observation (status excepted). */
  readonly exceptions: readonly PolicyException[];
}

export interface TestResult {
  readonly as: Observation['kind'];
  readonly facts: Readonly<Record<string, unknown>>;
  readonly verdict: {
    readonly act: Verdict['act'];
    readonly would_block: boolean;
    readonly rule: { readonly id: string; readonly name: string; readonly action: string };
    readonly reason: string;
    readonly detail: string;
    readonly message: string;
  } | null;
  readonly matches: readonly TestMatch[];
  /** Null when a rule decides; otherwise why nothing does. */
  readonly why_not: string | null;
}

export interface PolicyTestReport {
  readonly target: string;
  readonly kind: string;
  readonly policy: { readonly version: number; readonly mode: string; readonly source: string } | null;
  readonly context: { readonly hostname: string; readonly device_tags: readonly string[] };
  readonly results: readonly TestResult[];
}

export const policyTestCommand: GuardctlCommand = {
  name: 'policy test',
  summary: 'What the policy decides about a file, running pid, npm package dir or path, and why (or why not)',
  args: [{ syntax: '<target>', description: 'an executable, a pid, an npm package directory, or any path' }],
  options: [
    {
      flags: '--policy <file>',
      description: 'test this policy (body or envelope) instead of the one in force',
    },
    { flags: '--kind <kind>', description: 'read <target> as pid, file, package or path (default: guessed)' },
    { flags: '--user <name>', description: "decide a file as this user's process (default: you)" },
  ],
  examples: [
    'guardctl policy test ~/.local/bin/claude',
    'guardctl policy test 4242',
    'guardctl policy test /usr/lib/node_modules/@anthropic-ai/claude-code',
    'guardctl policy test --policy candidate.json --user alice ./tool',
    'guardctl --json policy test ~/.local/share/claude/versions/1.0.0',
  ],
  needsRoot: false,
  needsDaemon: false,
  async run(ctx) {
    const target = ctx.args[0];
    if (!target) throw new GuardError('GUARD_CLI_USAGE', 'policy test needs a <target>');
    const file = ctx.options.policy as string | undefined;
    let body: PolicyBody | null;
    let source: string;
    if (file) {
      body = assertValidPolicyBody(readPolicyFile(file).body);
      source = `file ${file} (signature not checked)`;
    } else {
      const r = await ctx.call<{ status: PolicyStatus; body: PolicyBody | null }>('policy.show');
      body = r.status.state === 'none' ? null : r.body;
      source = `guardd${r.status.source ? ` (${r.status.source})` : ''}${r.status.state === 'stale' ? ', STALE' : ''}`;
    }
    const config = safeConfig(ctx.configFile);
    const context = { hostname: hostname(), device_tags: config.deviceTags };
    const kind = targetKind(target, ctx.options.kind as string | undefined);
    if (!body) {
      const report: PolicyTestReport = { target, kind, policy: null, context, results: [] };
      return {
        data: report,
        text: 'guardd has no policy in force: nothing is decided (monitor-only). Test one with --policy FILE.',
      };
    }
    const users = new UserDirectory({ platform: currentPlatform() });
    // The first full answer (enumeration and home roots), bounded; else /etc/passwd's users.
    if (config.homes.length === 0) await users.settleUsers(USERS_ROUND_WAIT_MS);
    const homes = config.homes.length > 0 ? config.homes : users.users().map((u) => u.home);
    const compileOptions = { platform: currentPlatform(), homes };
    const matcher = compileMatcher(body, compileOptions);
    const uid = ctx.options.user ? uidOf(String(ctx.options.user)) : (process.getuid?.() ?? -1);
    const observed = await observeTarget(target, kind, { matcher, users, uid });
    const match: MatchContext = {
      now: Date.now(),
      hostname: context.hostname,
      deviceTags: context.device_tags,
    };
    const results = observed.map((o) => testOne(o, body, matcher, match, compileOptions));
    const report: PolicyTestReport = {
      target,
      kind,
      policy: { version: body.version, mode: body.mode, source },
      context,
      results,
    };
    return { data: report, text: formatPolicyTest(report) };
  },
};

function testOne(
  o: TargetObservation,
  body: PolicyBody,
  matcher: Matcher,
  match: MatchContext,
  compileOptions: Parameters<typeof compileMatcher>[1],
): TestResult {
  const verdict = decide(o.observation, { matcher, match, scope: FULL_SCOPE });
  const decided = verdict?.decision.rule.id ?? null;
  const matches: TestMatch[] = matcher.matchAll(o.observation).map((hit) => {
    const rule = body.rules[hit.ruleIndex] as PolicyRule;
    const base = {
      rule: { id: rule.id, name: rule.name, action: rule.action },
      reason: hit.reason,
      detail: hit.detail,
    };
    if (rule.id === decided) return { ...base, status: 'decides', exceptions: [] };
    const lifting = liftingExceptions(o.observation, body, rule, match, compileOptions);
    return lifting.length > 0
      ? { ...base, status: 'excepted', exceptions: lifting }
      : { ...base, status: 'outranked', exceptions: [] };
  });
  return {
    as: o.as,
    facts: o.facts,
    verdict: verdict
      ? {
          act: verdict.act,
          would_block: verdict.act === 'warn' && verdict.wouldBlock,
          rule: verdict.decision.rule,
          reason: verdict.decision.reason,
          detail: verdict.decision.detail,
          message: verdict.decision.message,
        }
      : null,
    matches,
    why_not: verdict ? null : whyNot(o, matches),
  };
}

/** The exceptions of `rule` that lift it for `obs`: the same matcher, one exception at a time. */
function liftingExceptions(
  obs: Observation,
  body: PolicyBody,
  rule: PolicyRule,
  match: MatchContext,
  compileOptions: Parameters<typeof compileMatcher>[1],
): PolicyException[] {
  return (body.exceptions ?? [])
    .filter((e) => e.rule === rule.id)
    .filter(
      (e) =>
        compileMatcher({ ...body, rules: [rule], exceptions: [e] }, compileOptions).match(obs, match) ===
        null,
    );
}

function whyNot(o: TargetObservation, matches: readonly TestMatch[]): string {
  if (matches.length > 0) {
    const lifted = matches.filter((m) => m.status === 'excepted').map((m) => m.rule.id);
    return `rule ${lifted.join(', ')} names it, but an exception lifts it here`;
  }
  const f = o.facts;
  switch (o.as) {
    case 'process':
      return `no rule names it: name "${f.name}", exe ${f.exe ?? '?'}, sha256 ${short(f.sha256)}, script package ${f.script_package ?? 'none'}, content markers ${markers(f)}`;
    case 'package':
      return `no rule bans npm package ${f.name}@${f.version ?? '?'}`;
    case 'path':
      return `no rule's path glob matches ${f.path}`;
  }
}

function short(v: unknown): string {
  return typeof v === 'string' ? `${v.slice(0, 12)}…` : 'unreadable';
}

function markers(f: Readonly<Record<string, unknown>>): string {
  if (f.markers_scan === 'not_needed') return 'not searched (no rule has any)';
  if (f.markers_scan === 'unreadable') return 'unreadable';
  const found = f.content_markers as readonly string[];
  return found.length === 0 ? 'none found' : found.join(', ');
}

const AS_LABEL: Record<Observation['kind'], string> = {
  process: 'as a program',
  package: 'as an npm package',
  path: 'as a path',
};

/** Text for people: one block per observation, ≤ 100 columns where the paths allow. */
export function formatPolicyTest(r: PolicyTestReport): string {
  const lines: string[] = [];
  if (r.policy) lines.push(`policy v${r.policy.version} (${r.policy.mode}) from ${r.policy.source}`);
  for (const res of r.results) {
    const label = AS_LABEL[res.as].padEnd(18);
    if (res.verdict) {
      const v = res.verdict;
      const act = v.would_block ? 'WOULD BLOCK (monitor)' : v.act.toUpperCase();
      lines.push(`${label}${act}  rule ${v.rule.id} (${v.rule.name})`);
      lines.push(...wrap(`because ${reasonText(v.reason)} ${v.detail}`, 18));
    } else {
      lines.push(`${label}ALLOWED`);
      lines.push(...wrap(`why not: ${res.why_not}`, 18));
    }
    for (const m of res.matches) {
      if (m.status === 'decides') continue;
      if (m.status === 'outranked')
        lines.push(
          `${' '.repeat(18)}also: rule ${m.rule.id} (${m.rule.action}) by ${reasonText(m.reason)}, outranked`,
        );
      else
        for (const e of m.exceptions)
          lines.push(`${' '.repeat(18)}excepted: rule ${m.rule.id} ${exceptionText(e)}`);
    }
    if (res.as === 'process') {
      const f = res.facts;
      lines.push(
        ...wrap(
          `seen as: name ${f.name}, user ${f.user ?? '?'}${Array.isArray(f.groups) && f.groups.length ? ` (${f.groups.join(',')})` : ''}, sha256 ${short(f.sha256)}`,
          18,
        ),
      );
    }
  }
  return lines.map(printable).join('\n');
}

function reasonText(reason: string): string {
  switch (reason) {
    case 'name':
      return 'its name is';
    case 'exe_path':
      return 'its path matches';
    case 'argv':
      return 'its command line matches';
    case 'script_package':
      return 'it runs a script of';
    case 'sha256':
      return 'its SHA-256 is';
    case 'content':
      return 'it contains the marker(s)';
    case 'npm_package':
      return 'it is the npm package';
    case 'path':
      return 'its path matches';
    default:
      return reason;
  }
}

function exceptionText(e: PolicyException): string {
  const who = [
    e.users?.length ? `users ${e.users.join(',')}` : '',
    e.groups?.length ? `groups ${e.groups.join(',')}` : '',
    e.hosts?.length ? `hosts ${e.hosts.join(',')}` : '',
    e.device_tags?.length ? `tags ${e.device_tags.join(',')}` : '',
  ].filter(Boolean);
  return `for ${who.join(' ') || 'everyone'} until ${e.expires_at}`;
}

/** The bits of the config a decision depends on; defaults when it cannot be read (not root, absent). */
function safeConfig(file: string): { deviceTags: string[]; homes: string[] } {
  try {
    const c = loadConfig({ file, required: false });
    return { deviceTags: [...c['device.tags']], homes: [...c['sensors.install.homes']] };
  } catch {
    return { deviceTags: [], homes: [] };
  }
}
