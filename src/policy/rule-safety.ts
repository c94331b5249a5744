/**
 * Owns the safety net under a signed policy: rules that would hit the machine itself are refused
 * (GUARD_POLICY_UNSAFE_RULE) even when validly signed. A typo such as `"names": ["node"]` or an
 * exe glob of `**` would otherwise kill init, sshd, every Node process — guardd included — on the
 * whole fleet within one refresh. The verifier and `guardctl policy lint` both use these checks.
 *
 * How it decides: each criterion is tried against probes of critical processes and files on all
 * three platforms (the same matching semantics as src/policy/matcher.ts: exact names, picomatch
 * globs with dot + nocase, argv regexes with the `u` flag on the space-joined argv). Regexes prone
 * to catastrophic backtracking (safe-regex2) are refused too: the matcher runs them on every launch.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import picomatch from 'picomatch';
import safeRegex from 'safe-regex2';
import { GuardError } from '../common/errors.js';
import { expandHome } from './matcher.js';
import type { PolicyIssue } from './policy-schema.js';
import type { PolicyBody, PolicyRule } from './policy-types.js';

/**
 * Process names no rule may name (compared case-insensitively, `.exe` stripped, as the matcher does
 * on macOS/Windows): the init system, remote access, the kernel's own threads, login and session
 * machinery, shells, the interpreters that run guardd and countless legitimate tools, and guardd.
 */
const PROTECTED_NAMES = new Set([
  // init, service managers, kernel
  'init',
  'systemd',
  'launchd',
  'kernel_task',
  'kthreadd',
  'system',
  'smss',
  'csrss',
  'wininit',
  'winlogon',
  'services',
  'lsass',
  'svchost',
  'explorer',
  'windowserver',
  'loginwindow',
  'dbus-daemon',
  'login',
  'sshd',
  'sshd-session',
  'cron',
  'crond',
  'containerd',
  'dockerd',
  'sudo',
  'su',
  // shells
  'sh',
  'bash',
  'dash',
  'zsh',
  'fish',
  'cmd',
  'powershell',
  'pwsh',
  // interpreters: banning one bans everything written in it (and guardd runs on node)
  'node',
  'nodejs',
  'python',
  'python3',
  'perl',
  'ruby',
  'java',
  'deno',
  'bun',
  // toolguard itself
  'guardd',
  'guardctl',
  'guard-collector',
  'toolguard',
]);

/** Kernel threads (Linux comm values): `kworker/0:1`, `ksoftirqd/3`, `rcu_sched`, … */
const KERNEL_THREAD_NAME =
  /^(?:kworker|ksoftirqd|kswapd|kcompactd|khugepaged|migration|rcu_|watchdog|jbd2|cpuhp|idle_inject|oom_reaper|writeback|kblockd|irq\/|kthread|kauditd|khungtaskd|kdevtmpfs|scsi_|ext4-|xfs)/i;

/** Names matched by prefix: systemd's many helpers (`systemd-journald`, `systemd-logind`, …). */
const PROTECTED_NAME_PREFIXES = ['systemd-', 'kworker'];

/** Home used to expand `~` in probes and globs. */
const PROBE_HOME = '/home/probe-user';

/** Executables (and scripts the matcher tests exe globs against) no exe glob may match. */
const CRITICAL_EXE_PATHS = [
  '/sbin/init',
  '/usr/sbin/init',
  '/lib/systemd/systemd',
  '/usr/lib/systemd/systemd',
  '/usr/lib/systemd/systemd-journald',
  '/usr/lib/systemd/systemd-logind',
  '/usr/lib/systemd/systemd-udevd',
  '/sbin/launchd',
  '/usr/sbin/sshd',
  '/usr/bin/sshd',
  '/usr/libexec/sshd-session',
  '/usr/lib/openssh/sshd-session',
  '/bin/sh',
  '/bin/bash',
  '/usr/bin/bash',
  '/bin/zsh',
  '/usr/bin/zsh',
  '/usr/bin/sudo',
  '/usr/bin/dbus-daemon',
  '/usr/sbin/cron',
  '/usr/bin/node',
  '/usr/local/bin/node',
  '/opt/homebrew/bin/node',
  '/opt/homebrew/Cellar/node/22.11.0/bin/node',
  `${PROBE_HOME}/.nvm/versions/node/v20.19.0/bin/node`,
  `${PROBE_HOME}/.volta/tools/image/node/20.19.0/bin/node`,
  `${PROBE_HOME}/.local/share/fnm/node-versions/v20.19.0/installation/bin/node`,
  `${PROBE_HOME}/.asdf/installs/nodejs/20.19.0/bin/node`,
  '/usr/bin/python3',
  '/usr/lib/node_modules/npm/bin/npm-cli.js',
  '/usr/lib/node_modules/toolguard/bin/guardd.js',
  '/usr/local/lib/node_modules/toolguard/bin/guardd.js',
  '/opt/toolguard/bin/guardd.js',
  '/usr/lib/toolguard/bin/guardd.js',
  '/System/Library/CoreServices/loginwindow.app/Contents/MacOS/loginwindow',
  '/System/Library/PrivateFrameworks/SkyLight.framework/Resources/WindowServer',
  '/usr/libexec/sshd-keygen-wrapper',
  'C:/Windows/System32/svchost.exe',
  'C:/Windows/System32/csrss.exe',
  'C:/Windows/System32/winlogon.exe',
  'C:/Windows/System32/lsass.exe',
  'C:/Windows/explorer.exe',
  'C:/Windows/System32/WindowsPowerShell/v1.0/powershell.exe',
  'C:/Program Files/nodejs/node.exe',
  'C:/Program Files/toolguard/bin/guardd.js',
];

