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
