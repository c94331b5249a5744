/**
 * Owns the safety net under a signed policy: a rule that would kill, deny or quarantine what keeps
 * the machine (or guardd) alive is refused (GUARD_POLICY_UNSAFE_RULE) even when validly signed. A
 * typo such as `"names": ["node"]`, an exe glob of `**` or a path glob under /etc would otherwise
 * hit init, sshd, the shell, guardd itself on the whole fleet within one refresh. The verifier (at
 * apply time) and `guardctl policy lint` both use this module.
 *
 * How it decides — semantically, not from name lists: the policy is compiled with the real matcher
 * (src/policy/matcher.ts) and run against probe observations of critical programs and files:
 *  - this machine's: pid 1, every shell of /etc/shells and what /bin/sh resolves to, interpreters
 *    and package managers found on PATH and the system bin dirs (resolved to their real files, so
 *    `python3` is also probed as `python3.11` and /bin/sh as /usr/bin/dash), sshd and the display
 *    server when installed, guardd itself (process.execPath and its app dir), and the files of the
 *    state, config and install dirs, /etc, every user's home and its secrets;
 *  - generic ones for all three platforms (Debian/Fedora/macOS/Windows paths), so a policy linted
 *    on an admin's Mac is also checked against a Linux fleet.
 * A process probe carries the name, real exe path, argv and script package the process sensor
 * would report, and the SHA-256 of the real binary (hashed only when the policy has hash rules).
 * Path globs are also checked for reaching *into* a protected directory tree (`/etc/x/*`).
 *
 * Severity: a `block` rule hitting a probe is an error (refused by guardd, refused by `lint` and
 * `sign`): it would kill, deny or quarantine it. A `warn` or `audit` rule hitting one cannot hurt
 * the machine (it only notifies or records) but would fire on every launch: a lint warning, and
 * guardd applies it. Rules are judged alone: exceptions never make a rule safe.
 *
 * argv patterns need no backtracking check any more: the matcher runs them on RE2 (linear time), so
 * the star-height (safe-regex2) and overlapping-alternation heuristics this module used to apply
 * are gone; the pattern's size is bounded by the schema (policy-schema.ts).
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants as fsConstants,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  type Stats,
  statSync,
} from 'node:fs';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import picomatch from 'picomatch';
import { GuardError } from '../common/errors.js';
import { globTest } from '../common/glob-test.js';
import { currentPlatform, defaultPaths, type Platform } from '../common/platform-paths.js';
import type {
  Owner,
  PackageObservation,
  PathObservation,
  ProcessObservation,
} from '../sensors/observation.js';
import type { MarkerAutomaton } from './content-markers.js';
import { planRegionsSync } from './marker-regions.js';
import { compileMatcher, expandHome, type RuleHit } from './matcher.js';
import type { PolicyIssue } from './policy-schema.js';
import type { PolicyBody, PolicyRule } from './policy-types.js';

/** What the safety check needs to know about this device beyond what it can probe itself. */
export interface SafetyOptions {
  /**
   * Directories guardd owns on this device besides the platform defaults (the configured state
   * dir, its quarantine): nothing at, above or below them may be matched by a path glob.
   */
  readonly protectedDirs?: readonly string[];
  /**
   * Probe this machine's programs and files (default true). False keeps only the generic probes:
   * for tools that judge a policy for other machines only.
   */
  readonly probeMachine?: boolean;
}

/** A safety finding: an error refuses the policy; a warning is lint advice. */
export interface SafetyIssue extends PolicyIssue {
  readonly severity: 'error' | 'warning';
}

/** A critical process as the process sensor would report it. */
interface ProcessProbe {
  /** For messages: "the system shell /bin/sh (/usr/bin/dash)". */
  readonly what: string;
  readonly platform: Platform;
  readonly obs: ProcessObservation;
  /**
   * The real file behind `obs.exe` on this machine, hashed when the policy has sha256 rules and
   * scanned when it has content markers.
   */
  readonly file?: string;
}

/** A critical file or directory. */
interface PathProbe {
  readonly what: string;
  readonly platform: Platform;
  readonly path: string;
  /** True: everything below it is critical too (a glob may not reach into it). */
  readonly subtree: boolean;
}

interface PackageProbe {
  readonly what: string;
  readonly platform: Platform;
  readonly name: string;
}

interface Probes {
  readonly processes: readonly ProcessProbe[];
  readonly paths: readonly PathProbe[];
  readonly packages: readonly PackageProbe[];
  /** Homes used to expand `~` in the rules under test. */
  readonly homes: readonly string[];
  /**
   * Of the machine's homes, those holding a probe of their own beyond the probes every home gets
   * (a program on PATH, node or guardd's app dir, a protected dir inside it): see globHomes.
   */
  readonly occupiedHomes?: readonly string[];
}

/** A home no real user has: the generic probes of per-user files live here. */
const PROBE_HOME = '/home/probe-user';

const ROOT_OWNER: Owner = { uid: 0, user: 'root', groups: [], home: null };
const PLATFORMS: readonly Platform[] = ['linux', 'darwin', 'win32'];

function processProbe(
  platform: Platform,
  what: string,
  name: string,
  exe: string | null,
  argv: readonly string[],
  extra: { scriptPackage?: ProcessObservation['scriptPackage']; file?: string } = {},
): ProcessProbe {
  return {
    what,
    platform,
    file: extra.file,
    obs: {
      kind: 'process',
      pid: 1,
      ppid: 0,
      startTime: 0,
      name,
      exe,
      argv,
      owner: ROOT_OWNER,
      tty: null,
      scriptPackage: extra.scriptPackage ?? null,
    },
  };
}

const script = (name: string, root: string, file: string) => ({ name, version: null, root, script: file });

/**
 * Generic probes, one set per platform: where the critical programs and files live on common
 * installs of Debian/Ubuntu, Fedora, macOS and Windows, whichever machine runs the check.
 */