/** Files and directories no path glob may match (quarantine would move them). */
const CRITICAL_PATHS = [
  '/',
  '/etc',
  '/etc/passwd',
  '/usr',
  '/usr/bin',
  '/usr/bin/node',
  '/usr/local/bin/node',
  '/usr/lib/node_modules/npm',
  '/usr/lib/node_modules/toolguard',
  '/usr/local/lib/node_modules/toolguard',
  '/var/lib/toolguard',
  '/sbin/init',
  '/usr/lib/systemd/systemd',
  '/home',
  PROBE_HOME,
  `${PROBE_HOME}/.bashrc`,
  `${PROBE_HOME}/.ssh`,
  `${PROBE_HOME}/.ssh/authorized_keys`,
  `${PROBE_HOME}/.config`,
  `${PROBE_HOME}/.local`,
  `${PROBE_HOME}/.local/bin`,
  `${PROBE_HOME}/.local/share`,
  `${PROBE_HOME}/.vscode`,
  `${PROBE_HOME}/.vscode/extensions`,
  `${PROBE_HOME}/.npm-global/lib/node_modules`,
  `${PROBE_HOME}/.nvm/versions/node/v20.19.0/bin/node`,
  '/Applications',
  '/Library/Application Support/toolguard',
  '/System/Library/CoreServices',
  'C:/',
  'C:/Windows',
  'C:/Windows/System32',
  'C:/Program Files',
  'C:/Program Files/nodejs/node.exe',
  'C:/Users',
  'C:/ProgramData/toolguard',
];

/** Joined argv of critical processes: an argv pattern matching one of these would kill it. */
const CRITICAL_ARGV = [
  '', // kernel threads have no argv
  '/sbin/init splash',
  '/lib/systemd/systemd --system --deserialize 31',
  '/usr/lib/systemd/systemd --user',
  '/usr/lib/systemd/systemd-journald',
  'sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups',
  'sshd: alice [priv]',
  '/usr/sbin/sshd -D',
  '/sbin/launchd',
  '-bash',
  '/bin/bash',
  '-zsh',
  '/usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile --systemd-activation',
  'node /usr/lib/node_modules/toolguard/bin/guardd.js',
  '/usr/bin/node /usr/local/lib/node_modules/toolguard/bin/guardd.js --config /etc/toolguard/config.json',
  'C:\\Windows\\system32\\svchost.exe -k netsvcs -p',
  'C:\\Windows\\Explorer.EXE',
];

/** npm packages no rule may quarantine or kill by script: toolguard itself and the package manager. */
const PROTECTED_PACKAGES = new Set(['toolguard', 'npm', 'corepack']);

let nodeExecSha256: string | null | undefined;

/** SHA-256 of the Node binary running guardd (computed once, lazily: a rule may not ban it by hash). */
function runningNodeSha256(): string | null {
  if (nodeExecSha256 === undefined) {
    try {
      nodeExecSha256 = createHash('sha256').update(readFileSync(process.execPath)).digest('hex');
    } catch {
      nodeExecSha256 = null;
    }
  }
  return nodeExecSha256;
}

/** Why a process name is protected, or null. */
export function protectedNameReason(name: string): string | null {
  const n = name.toLowerCase().replace(/\.exe$/, '');
  if (PROTECTED_NAMES.has(n)) return `"${name}" is a critical system process, a shell or an interpreter`;
  if (PROTECTED_NAME_PREFIXES.some((p) => n.startsWith(p)) || KERNEL_THREAD_NAME.test(n)) {
    return `"${name}" names a kernel thread or a systemd component`;
  }
  return null;
}

/** Why a path glob is too broad to watch or quarantine safely (no named directory before the first wildcard), or null. */
function pathBreadthReason(glob: string): string | null {
  const posix = glob.replace(/\\/g, '/');
  const parts = posix.split('/');
  const firstWild = parts.findIndex((p) => /[*?[\]{}()!+@]/.test(p));
  if (firstWild === -1) return null;
  // Literal segments before the first wildcard, not counting the root ("" / "~" / "C:").
  const literal = parts.slice(1, firstWild).filter((p) => p !== '').length;
  return literal >= 1
    ? null
    : `"${glob}" has a wildcard right under the root or home: name a directory first`;
}

/** Every safety problem of a schema-valid body (empty = safe). */
export function unsafeRuleIssues(body: PolicyBody): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  body.rules.forEach((rule, i) => {
    checkRule(rule, `$.rules[${i}]`, issues);
  });
  return issues;
}

function checkRule(rule: PolicyRule, at: string, issues: PolicyIssue[]): void {
  const p = rule.process ?? {};
  (p.names ?? []).forEach((name, j) => {
    const why = protectedNameReason(name);
    if (why)
      issues.push({ path: `${at}.process.names[${j}]`, message: `${why}; refusing to ban it by name` });
  });
  (p.exe_globs ?? []).forEach((glob, j) => {
    const hit = firstMatch(glob, CRITICAL_EXE_PATHS);
    if (hit)
      issues.push({
        path: `${at}.process.exe_globs[${j}]`,
        message: `would match the critical executable ${hit}`,
      });
    else if (firstMatch(glob, [process.execPath.replace(/\\/g, '/')])) {
      issues.push({
        path: `${at}.process.exe_globs[${j}]`,
        message: `would match the Node binary that runs guardd (${process.execPath})`,
      });
    }
  });
  (p.argv_patterns ?? []).forEach((src, j) => {
    const path = `${at}.process.argv_patterns[${j}]`;
    if (!safeRegex(src)) {
      issues.push({
        path,
        message: 'is prone to catastrophic backtracking (nested or overlapping repetition)',
      });
      return;
    }
    if (hasOverlappingRepeatedAlternation(src)) {
      issues.push({
        path,
        message:
          'is prone to catastrophic backtracking (repeated alternatives that can match the same text): make each alternative start with a different character, or use a character class',
      });
      return;
    }
    let re: RegExp;
    try {
      re = new RegExp(src, 'u');
    } catch {
      return; // reported by the semantic checks
    }
    const hit = CRITICAL_ARGV.find((argv) => re.test(argv));
    if (hit === '') issues.push({ path, message: 'matches the empty string, i.e. every kernel thread' });
    else if (hit !== undefined)
      issues.push({ path, message: `would match the critical command line "${hit}"` });
  });
  (p.script_packages ?? []).forEach((name, j) => {
    if (PROTECTED_PACKAGES.has(name)) {
      issues.push({ path: `${at}.process.script_packages[${j}]`, message: `"${name}" is protected` });
    }
  });
  if ((p.sha256 ?? []).length > 0) {
    const own = runningNodeSha256();
    (p.sha256 ?? []).forEach((h, j) => {
      if (own && h.toLowerCase() === own) {
        issues.push({
          path: `${at}.process.sha256[${j}]`,
          message: 'is the hash of the Node binary that runs guardd',
        });
      }
    });
  }
  (rule.packages ?? []).forEach((k, j) => {
    if (PROTECTED_PACKAGES.has(k.name)) {
      issues.push({ path: `${at}.packages[${j}].name`, message: `"${k.name}" is protected` });
    }
  });
  (rule.paths ?? []).forEach((glob, j) => {
    const path = `${at}.paths[${j}]`;
    const broad = pathBreadthReason(glob);
    if (broad) {
      issues.push({ path, message: broad });
      return;
    }
    const expanded = expandHome(glob, [PROBE_HOME]);
    const hit = expanded.map((g) => firstMatch(g, CRITICAL_PATHS)).find((h) => h !== null);
    if (hit) issues.push({ path, message: `would match the critical path ${hit}` });
  });
}