function genericProbes(): Probes {
  const L: Platform = 'linux';
  const D: Platform = 'darwin';
  const W: Platform = 'win32';
  const exe = (platform: Platform, path: string, what: string, argv: string[] = [path]) =>
    processProbe(platform, what, basename(path).slice(0, 15), path, argv);
  const kthread = (name: string) => processProbe(L, `the kernel thread ${name}`, name, null, []);
  const nodeScript = (
    platform: Platform,
    node: string,
    pkg: string,
    root: string,
    file: string,
    what: string,
  ) =>
    processProbe(platform, what, pkg === 'npm' ? 'npm' : 'node', node, [node, file], {
      scriptPackage: script(pkg, root, file),
    });
  const processes: ProcessProbe[] = [
    // Linux: init, session and remote access, shells, interpreters, guardd
    exe(L, '/sbin/init', 'init', ['/sbin/init', 'splash']),
    exe(L, '/usr/lib/systemd/systemd', 'systemd (init)', [
      '/lib/systemd/systemd',
      '--system',
      '--deserialize',
      '31',
    ]),
    exe(L, '/usr/lib/systemd/systemd-journald', 'systemd-journald'),
    exe(L, '/usr/lib/systemd/systemd-logind', 'systemd-logind'),
    exe(L, '/usr/lib/systemd/systemd-udevd', 'systemd-udevd'),
    exe(L, '/usr/sbin/sshd', 'sshd', ['sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups']),
    exe(L, '/usr/lib/openssh/sshd-session', 'sshd-session', ['sshd: alice [priv]']),
    exe(L, '/usr/bin/dbus-daemon', 'dbus-daemon', [
      '/usr/bin/dbus-daemon',
      '--system',
      '--address=systemd:',
      '--nofork',
    ]),
    exe(L, '/usr/sbin/cron', 'cron'),
    // Network, login, privilege and container daemons: a ban on them cuts the machine off.
    exe(L, '/usr/sbin/NetworkManager', 'NetworkManager', ['/usr/sbin/NetworkManager', '--no-daemon']),
    exe(L, '/usr/lib/systemd/systemd-resolved', 'systemd-resolved'),
    exe(L, '/usr/lib/systemd/systemd-networkd', 'systemd-networkd'),
    exe(L, '/usr/lib/systemd/systemd-timesyncd', 'systemd-timesyncd'),
    exe(L, '/usr/sbin/agetty', 'agetty', ['/sbin/agetty', '-o', '-p -- \\u', '--noclear', '-', 'linux']),
    exe(L, '/usr/lib/polkit-1/polkitd', 'polkitd', ['/usr/lib/polkit-1/polkitd', '--no-debug']),
    exe(L, '/usr/bin/dockerd', 'dockerd', ['/usr/bin/dockerd', '-H', 'fd://']),
    exe(L, '/usr/bin/containerd', 'containerd'),
    exe(L, '/usr/bin/ssh', 'ssh'),
    exe(L, '/usr/sbin/rsyslogd', 'rsyslogd'),
    exe(L, '/usr/sbin/wpa_supplicant', 'wpa_supplicant'),
    exe(L, '/usr/bin/sudo', 'sudo'),
    exe(L, '/usr/bin/su', 'su'),
    exe(L, '/usr/bin/login', 'login'),
    exe(L, '/usr/bin/env', 'env (runs every #!/usr/bin/env script)'),
    exe(L, '/usr/bin/dash', 'dash (Debian /bin/sh)', ['/bin/sh', '-c', 'true']),
    exe(L, '/usr/bin/bash', 'bash', ['-bash']),
    exe(L, '/usr/bin/zsh', 'zsh', ['-zsh']),
    exe(L, '/usr/bin/python3.11', 'python3', ['python3']),
    exe(L, '/usr/bin/python3.12', 'python3', ['python3']),
    exe(L, '/usr/bin/perl', 'perl'),
    exe(L, '/usr/bin/node', 'node'),
    exe(L, '/usr/local/bin/node', 'node'),
    exe(L, `${PROBE_HOME}/.nvm/versions/node/v20.19.0/bin/node`, 'node (nvm)'),
    exe(L, `${PROBE_HOME}/.volta/tools/image/node/20.19.0/bin/node`, 'node (volta)'),
    exe(L, `${PROBE_HOME}/.local/share/fnm/node-versions/v20.19.0/installation/bin/node`, 'node (fnm)'),
    exe(L, `${PROBE_HOME}/.asdf/installs/nodejs/20.19.0/bin/node`, 'node (asdf)'),
    exe(L, '/usr/bin/apt', 'apt'),
    exe(L, '/usr/bin/dpkg', 'dpkg'),
    exe(L, '/usr/bin/rpm', 'rpm'),
    exe(L, '/usr/bin/dnf', 'dnf'),
    exe(L, '/usr/lib/xorg/Xorg', 'the X server'),
    exe(L, '/usr/bin/Xwayland', 'Xwayland'),
    exe(L, '/usr/bin/gnome-shell', 'gnome-shell'),
    nodeScript(
      L,
      '/usr/bin/node',
      'npm',
      '/usr/lib/node_modules/npm',
      '/usr/lib/node_modules/npm/bin/npm-cli.js',
      'npm',
    ),
    nodeScript(
      L,
      '/usr/bin/node',
      'corepack',
      '/usr/lib/node_modules/corepack',
      '/usr/lib/node_modules/corepack/dist/corepack.js',
      'corepack',
    ),
    nodeScript(
      L,
      '/usr/bin/node',
      'toolguard',
      '/usr/lib/node_modules/toolguard',
      '/usr/lib/node_modules/toolguard/bin/guardd.js',
      'guardd',
    ),
    nodeScript(L, '/usr/bin/node', 'toolguard', '/opt/toolguard', '/opt/toolguard/bin/guardd.js', 'guardd'),
    processProbe(L, 'guardd', 'guardd', '/opt/toolguard/node/bin/node', [
      '/opt/toolguard/node/bin/node',
      '/opt/toolguard/bin/guardd.js',
      '--config',
      '/etc/toolguard/config.json',
    ]),
    kthread('kthreadd'),
    kthread('kworker/0:1'),
    kthread('ksoftirqd/0'),
    kthread('rcu_sched'),
    kthread('migration/0'),
    kthread('kswapd0'),
    // macOS
    exe(D, '/sbin/launchd', 'launchd (init)'),
    exe(D, '/System/Library/CoreServices/loginwindow.app/Contents/MacOS/loginwindow', 'loginwindow'),
    exe(D, '/System/Library/PrivateFrameworks/SkyLight.framework/Resources/WindowServer', 'WindowServer'),
    exe(D, '/usr/sbin/sshd', 'sshd'),
    exe(D, '/usr/libexec/sshd-keygen-wrapper', 'sshd-keygen-wrapper'),
    exe(D, '/bin/zsh', 'zsh', ['-zsh']),
    exe(D, '/bin/bash', 'bash'),
    exe(D, '/bin/sh', 'sh'),
    exe(D, '/usr/bin/env', 'env'),
    exe(D, '/usr/bin/sudo', 'sudo'),
    exe(D, '/usr/bin/python3', 'python3'),
    exe(D, '/opt/homebrew/bin/node', 'node (Homebrew)'),
    exe(D, '/opt/homebrew/Cellar/node/22.11.0/bin/node', 'node (Homebrew)'),
    exe(D, '/opt/homebrew/bin/brew', 'brew'),
    // Windows
    exe(W, 'C:/Windows/System32/svchost.exe', 'svchost', [
      'C:\\Windows\\system32\\svchost.exe',
      '-k',
      'netsvcs',
    ]),
    exe(W, 'C:/Windows/System32/csrss.exe', 'csrss'),
    exe(W, 'C:/Windows/System32/smss.exe', 'smss'),
    exe(W, 'C:/Windows/System32/wininit.exe', 'wininit'),
    exe(W, 'C:/Windows/System32/winlogon.exe', 'winlogon'),
    exe(W, 'C:/Windows/System32/lsass.exe', 'lsass'),
    exe(W, 'C:/Windows/System32/services.exe', 'services'),
    exe(W, 'C:/Windows/explorer.exe', 'explorer', ['C:\\Windows\\Explorer.EXE']),
    exe(W, 'C:/Windows/System32/cmd.exe', 'cmd'),
    exe(W, 'C:/Windows/System32/WindowsPowerShell/v1.0/powershell.exe', 'powershell'),
    exe(W, 'C:/Program Files/PowerShell/7/pwsh.exe', 'pwsh'),
    exe(W, 'C:/Program Files/nodejs/node.exe', 'node'),
    nodeScript(
      W,
      'C:/Program Files/nodejs/node.exe',
      'toolguard',
      'C:/Program Files/toolguard',
      'C:/Program Files/toolguard/bin/guardd.js',
      'guardd',
    ),
  ];
  // Kernel threads: the system's "System" process on Windows too.
  processes.push(processProbe(W, 'the System process', 'System', null, []));

  const home = (platform: Platform, h: string): PathProbe[] => [
    { what: 'a home directory', platform, path: h, subtree: false },
    ...['.ssh', '.gnupg', '.aws', '.kube', '.docker', '.password-store'].map((d) => ({
      what: `a user's ${d} (secrets)`,
      platform,
      path: `${h}/${d}`,
      subtree: true,
    })),
    ...[
      '.bashrc',
      '.profile',
      '.bash_profile',
      '.zshrc',
      '.config',
      '.local',
      '.local/bin',
      '.local/share',
      '.npm-global/lib/node_modules',
      '.vscode',
      '.vscode/extensions',
      '.nvm/versions/node/v20.19.0/bin/node',
    ].map((f) => ({ what: `a user's ${f}`, platform, path: `${h}/${f}`, subtree: false })),
  ];
  const tree = (platform: Platform, path: string, what: string): PathProbe => ({
    what,
    platform,
    path,
    subtree: true,
  });
  const point = (platform: Platform, path: string, what: string): PathProbe => ({
    what,
    platform,
    path,
    subtree: false,
  });
  const paths: PathProbe[] = [
    tree(L, '/etc', 'the system configuration /etc'),
    tree(L, '/boot', 'the boot files'),
    tree(L, '/usr/bin', 'the system programs'),
    tree(L, '/usr/sbin', 'the system programs'),
    tree(L, '/usr/lib/systemd', 'systemd'),
    ...SYSTEM_STATE_TREES.map((d) => tree(L, d, `the system state ${d}`)),
    tree(L, '/var/lib/toolguard', "guardd's state dir"),
    tree(L, '/etc/toolguard', "guardd's config dir"),
    tree(L, '/opt/toolguard', "guardd's install dir"),
    tree(L, '/usr/lib/node_modules/toolguard', "guardd's install dir"),
    tree(L, '/usr/local/lib/node_modules/toolguard', "guardd's install dir"),
    tree(L, '/usr/lib/node_modules/npm', 'npm'),
    tree(L, '/root/.ssh', "root's .ssh"),
    point(L, '/root', "root's home"),
    point(L, '/home', 'the homes'),
    point(L, '/usr/local/bin/node', 'node'),
    ...home(L, PROBE_HOME),
    tree(D, '/System', 'the operating system'),
    tree(D, '/private/etc', 'the system configuration'),
    tree(D, '/Library/Application Support/toolguard', "guardd's state dir"),
    point(D, '/Applications', 'the applications'),
    point(D, '/Users', 'the homes'),
    tree(W, 'C:/Windows', 'Windows'),
    tree(W, 'C:/ProgramData/toolguard', "guardd's state dir"),
    tree(W, 'C:/Program Files/toolguard', "guardd's install dir"),
    point(W, 'C:/Program Files/nodejs/node.exe', 'node'),
    point(W, 'C:/Users', 'the homes'),
  ];
  const packages: PackageProbe[] = PLATFORMS.flatMap((platform) =>
    ['toolguard', 'npm', 'corepack'].map((name) => ({ what: `the npm package ${name}`, platform, name })),
  );
  return { processes, paths, packages, homes: [PROBE_HOME] };
}

// ---- this machine ---------------------------------------------------------------------------

/**
 * Commands whose programs are critical wherever they are installed: shells, launchers, remote and
 * session access, init and service managers, interpreters (banning one bans everything written in
 * it; guardd runs on node), package managers, display servers, guardd.
 */
const CRITICAL_COMMAND =
  /^(?:sh|bash|dash|zsh|ksh|mksh|fish|tcsh|csh|rbash|busybox|env|sudo|su|doas|pkexec|login|sshd|ssh-agent|init|systemd|systemctl|dbus-daemon|dbus-broker|cron|crond|python[0-9.]*|node|nodejs|perl[0-9.]*|ruby[0-9.]*|php[0-9.]*|java|deno|bun|lua[0-9.]*|tclsh[0-9.]*|npm|npx|corepack|yarn|pnpm|apt|apt-get|dpkg|rpm|dnf|yum|zypper|pacman|apk|snap|flatpak|brew|pip[0-9.]*|Xorg|Xwayland|gnome-shell|kwin_wayland|kwin_x11|sway|gdm3?|lightdm|sddm|guardd|guardctl)$/;

/** System program dirs probed whatever PATH says (guardd runs with a service manager's PATH). */
const SYSTEM_BIN_DIRS = ['/bin', '/sbin', '/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin'];

/** Programs outside the bin dirs, probed when installed. */
const SYSTEM_DAEMONS = [
  '/usr/lib/systemd/systemd',
  '/lib/systemd/systemd',
  '/usr/lib/systemd/systemd-journald',
  '/usr/lib/systemd/systemd-logind',
  '/usr/lib/systemd/systemd-udevd',
  '/usr/lib/openssh/sshd-session',
  '/usr/libexec/openssh/sshd-session',
  '/usr/lib/xorg/Xorg',
  '/usr/libexec/Xorg',
  '/usr/lib/gdm3/gdm-x-session',
  '/usr/libexec/gdm-x-session',
];

/**
 * System state trees (Linux): the package databases (/var/lib/dpkg, apt, rpm …), logs, caches,
 * spools, runtime sockets (/run: dbus, systemd, sshd's pid file) and shared data (/usr/share). All
 * of /var/lib is protected, not a list of package managers' dirs: every system service keeps its
 * state there (docker, NetworkManager, polkit …), and the tools a policy bans install into homes,
 * /opt or the global node_modules, never into /var/lib. A policy that must reach a tool's state
 * there names it by process (names, hashes, exe globs) instead.
 */