// ---- overlapping alternation -------------------------------------------------------------
//
// safe-regex2 measures star height only, so `(\w|\d)+$` or `(a|ab)*c` (height 1) pass, yet they
// backtrack exponentially: the first takes ~40 s on 29 digits and a "!". A small parser of the
// u-flag syntax finds every alternation inside a group repeated without a (small) upper bound and
// requires its alternatives to begin with distinct literal characters; anything it cannot tell
// (a class, an optional start, an empty alternative) counts as overlapping.

/** Repetition bounds at or above this count as unbounded (2^16 paths is still cheap). */
const UNBOUNDED_REPEAT_MIN = 16;

type RegexNode =
  | { readonly kind: 'char'; readonly ch: string }
  | { readonly kind: 'wide' }
  | { readonly kind: 'empty' }
  | { readonly kind: 'group'; readonly branches: RegexItem[][]; readonly zeroWidth: boolean };

interface RegexItem {
  readonly node: RegexNode;
  readonly min: number;
  readonly max: number;
}

class RegexScan {
  i = 0;
  constructor(readonly src: string) {}

  alternation(): RegexItem[][] {
    const branches = [this.sequence()];
    while (this.src[this.i] === '|') {
      this.i++;
      branches.push(this.sequence());
    }
    return branches;
  }

  private sequence(): RegexItem[] {
    const items: RegexItem[] = [];
    while (this.i < this.src.length && this.src[this.i] !== '|' && this.src[this.i] !== ')') {
      const node = this.atom();
      items.push({ node, ...this.quantifier() });
    }
    return items;
  }

  private atom(): RegexNode {
    const { src } = this;
    const c = src[this.i] as string;
    if (c === '(') {
      this.i++;
      let zeroWidth = false;
      if (src.startsWith('?:', this.i)) this.i += 2;
      else if (src.startsWith('?=', this.i) || src.startsWith('?!', this.i)) {
        this.i += 2;
        zeroWidth = true;
      } else if (src.startsWith('?<=', this.i) || src.startsWith('?<!', this.i)) {
        this.i += 3;
        zeroWidth = true;
      } else if (src.startsWith('?<', this.i)) {
        const end = src.indexOf('>', this.i);
        if (end < 0) throw new Error('unterminated group name');
        this.i = end + 1;
      }
      const branches = this.alternation();
      if (src[this.i] !== ')') throw new Error('unterminated group');
      this.i++;
      return { kind: 'group', branches, zeroWidth };
    }
    if (c === '[') {
      this.i++;
      while (this.i < src.length && src[this.i] !== ']') this.i += src[this.i] === '\\' ? 2 : 1;
      if (src[this.i] !== ']') throw new Error('unterminated class');
      this.i++;
      return { kind: 'wide' };
    }
    if (c === '\\') return this.escape();
    this.i++;
    if (c === '^' || c === '$') return { kind: 'empty' };
    if (c === '.') return { kind: 'wide' };
    const cp = src.codePointAt(this.i - 1) as number;
    if (cp > 0xffff) this.i++;
    return { kind: 'char', ch: String.fromCodePoint(cp) };
  }

  private escape(): RegexNode {
    const { src } = this;
    const e = src[this.i + 1];
    if (e === undefined) throw new Error('trailing backslash');
    this.i += 2;
    if (e === 'b' || e === 'B') return { kind: 'empty' };
    if ('dDwWsS'.includes(e) || /[1-9]/.test(e)) return { kind: 'wide' };
    if (e === 'p' || e === 'P' || e === 'k') {
      const close = e === 'k' ? '>' : '}';
      const end = src.indexOf(close, this.i);
      if (end < 0) throw new Error('unterminated escape');
      this.i = end + 1;
      return { kind: 'wide' };
    }
    const hex = (n: number): RegexNode => {
      const h = src.slice(this.i, this.i + n);
      if (!/^[0-9a-fA-F]+$/.test(h) || h.length !== n) throw new Error('bad hex escape');
      this.i += n;
      return { kind: 'char', ch: String.fromCodePoint(Number.parseInt(h, 16)) };
    };
    if (e === 'x') return hex(2);
    if (e === 'u') {
      if (src[this.i] !== '{') return hex(4);
      const end = src.indexOf('}', this.i);
      if (end < 0) throw new Error('unterminated escape');
      const cp = Number.parseInt(src.slice(this.i + 1, end), 16);
      this.i = end + 1;
      return { kind: 'char', ch: String.fromCodePoint(cp) };
    }
    if (e === 'c') {
      this.i++;
      return { kind: 'wide' };
    }
    const named: Record<string, string> = { n: '\n', t: '\t', r: '\r', f: '\f', v: '\v', '0': '\0' };
    return { kind: 'char', ch: named[e] ?? e };
  }

  private quantifier(): { min: number; max: number } {
    const { src } = this;
    let q: { min: number; max: number } = { min: 1, max: 1 };
    const c = src[this.i];
    if (c === '*') q = { min: 0, max: Infinity };
    else if (c === '+') q = { min: 1, max: Infinity };
    else if (c === '?') q = { min: 0, max: 1 };
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(this.i));
      if (!m) return q;
      const min = Number(m[1]);
      q = { min, max: m[2] === undefined ? min : m[3] ? Number(m[3]) : Infinity };
      this.i += m[0].length - 1;
    } else return q;
    this.i++;
    if (src[this.i] === '?') this.i++; // lazy: the same paths, explored in another order
    return q;
  }
}

/** Literal characters a sequence can start with; null when it cannot be told (or may be empty). */
function firstChars(seq: readonly RegexItem[]): Set<string> | null {
  for (const item of seq) {
    const n = item.node;
    if (n.kind === 'empty' || (n.kind === 'group' && n.zeroWidth)) continue;
    if (item.min === 0 || n.kind === 'wide') return null;
    if (n.kind === 'char') return new Set([n.ch]);
    const all = new Set<string>();
    for (const b of n.branches) {
      const f = firstChars(b);
      if (f === null) return null;
      for (const ch of f) all.add(ch);
    }
    return all;
  }
  return null;
}

function overlapping(branches: readonly RegexItem[][]): boolean {
  const seen = new Set<string>();
  for (const b of branches) {
    const f = firstChars(b);
    if (f === null) return true;
    for (const ch of f) {
      if (seen.has(ch)) return true;
      seen.add(ch);
    }
  }
  return false;
}

function repeatedAlternationIn(seq: readonly RegexItem[], repeated: boolean): boolean {
  for (const item of seq) {
    if (item.node.kind !== 'group') continue;
    const rep = repeated || item.max >= UNBOUNDED_REPEAT_MIN;
    if (rep && item.node.branches.length > 1 && overlapping(item.node.branches)) return true;
    if (item.node.branches.some((b) => repeatedAlternationIn(b, rep))) return true;
  }
  return false;
}

/**
 * True when `src` repeats (unboundedly) an alternation whose alternatives may match the same
 * text. A pattern this parser cannot read is left to the other checks (false).
 */
export function hasOverlappingRepeatedAlternation(src: string): boolean {
  let branches: RegexItem[][];
  try {
    const scan = new RegexScan(src);
    branches = scan.alternation();
    if (scan.i !== src.length) return false;
  } catch {
    return false;
  }
  return branches.some((b) => repeatedAlternationIn(b, false));
}

/**
 * Compiled probe globs by source. A policy update usually repeats most globs of the previous
 * version, so re-verifying it skips picomatch compilation (the dominant cost for large policies).
 * Bounded: cleared when it reaches GLOB_CACHE_MAX entries.
 */
const globCache = new Map<string, ((s: string) => boolean) | null>();
const GLOB_CACHE_MAX = 10_000;

/** The first candidate `glob` matches (dot + nocase: the matcher's broadest semantics), or null. */
function firstMatch(glob: string, candidates: readonly string[]): string | null {
  let isMatch = globCache.get(glob);
  if (isMatch === undefined) {
    try {
      isMatch = picomatch(glob.replace(/\\/g, '/'), { dot: true, nocase: true });
    } catch {
      isMatch = null; // reported by the semantic checks
    }
    if (globCache.size >= GLOB_CACHE_MAX) globCache.clear();
    globCache.set(glob, isMatch);
  }
  if (isMatch === null) return null;
  const test = isMatch;
  return candidates.find((c) => test(c)) ?? null;
}

/** Throws GUARD_POLICY_UNSAFE_RULE naming every unsafe criterion, or returns. */
export function assertSafePolicy(body: PolicyBody): void {
  const issues = unsafeRuleIssues(body);
  if (issues.length > 0) {
    const shown = issues.slice(0, 20).map((i) => `${i.path} ${i.message}`);
    throw new GuardError(
      'GUARD_POLICY_UNSAFE_RULE',
      `policy has unsafe rules: ${shown.join('; ')}${issues.length > 20 ? `; and ${issues.length - 20} more` : ''}`,
      { issues: issues.slice(0, 200) },
    );
  }
}