const SYSTEM_STATE_TREES = [
  '/run',
  '/var/lib',
  '/var/log',
  '/var/cache',
  '/var/spool',
  '/var/backups',
  '/var/mail',
  '/usr/share',
];

/**
 * Directory aliases every install has (a link, whatever this machine's file system says): a glob
 * written under the alias reaches the target, so it is also checked in the target's form.
 */
const DIR_ALIASES: readonly (readonly [string, string])[] = [
  ['/var/run', '/run'],
  ['/var/lock', '/run/lock'],
  ['/etc', '/private/etc'], // macOS
  ['/var', '/private/var'], // macOS
  ['/tmp', '/private/tmp'], // macOS
];

/** A bin dir with more entries than this is not read further (a hostile PATH entry cannot stall us). */
const MAX_DIR_ENTRIES = 20_000;

/**
 * Machine probes are rebuilt at most this often (5 min): reading the bin dirs costs a few ms, and a
 * policy refresh (hourly) or a lint run then sees programs installed since.
 */
const MACHINE_PROBE_TTL_MS = 5 * 60 * 1000;

/** Entries of `/etc/passwd`-style homes that are not user homes. */
const NOT_A_HOME = new Set(['/', '/nonexistent', '/dev/null', '/bin', '/sbin', '/usr/sbin', '/var/empty']);

function tryRealpath(p: string): string | null {
  try {
    return realpathSync(p);
  } catch {
    return null;
  }
}

function isRegularFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The npm package a script path lies in (`…/node_modules/@scope/name/…`), or null. */
function scriptPackageOf(real: string): ProcessObservation['scriptPackage'] {
  const m = /^(.*\/node_modules\/(@[^/]+\/[^/]+|[^/]+))\//.exec(real.replace(/\\/g, '/'));
  if (!m?.[1] || !m[2]) return null;
  return script(m[2], m[1], real);
}

/** The app root of this toolguard install (holds package.json and bin/guardd.js): dist/ or src/ is one level below. */
function appRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** Below this uid a process runs as the system (UID_MIN of /etc/login.defs; 1000 when absent). */
function systemUidLimit(): number {
  try {
    const m = /^\s*UID_MIN\s+(\d+)/m.exec(readSmallFile('/etc/login.defs') ?? '');
    if (m?.[1]) return Number(m[1]);
  } catch {
    // default below
  }
  return 1000;
}

/** Processes read from /proc at most (a machine runs a few hundred; bounds the check's cost). */
const MAX_PROC_ENTRIES = 4096;
/** systemd unit files read at most, and bytes read of each: real units are < 4 KiB. */
const MAX_UNIT_FILES = 2000;
const MAX_UNIT_BYTES = 64 * 1024;
/** Command line bytes kept per running-process probe (argv patterns are tested on it). */
const MAX_PROBE_CMDLINE_BYTES = 4096;

/**
 * A small regular file's text, or null: opened non-blocking and checked on the descriptor (a FIFO
 * or device planted under the path cannot stall the check), read up to MAX_UNIT_BYTES.
 */
function readSmallFile(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch {
    return null;
  }
  try {
    if (!fstatSync(fd).isFile()) return null;
    const buf = Buffer.allocUnsafe(MAX_UNIT_BYTES);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/**
 * Every process running under a system uid (below UID_MIN; root only for daemons: isRootDaemon) as
 * the process sensor reports it: comm, real exe, argv. What runs as the system on this machine is critical whatever its name (its
 * network manager, resolver, getty, container daemon): found by looking, not from a list. Their
 * executables also go to `addProgram` (path probes, hashes). Kernel threads have no exe.
 */
function runningSystemProcesses(
  platform: Platform,
  addProgram: (path: string, what: string) => void,
): ProcessProbe[] {
  const out: ProcessProbe[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return out;
  }
  const limit = systemUidLimit();
  const seen = new Set<string>();
  for (const pid of pids.slice(0, MAX_PROC_ENTRIES)) {
    const status = readSmallProcFile(`/proc/${pid}/status`);
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status ?? '')?.[1] ?? Number.NaN);
    if (!Number.isFinite(uid) || uid >= limit) continue;
    if (uid === 0 && !isRootDaemon(pid, status ?? '')) continue;
    const comm = (readSmallProcFile(`/proc/${pid}/comm`) ?? '').replace(/\n$/, '');
    if (!comm) continue;
    let exe: string | null = null;
    try {
      exe = readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
    } catch {
      exe = null; // kernel thread, or gone
    }
    const raw = readSmallProcFile(`/proc/${pid}/cmdline`) ?? '';
    const argv = raw.slice(0, MAX_PROBE_CMDLINE_BYTES).split('\0');
    if (argv.at(-1) === '') argv.pop();
    const key = `${comm}\0${exe}\0${argv.join('\0')}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const real = exe ? (tryRealpath(exe) ?? exe) : null;
    const what = `the system process ${comm} (pid ${pid}, uid ${uid}${real ? `, ${real}` : ''})`;
    // The program only (argv0): the rest of a daemon's command line is its configuration, and an
    // argv pattern banning a flag of a user tool must not be refused because a daemon shares it.
    out.push(processProbe(platform, what, comm, real, argv.slice(0, 1), real ? { file: real } : {}));
    if (real) addProgram(real, 'the program of a system process');
    const argv0 = argv[0];
    if (argv0?.startsWith('/') && argv0 !== real) addProgram(argv0, 'the program of a system process');
  }
  return out;
}

/**
 * Whether a root process is part of the system rather than something an admin runs by hand: a
 * kernel thread or a child of init (ppid 0, 1, 2) or in a systemd service's cgroup, and not in a
 * user session's (user.slice). `sudo claude` is root too: were it a probe, a user could make the
 * fleet's ban on it refused on their machine by running it under sudo.
 */
function isRootDaemon(pid: string, status: string): boolean {
  const cgroup = readSmallProcFile(`/proc/${pid}/cgroup`) ?? '';
  if (cgroup.includes('/user.slice')) return false;
  const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN);
  return ppid <= 2 || cgroup.includes('/system.slice/');
}

/** A /proc file's text (procfs reports size 0, so no size check), or null. */
function readSmallProcFile(path: string): string | null {
  try {
    return readFileSync(path, 'latin1').slice(0, MAX_PROBE_CMDLINE_BYTES);
  } catch {
    return null;
  }
}

/**
 * The ExecStart programs of enabled systemd units: the units linked from /etc/systemd/system's
 * *.wants dirs (what starts at boot), read through the link. Bounded by MAX_UNIT_FILES and
 * MAX_UNIT_BYTES; unreadable or odd files are skipped.
 */
function enabledUnitPrograms(): string[] {
  const out = new Set<string>();
  let wants: string[];
  try {
    wants = readdirSync('/etc/systemd/system').filter((e) => e.endsWith('.wants'));
  } catch {
    return [];
  }
  let budget = MAX_UNIT_FILES;
  for (const w of wants) {
    let units: string[];
    try {
      units = readdirSync(join('/etc/systemd/system', w)).filter((u) => u.endsWith('.service'));
    } catch {
      continue;
    }
    for (const u of units) {
      if (budget-- <= 0) return [...out];
      const text = readSmallFile(join('/etc/systemd/system', w, u));
      if (text === null) continue;
      for (const m of text.matchAll(/^\s*Exec(?:Start|StartPre)\s*=\s*(.*)$/gm)) {
        // Prefixes: - (ignore failure), @ (argv0 follows), : + ! !! (privileges).
        const cmd = (m[1] ?? '').replace(/^[-@:+!]+/, '').trim();
        const prog = cmd.split(/\s+/)[0];
        if (prog?.startsWith('/')) out.add(prog);
      }
    }
  }
  return [...out];
}

let machineCache: { key: string; at: number; probes: Probes } | null = null;

/** Forgets the cached machine probes: the next check probes again (after starting a daemon). */
export function forgetMachineProbes(): void {
  machineCache = null;
}

/** Probes of this machine (see the module comment), cached for MACHINE_PROBE_TTL_MS. */
function machineProbes(protectedDirs: readonly string[]): Probes {
  const key = JSON.stringify([protectedDirs, process.env.PATH ?? '']);
  const now = Date.now();
  if (machineCache && machineCache.key === key && now - machineCache.at < MACHINE_PROBE_TTL_MS) {
    return machineCache.probes;
  }
  const probes = buildMachineProbes(protectedDirs);
  machineCache = { key, at: now, probes };
  return probes;
}

function buildMachineProbes(protectedDirs: readonly string[]): Probes {
  const platform = currentPlatform();
  const processes: ProcessProbe[] = [];
  const paths: PathProbe[] = [];
  const seen = new Set<string>();
  const nodeReal = tryRealpath(process.execPath) ?? process.execPath;

  /** A program found at `path` (a link or the file), as the sensor reports it once it runs. */
  const addProgram = (path: string, what: string): void => {
    const real = tryRealpath(path);
    if (real === null || !isRegularFile(real)) return;
    const k = `${path}\0${real}`;
    if (seen.has(k)) return;
    seen.add(k);
    const name = basename(path).slice(0, 15); // comm: the name the program was executed by
    const desc = real === path ? `${what} ${path}` : `${what} ${path} (${real})`;
    const pkg = scriptPackageOf(real);
    if (pkg) {
      // A node script (npm, corepack …): node runs it and names the process after the command.
      processes.push(
        processProbe(platform, desc, name, nodeReal, [nodeReal, path], { scriptPackage: pkg, file: real }),
      );
    } else {
      processes.push(processProbe(platform, desc, name, real, [path], { file: real }));
    }
    paths.push({ what: desc, platform, path: real, subtree: false });
    if (real !== path) paths.push({ what: desc, platform, path, subtree: false });
  };

  if (platform !== 'win32') {
    // pid 1 (readable by root; elsewhere its name at least).
    let initExe: string | null = null;
    try {
      initExe = readlinkSync('/proc/1/exe');
    } catch {
      initExe = null;
    }
    let initComm = '';
    try {
      initComm = readFileSync('/proc/1/comm', 'utf8').trim();
    } catch {
      initComm = '';
    }
    if (initExe) addProgram(initExe, 'init (pid 1)');
    if (initComm && !initExe)
      processes.push(processProbe(platform, `init (pid 1) ${initComm}`, initComm, null, []));

    addProgram('/bin/sh', 'the system shell');
    try {
      for (const line of readFileSync('/etc/shells', 'utf8').split('\n')) {
        const s = line.trim();
        if (s.startsWith('/')) addProgram(s, 'the login shell');
      }
    } catch {
      // no /etc/shells: the bin dirs below still find the shells
    }
    const dirs = [...new Set([...(process.env.PATH ?? '').split(delimiter), ...SYSTEM_BIN_DIRS])];
    for (const dir of dirs) {
      if (!dir.startsWith('/')) continue;
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch {
        continue;
      }
      for (const e of entries.slice(0, MAX_DIR_ENTRIES)) {
        if (CRITICAL_COMMAND.test(e)) addProgram(join(dir, e), 'the critical program');
      }
    }
    for (const d of SYSTEM_DAEMONS) addProgram(d, 'the system daemon');
    processes.push(...runningSystemProcesses(platform, addProgram));
    for (const exec of enabledUnitPrograms()) addProgram(exec, 'the program of an enabled systemd unit');
  }

  // guardd itself: the node binary running it and its app dir.
  const root = appRoot();
  const guarddScript = join(root, 'bin', 'guardd.js');
  let pkgName = 'toolguard';
  try {
    pkgName =
      (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name?: string }).name ?? pkgName;
  } catch {
    // keep the default name
  }
  processes.push(
    processProbe(
      platform,
      `guardd (${nodeReal} ${guarddScript})`,
      'node',
      nodeReal,
      [nodeReal, guarddScript],
      {
        scriptPackage: script(pkgName, root, guarddScript),
        file: nodeReal,
      },
    ),
    processProbe(platform, 'guardd', 'guardd', nodeReal, ['guardd'], { file: nodeReal }),
  );
  paths.push({
    what: `the node binary running guardd (${nodeReal})`,
    platform,
    path: nodeReal,
    subtree: false,
  });
  paths.push({ what: `guardd's app dir ${root}`, platform, path: root, subtree: true });

  const defaults = defaultPaths(platform);
  for (const d of [
    defaults.stateDir,
    dirname(defaults.configFile),
    defaults.socketDir,
    '/opt/toolguard',
    ...protectedDirs,
  ]) {
    paths.push({ what: `guardd's directory ${d}`, platform, path: resolve(d), subtree: true });
    const real = tryRealpath(d);
    if (real && real !== resolve(d))
      paths.push({ what: `guardd's directory ${d}`, platform, path: real, subtree: true });
  }
  if (platform !== 'win32') {
    for (const d of [
      '/etc',
      '/boot',
      '/bin',
      '/sbin',
      '/lib',
      '/lib64',
      '/usr/bin',
      '/usr/sbin',
      '/usr/lib',
      '/usr/libexec',
      '/proc',
      '/sys',
      '/dev',
      ...SYSTEM_STATE_TREES,
    ]) {
      paths.push({ what: `the system directory ${d}`, platform, path: d, subtree: true });
    }
  }

  // Where every probe so far lies: a home holding one is expanded for by itself (globHomes).
  const placed = paths.map((p) => p.path);
  // Homes: root's and every user's, with their secrets. (`~` rules are legitimate: they name
  // things inside homes; what may not be hit is a home itself or what keeps a user able to log in.)
  const homes = new Set<string>();
  if (platform !== 'win32') {
    homes.add('/root');
    try {
      for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
        const f = line.split(':');
        const uid = Number(f[2]);
        const h = f[5];
        if (h?.startsWith('/') && !NOT_A_HOME.has(h) && (uid === 0 || uid >= 1000)) homes.add(h);
      }
    } catch {
      // no passwd: /home below still lists them
    }
    for (const base of ['/home', '/Users']) {
      try {
        for (const e of readdirSync(base).slice(0, MAX_DIR_ENTRIES)) homes.add(join(base, e));
      } catch {
        // not on this platform
      }
    }
  }
  for (const h of homes) {
    paths.push({ what: `the home ${h}`, platform, path: h, subtree: false });
    for (const d of ['.ssh', '.gnupg', '.aws', '.kube', '.password-store']) {
      paths.push({ what: `${h}/${d} (secrets)`, platform, path: `${h}/${d}`, subtree: true });
    }
    for (const f of [
      '.bashrc',
      '.profile',
      '.bash_profile',
      '.zshrc',
      '.config',
      '.local',
      '.local/bin',
      '.local/share',
    ]) {
      paths.push({ what: `${h}/${f}`, platform, path: `${h}/${f}`, subtree: false });
    }
  }
  const packages: PackageProbe[] = [...new Set([pkgName, 'npm', 'corepack'])].map((name) => ({
    what: `the npm package ${name}`,
    platform,
    name,
  }));
  const occupiedHomes = [...homes].filter((h) => {
    const home = h.replace(/\/+$/, '');
    return placed.some((p) => p === home || p.startsWith(`${home}/`));
  });
  return { processes, paths, packages, homes: [...homes], occupiedHomes };
}

// ---- hashes ---------------------------------------------------------------------------------

/** Probe binaries larger than this are not hashed (bytes): node is ~100 MiB, the largest we probe. */
const MAX_PROBE_HASH_BYTES = 256 * 1024 * 1024;
const HASH_CHUNK_BYTES = 1024 * 1024;

/** SHA-256 by real path + identity (dev, inode, size, mtime): each binary is read once per change. */
const hashCache = new Map<string, string | null>();

/**
 * Runs `read` on a probe's real binary opened non-blocking and checked on the descriptor (a
 * regular file), so a FIFO or a swapped file cannot stall the check; null when unreadable, not a
 * regular file, or `read` throws.
 */
function readProbe<T>(file: string, read: (fd: number, st: Stats) => T | null): T | null {
  let fd: number;
  try {
    fd = openSync(file, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch {
    return null;
  }
  try {
    const st = fstatSync(fd);
    return st.isFile() ? read(fd, st) : null;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** SHA-256 of a probe's real binary, or null (unreadable, not a regular file, too large). */
function probeSha256(file: string): string | null {
  return readProbe(file, (fd, st) => {
    if (st.size > MAX_PROBE_HASH_BYTES) return null;
    const key = `${file}\0${st.dev}\0${st.ino}\0${st.size}\0${st.mtimeMs}`;
    const cached = hashCache.get(key);
    if (cached !== undefined) return cached;
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
    const hex = h.digest('hex');
    if (hashCache.size >= 1024) hashCache.clear();
    hashCache.set(key, hex);
    return hex;
  });
}

/**
 * Content markers found in a probe's real binary (the same regions the process sensor scans:
 * marker-regions.ts), or null when unreadable. Cached per file identity and marker list, so a
 * policy re-verified with the same markers costs one fstat per probe.
 */
function probeMarkers(file: string, automaton: MarkerAutomaton): string[] | null {
  return readProbe(file, (fd, st) => {
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}|${automaton.generation}`;
    const cached = markerCache.get(key);
    if (cached !== undefined) return cached;
    const read = (pos: number, len: number): Buffer => {
      const b = Buffer.alloc(len);
      let total = 0;
      while (total < len) {
        const n = readSync(fd, b, total, len - total, pos + total);
        if (n <= 0) break;
        total += n;
      }
      return b.subarray(0, total);
    };
    const state = automaton.newState();
    const buf = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
    for (const region of planRegionsSync(read, st.size)) {
      automaton.restart(state);
      for (let pos = region.start; pos < region.end; ) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, region.end - pos), pos);
        if (n <= 0) break;
        pos += n;
        automaton.feed(state, buf.subarray(0, n));
      }
    }
    const found = automaton.foundKeys(state);
    if (markerCache.size >= 1024) markerCache.clear();
    markerCache.set(key, found);
    return found;
  });
}

const markerCache = new Map<string, string[]>();

// ---- checks ---------------------------------------------------------------------------------

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

/** `p` with its longest existing prefix replaced by that prefix's real path (or `p` unchanged). */
function realpathOfExisting(p: string): string {
  const parts = p.split('/');
  for (let n = parts.length; n > 1; n--) {
    const head = parts.slice(0, n).join('/') || '/';
    const real = tryRealpath(head);
    if (real !== null) {
      const rest = parts.slice(n).join('/');
      return rest ? `${real.replace(/\/+$/, '')}/${rest}` : real;
    }
  }
  return p;
}

/**
 * The forms of a path glob to check: as written, with a known directory alias replaced by its
 * target (DIR_ALIASES: `/var/run/**` is `/run/**`), and (when `machine`) with the literal base (the
 * part before the first wildcard) resolved as far as it exists on this machine, so a link to a
 * protected tree reaches it under its real name.
 */
function globForms(glob: string, machine: boolean): string[] {
  const g = glob.replace(/\\/g, '/');
  const forms = new Set([glob]);
  for (const [alias, target] of DIR_ALIASES) {
    if (g === alias || g.startsWith(`${alias}/`)) forms.add(target + g.slice(alias.length));
  }
  if (machine && g.startsWith('/')) {
    const scan = picomatch.scan(g);
    const base = scan.isGlob ? scan.base.replace(/\/+$/, '') || '/' : g;
    const real = realpathOfExisting(base);
    if (real !== base) forms.add(real + g.slice(base.length));
  }
  return [...forms];
}

/** Ancestors of an absolute posix path, nearest first, down to (not including) the root. */
function ancestors(p: string): string[] {
  const out: string[] = [];
  let cur = p.replace(/\/+$/, '');
  for (;;) {
    const i = cur.lastIndexOf('/');
    if (i <= 0 || (i === 2 && /^[A-Za-z]:/.test(cur))) break;
    cur = cur.slice(0, i);
    out.push(cur);
  }
  return out;
}

/**
 * The first of `trees` that `glob` can match something strictly below, or undefined: each of the
 * tree's segments is matched by the glob's segment at the same depth (or a `**` is reached) and
 * the glob goes deeper. Globs whose braces or extglobs span a `/` are judged by their literal base
 * instead (conservative).
 */
function treeReachedBy<T extends { readonly path: string }>(
  glob: string,
  trees: readonly T[],
  nocase: boolean,
): T | undefined {
  const g = glob.replace(/\\/g, '/');
  const norm = (x: string) => (nocase ? x.toLowerCase() : x);
  if (/[{(][^})]*\//.test(g)) {
    const base = norm(picomatch.scan(g).base.replace(/\/+$/, ''));
    return trees.find((t) => {
      const d = norm(t.path.replace(/\\/g, '/').replace(/\/+$/, ''));
      return base === d || base.startsWith(`${d}/`) || d.startsWith(`${base}/`);
    });
  }
  const gs = g.split('/');
  return trees.find((t) => {
    const ds = t.path.replace(/\\/g, '/').replace(/\/+$/, '').split('/');
    for (let i = 0; i < ds.length; i++) {
      const seg = gs[i];
      const want = ds[i] as string;
      if (seg === undefined) return false;
      if (seg === '**') return true;
      if (seg === want || (nocase && seg.toLowerCase() === want.toLowerCase())) continue;
      if (seg === '' || want === '') return false; // a root or drive the other does not have
      const test = segmentMatcher(seg, nocase);
      if (test === null) return true; // unreadable segment: assume the worst
      if (!test(want)) return false;
    }
    return gs.length > ds.length;
  });
}

/**
 * Compiled one-segment globs by (nocase, segment): the same few segments recur across rules.
 * Emptied at the end of each ruleSafetyIssues call.
 */
const segmentCache = new Map<string, ((s: string) => boolean) | null>();

function segmentMatcher(seg: string, nocase: boolean): ((s: string) => boolean) | null {
  const key = `${nocase ? 'i' : 's'}${seg}`;
  let test = segmentCache.get(key);
  if (test === undefined) {
    try {
      test = globTest(seg, { nocase });
    } catch {
      test = null;
    }
    if (segmentCache.size >= 10_000) segmentCache.clear();
    segmentCache.set(key, test);
  }
  return test;
}

/**
 * The homes `~` is expanded to in the check: the generic probe home, one of this machine's, and
 * every machine home in `occupied` (holding a probe of its own). Every machine home gets the same
 * probes (itself, its secrets and start-up files: machineProbes), and a `~/…` glob only reaches
 * paths below its own home (the paths sensors report have no `..`), so a `~` rule hits some home's
 * probe exactly when it hits the one kept — except a probe only one home holds: a program on PATH,
 * the node running guardd or its app dir inside a user's home (`~/.nvm/**` would quarantine the
 * node of a guardd started from a user's nvm; found in review: kept to the first home, `/root`,
 * the check let it through). Expanding every `~` glob for every home made the check's cost grow
 * with the number of accounts (the protected-tree pass below tests each expansion against each
 * home's trees: 1,000 rules × 2 globs × 100 homes × their trees). Globs that name a home by its
 * path (`/home/alice/.ssh/*`) still meet every home's probes. When one home is inside another
 * (`/srv` and `/srv/alice`), a `~` glob of the outer one reaches the inner one's files: then every
 * home is kept.
 */
export function globHomes(
  generic: readonly string[],
  machine: readonly string[],
  occupied: readonly string[] = [],
): string[] {
  const all = new Set(machine.map((h) => h.replace(/\/+$/, '') || '/'));
  const nested = [...all].some((h) => {
    for (let a = dirname(h); ; a = dirname(a)) {
      if (all.has(a)) return true;
      if (dirname(a) === a) return false;
    }
  });
  const kept = nested ? machine : [...machine.slice(0, 1), ...occupied];
  return [...new Set([...generic, ...kept])];
}

/** Which criterion of `rule` produced `hit`, as a JSON path below `at`. */
function criterionPath(
  rule: PolicyRule,
  hit: RuleHit,
  at: string,
  nocase: boolean,
  homes: readonly string[],
  pathOrigins: readonly number[],
): string {
  const p = rule.process ?? {};
  const fold = (s: string) => (nocase ? s.toLowerCase() : s);
  const glob = (g: string, s: string) => {
    try {
      return picomatch(g.replace(/\\/g, '/'), { dot: true, nocase })(s.replace(/\\/g, '/'));
    } catch {
      return false;
    }
  };
  let j = -1;
  switch (hit.reason) {
    case 'name':
      j = (p.names ?? []).findIndex((n) => {
        const f = fold(n);
        return f === hit.detail || `${f}.exe` === hit.detail;
      });
      return j >= 0 ? `${at}.process.names[${j}]` : `${at}.process.names`;
    case 'sha256':
      j = (p.sha256 ?? []).findIndex((h) => h.toLowerCase() === hit.detail);
      return j >= 0 ? `${at}.process.sha256[${j}]` : `${at}.process.sha256`;
    case 'script_package':
      j = (p.script_packages ?? []).indexOf(hit.detail);
      return j >= 0 ? `${at}.process.script_packages[${j}]` : `${at}.process.script_packages`;
    case 'exe_path':
      j = (p.exe_globs ?? []).findIndex((g) => glob(g, hit.detail));
      return j >= 0 ? `${at}.process.exe_globs[${j}]` : `${at}.process.exe_globs`;
    case 'content':
      j = (p.markers ?? []).findIndex((set) => set.map((m) => JSON.stringify(m)).join(' & ') === hit.detail);
      return j >= 0 ? `${at}.process.markers[${j}]` : `${at}.process.markers`;
    case 'signing':
      if (hit.detail.startsWith('team:')) {
        j = (p.team_ids ?? []).indexOf(hit.detail.slice(5));
        return j >= 0 ? `${at}.process.team_ids[${j}]` : `${at}.process.team_ids`;
      }
      j = (p.signing_ids ?? []).indexOf(hit.detail);
      return j >= 0 ? `${at}.process.signing_ids[${j}]` : `${at}.process.signing_ids`;
    case 'argv':
      j = (p.argv_patterns ?? []).indexOf(hit.detail);
      return j >= 0 ? `${at}.process.argv_patterns[${j}]` : `${at}.process.argv_patterns`;
    case 'npm_package':
      j = (rule.packages ?? []).findIndex((k) => `${k.name}@${k.range}` === hit.detail);
      return j >= 0 ? `${at}.packages[${j}].name` : `${at}.packages`;
    case 'path':
      j = (rule.paths ?? []).findIndex((g) => expandHome(g, homes).some((e) => glob(e, hit.detail)));
      return j >= 0 ? `${at}.paths[${pathOrigins[j] ?? j}]` : `${at}.paths`;
  }
}

const VERB: Record<string, string> = {
  name: 'kill',
  exe_path: 'kill',
  argv: 'kill',
  script_package: 'kill',
  sha256: 'kill',
  content: 'kill',
  signing: 'kill',
  npm_package: 'quarantine',
  path: 'quarantine',
};

/**
 * Every safety finding of a schema-valid body: errors (block rules hitting a probe, path globs
 * too broad) and warnings (warn/audit rules hitting a probe). Empty = safe.
 */
export function ruleSafetyIssues(body: PolicyBody, options: SafetyOptions = {}): SafetyIssue[] {
  const generic = genericProbes();
  const machine = options.probeMachine === false ? null : machineProbes(options.protectedDirs ?? []);
  const probes: Probes = {
    processes: [...generic.processes, ...(machine?.processes ?? [])],
    paths: [...generic.paths, ...(machine?.paths ?? [])],
    packages: [...generic.packages, ...(machine?.packages ?? [])],
    homes: globHomes(generic.homes, machine?.homes ?? [], machine?.occupiedHomes),
  };
  const issues = new Map<string, SafetyIssue>();
  const add = (issue: SafetyIssue): void => {
    const prev = issues.get(issue.path);
    if (!prev || (prev.severity === 'warning' && issue.severity === 'error')) issues.set(issue.path, issue);
  };
  const severity = (rule: PolicyRule): 'error' | 'warning' => (rule.action === 'block' ? 'error' : 'warning');
  const say = (rule: PolicyRule, verb: string, what: string): string =>
    rule.action === 'block'
      ? `would ${verb} ${what}`
      : `matches ${what}: this ${rule.action} rule would fire on it every time (it cannot hurt it)`;

  body.rules.forEach((rule, i) => {
    (rule.paths ?? []).forEach((glob, j) => {
      const broad = pathBreadthReason(glob);
      if (broad) add({ severity: 'error', path: `$.rules[${i}].paths[${j}]`, message: broad });
    });
  });

  const hashRules = body.rules.some((r) => (r.process?.sha256 ?? []).length > 0);
  // Each path glob in every form it reaches (globForms); origins[i][k] = index in rule i's paths.
  const machineForms = options.probeMachine !== false;
  const origins: number[][] = [];
  const bare: PolicyBody = {
    ...body,
    exceptions: [],
    rules: body.rules.map((rule, i) => {
      const from: number[] = [];
      origins[i] = from;
      if (!rule.paths) return rule;
      const paths = rule.paths.flatMap((g, j) =>
        globForms(g, machineForms).map((f) => {
          from.push(j);
          return f;
        }),
      );
      return { ...rule, paths };
    }),
  };
  for (const platform of PLATFORMS) {
    const nocase = platform !== 'linux';
    const matcher = compileMatcher(bare, { platform, homes: probes.homes });
    if (matcher.ruleCount === 0) continue;
    const report = (hits: readonly RuleHit[], what: string): void => {
      for (const hit of hits) {
        const rule = body.rules[hit.ruleIndex] as PolicyRule;
        const formed = bare.rules[hit.ruleIndex] as PolicyRule;
        const path = criterionPath(
          formed,
          hit,
          `$.rules[${hit.ruleIndex}]`,
          nocase,
          probes.homes,
          origins[hit.ruleIndex] ?? [],
        );
        add({ severity: severity(rule), path, message: say(rule, VERB[hit.reason] ?? 'hit', what) });
      }
    };
    for (const probe of probes.processes) {
      if (probe.platform !== platform) continue;
      const sha256 = hashRules && probe.file ? probeSha256(probe.file) : null;
      const automaton = probe.file ? matcher.markers() : null;
      const contentMarkers = automaton && probe.file ? probeMarkers(probe.file, automaton) : null;
      const obs = {
        ...probe.obs,
        ...(sha256 ? { sha256 } : {}),
        ...(contentMarkers ? { contentMarkers } : {}),
      };
      report(
        matcher.matchAll(obs),
        probe.what + (probe.obs.argv.length === 0 ? ' (empty command line)' : ''),
      );
    }
    for (const probe of probes.packages) {
      if (probe.platform !== platform) continue;
      const obs: PackageObservation = {
        kind: 'package',
        ecosystem: 'npm',
        name: probe.name,
        version: null,
        path: `/usr/lib/node_modules/${probe.name}`,
        root: '/usr/lib/node_modules',
        manager: 'npm',
        owner: ROOT_OWNER,
      };
      report(matcher.matchAll(obs), probe.what);
    }
    // Each path once (many probes share ancestors); quarantining an ancestor moves the probe with it.
    const tested = new Set<string>();
    for (const probe of probes.paths) {
      if (probe.platform !== platform) continue;
      for (const p of [probe.path, ...ancestors(probe.path)]) {
        if (tested.has(p)) continue;
        tested.add(p);
        const obs: PathObservation = {
          kind: 'path',
          path: p,
          isDirectory: p !== probe.path || probe.subtree,
          owner: ROOT_OWNER,
        };
        report(matcher.matchAll(obs), p === probe.path ? probe.what : `${p} (holding ${probe.what})`);
      }
    }
    // Globs reaching below a protected tree (`/etc/x/*` matches no probe, yet files under /etc).
    const trees = probes.paths.filter((probe) => probe.platform === platform && probe.subtree);
    bare.rules.forEach((rule, i) => {
      if (rule.platforms && !rule.platforms.includes(platform)) return;
      (rule.paths ?? []).forEach((glob, k) => {
        const j = origins[i]?.[k] ?? k;
        const expanded = expandHome(glob, probes.homes);
        let tree: PathProbe | undefined;
        for (const g of expanded) {
          tree = treeReachedBy(g, trees, nocase);
          if (tree) break;
        }
        if (tree) {
          add({
            severity: severity(rule),
            path: `$.rules[${i}].paths[${j}]`,
            message: say(rule, 'quarantine files inside', tree.what),
          });
        }
      });
    });
  }
  // The segment tests are only needed during one check: kept, they would hold a 1,000-rule
  // policy's thousands of distinct segments for the daemon's lifetime (docs/security.md "Memory budget").
  segmentCache.clear();
  return [...issues.values()];
}

/** The errors of ruleSafetyIssues: what guardd refuses (empty = safe to apply). */
export function unsafeRuleIssues(body: PolicyBody, options: SafetyOptions = {}): PolicyIssue[] {
  return ruleSafetyIssues(body, options)
    .filter((i) => i.severity === 'error')
    .map(({ path, message }) => ({ path, message }));
}

/** Throws GUARD_POLICY_UNSAFE_RULE naming every unsafe criterion, or returns. */
export function assertSafePolicy(body: PolicyBody, options: SafetyOptions = {}): void {
  const issues = unsafeRuleIssues(body, options);
  if (issues.length > 0) {
    const shown = issues.slice(0, 20).map((i) => `${i.path} ${i.message}`);
    throw new GuardError(
      'GUARD_POLICY_UNSAFE_RULE',
      `policy has unsafe rules: ${shown.join('; ')}${issues.length > 20 ? `; and ${issues.length - 20} more` : ''}`,
      { issues: issues.slice(0, 200) },
    );
  }
}
