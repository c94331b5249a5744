/**
 * Owns "which npm package does this interpreter run": when a process's executable is an
 * interpreter (node, nodejs, bun, deno, python*, ruby, perl), find the script argument (skipping
 * the interpreter's own flags), resolve it against the process's working directory, follow
 * symlinks component by component like the kernel (a `.bin/claude` link →
 * `…/@anthropic-ai/claude-code/cli.js`), and walk up to the nearest package.json that has a
 * `name`. The path walk refuses what the process's user could not reach (a directory it may not
 * search) and notes whether anyone other than root and that user could have placed a step of it
 * (`stepPlaced`): a relative or later candidate must be fully placed and theirs, and the script
 * owner's word counts only on a placed path. This is what makes a banned JS CLI recognisable however
 * it was launched: npx, a renamed symlink, an alias, `env`, another global prefix.
 *
 * Every file on the way is the user's (hostile input): it is touched only through safe-read.ts
 * (async, non-blocking open, no link followed at the package.json, regular files only, size cap,
 * one deadline per resolution, a bounded share of the thread pool), so a FIFO or a stalled mount
 * costs an unattributed process, never a frozen daemon. A bad package.json is skipped and the walk
 * continues upward; so is one that is not trusted to speak for this process (`untrustedReason`:
 * planted by another user, in a world-writable directory, or unreadable to the process's user),
 * so a package.json dropped in /tmp cannot get someone else's process killed. Each directory's
 * package.json facts are cached for DIR_CACHE_TTL_MS; trust is decided per process from them.
 */

import type { Stats } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ScriptPackage } from './observation.js';
import {
  CHAIN_MAX_PATHS,
  type ChainAnswer,
  type ChainStep,
  lstatUserChain,
  lstatUserPath,
  ReadGate,
  readUserFile,
  worldWritable,
} from './safe-read.js';

/** A package.json larger than this is not parsed (bytes): real ones are a few KiB. */
export const PACKAGE_JSON_MAX_BYTES = 1024 * 1024;
/** How many directories upward the walk goes at most (deep monorepos stay well under). */
const MAX_WALK_DEPTH = 64;
/** Cached directory answers are trusted this long (ms): a package installed later is seen after it. */
const DIR_CACHE_TTL_MS = 60_000;
/** Directory answers kept at most; the cache is cleared when full (cheap, rare). */
const DIR_CACHE_MAX = 20_000;

/** Interpreter executable basenames (python3.12, python2 … via the pattern). */
const INTERPRETER = /^(?:node|nodejs|bun|deno|ruby|perl|python(?:\d+(?:\.\d+)?)?)(?:\.exe)?$/i;

/** Flags of each interpreter family that take the NEXT argument as their value. */
const NODE_VALUE_FLAGS = new Set([
  '-r',
  '--require',
  '--import',
  '--loader',
  '--experimental-loader',
  '-C',
  '--conditions',
  '--input-type',
  '--env-file',
  '--inspect-port',
  '--title',
  '--redirect-warnings',
  '--disable-warning',
  '--watch-path',
  '--cpu-prof-dir',
  '--heap-prof-dir',
  '--diagnostic-dir',
  '--report-dir',
  '--icu-data-dir',
  '--openssl-config',
  '--secure-heap',
  '--stack-trace-limit',
  '--max-old-space-size',
  '--tls-cipher-list',
  '--unhandled-rejections',
  '--dns-result-order',
  '--experimental-config-file',
  '--config',
  '--cwd',
  '--preload',
  '--tsconfig-override',
  '--env-file-if-exists',
  // Every other node option that takes a value (node --help, v20–v24): written `--opt value`, the
  // value must not be mistaken for the script (`node --experimental-default-type module cli.js`).
  '--allow-fs-read',
  '--allow-fs-write',
  '--build-snapshot-config',
  '--cpu-prof-interval',
  '--cpu-prof-name',
  '--debug-port',
  '--disable-proto',
  '--experimental-default-type',
  '--experimental-policy',
  '--experimental-sea-config',
  '--heap-prof-interval',
  '--heap-prof-name',
  '--heapsnapshot-near-heap-limit',
  '--heapsnapshot-signal',
  '--inspect-publish-uid',
  '--localstorage-file',
  '--max-http-header-size',
  '--network-family-autoselection-attempt-timeout',
  '--policy-integrity',
  '--report-filename',
  '--report-signal',
  '--run',
  '--secure-heap-min',
  '--snapshot-blob',
  '--test-concurrency',
  '--test-coverage-branches',
  '--test-coverage-exclude',
  '--test-coverage-functions',
  '--test-coverage-include',
  '--test-coverage-lines',
  '--test-global-setup',
  '--test-isolation',
  '--test-name-pattern',
  '--test-reporter',
  '--test-reporter-destination',
  '--test-shard',
  '--test-skip-pattern',
  '--test-timeout',
  '--tls-keylog',
  '--trace-event-categories',
  '--trace-event-file-pattern',
  '--trace-require-module',
  '--use-largepages',
  '--watch-kill-signal',
]);
/** Flags after which there is no script (inline code, REPL-only tools). */
const NODE_NO_SCRIPT = new Set(['-e', '--eval', '-p', '--print', '-c', '--check', '-v', '--version', '-h']);
const PY_VALUE_FLAGS = new Set(['-W', '-X', '--check-hash-based-pycs']);
const PY_NO_SCRIPT = new Set(['-c', '-m', '-V', '--version', '-h', '--help']);
const RUBY_PERL_VALUE_FLAGS = new Set(['-I', '-r', '-C', '-M', '-x', '-E', '-F', '-i']);
const RUBY_PERL_NO_SCRIPT = new Set(['-e', '-E', '-v', '--version', '-h', '--help']);

/** True when the executable's basename is an interpreter toolguard looks into. */
export function isInterpreter(exeOrName: string): boolean {
  return INTERPRETER.test(basename(exeOrName.replace(/\\/g, '/')));
}

/**
 * The script argument an interpreter runs, as written on the command line (not resolved), or null
 * when it runs inline code, a module (-m), the REPL, or nothing recognisable.
 */
export function scriptArgument(interpreter: string, argv: readonly string[]): string | null {
  return scriptCandidates(interpreter, argv, 1)[0] ?? null;
}

/**
 * The script argument and, after it, the arguments that would be the script if the one before
 * were an option's value after all (a flag this table does not know yet): at most `max`, in order.
 */
export function scriptCandidates(interpreter: string, argv: readonly string[], max: number): string[] {
  const out: string[] = [];
  const name = basename(interpreter.replace(/\\/g, '/'))
    .toLowerCase()
    .replace(/\.exe$/, '');
  const family = name.startsWith('python')
    ? 'python'
    : name === 'ruby' || name === 'perl'
      ? 'rubyperl'
      : name === 'deno'
        ? 'deno'
        : name === 'bun'
          ? 'bun'
          : 'node';
  let i = 1;
  // deno/bun take a subcommand first: `deno run [flags] script`, `bun run script`, `bun script`.
  if (family === 'deno') {
    while (i < argv.length && (argv[i] as string).startsWith('-')) i++;
    if (argv[i] !== 'run') return out;
    i++;
  } else if (family === 'bun' && (argv[i] === 'run' || argv[i] === 'x')) {
    i++;
  }
  const valueFlags =
    family === 'python' ? PY_VALUE_FLAGS : family === 'rubyperl' ? RUBY_PERL_VALUE_FLAGS : NODE_VALUE_FLAGS;
  const noScript =
    family === 'python' ? PY_NO_SCRIPT : family === 'rubyperl' ? RUBY_PERL_NO_SCRIPT : NODE_NO_SCRIPT;
  // Bounded by argv length (the source already capped argv).
  for (; i < argv.length && out.length < max; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      const next = argv[i + 1];
      if (next !== undefined) out.push(next);
      return out;
    }
    if (arg === '-' || arg === '') return out;
    if (!arg.startsWith('-')) {
      out.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (noScript.has(flag)) return out;
    if (eq < 0 && valueFlags.has(flag)) i++;
  }
  return out;
}

/** node flags whose value is a module node loads before the script (preloads, ESM loaders). */
const NODE_PRELOAD_FLAGS = new Set(['-r', '--require', '--import', '--loader', '--experimental-loader']);
/** node flags whose value is inline code (not a file), skipped like any other value. */
const NODE_CODE_FLAGS = new Set(['-e', '--eval', '-p', '--print']);

/**
 * The files an interpreter was told on its command line to run, as written (not resolved): the
 * script argument (`scriptArgument`) and, for node, the values of `-r/--require`, `--import` and
 * `--loader/--experimental-loader` given before it that are paths (absolute, `./`, `../`, or a
 * `file:` URL); a bare specifier (`dotenv/config`) is a package node looks up in node_modules,
 * not a path, and is left out. At most `max`, preloads first in command-line order. Node keeps
 * reading its own options after `-e <code>`, so they are looked for up to the script or `--`.
 */
export function loadedFileArguments(interpreter: string, argv: readonly string[], max: number): string[] {
  const out: string[] = [];
  const name = basename(interpreter.replace(/\\/g, '/'))
    .toLowerCase()
    .replace(/\.exe$/, '');
  if (name === 'node' || name === 'nodejs') {
    for (let i = 1; i < argv.length && out.length < max; i++) {
      const arg = argv[i] as string;
      if (arg === '--' || !arg.startsWith('-')) break;
      const eq = arg.indexOf('=');
      const flag = eq > 0 ? arg.slice(0, eq) : arg;
      const takesNext = eq < 0 && (NODE_VALUE_FLAGS.has(flag) || NODE_CODE_FLAGS.has(flag));
      const value = eq > 0 ? arg.slice(eq + 1) : takesNext ? argv[i + 1] : undefined;
      if (takesNext) i++;
      if (value === undefined || !NODE_PRELOAD_FLAGS.has(flag)) continue;
      const path = preloadPath(value);
      if (path !== null) out.push(path);
    }
  }
  const script = scriptArgument(interpreter, argv);
  if (script !== null && out.length < max) out.push(script);
  return out;
}

/** A preload specifier as a file path, or null when it is not one (a bare package name, data: URL). */
function preloadPath(spec: string): string | null {
  if (spec.startsWith('file:')) {
    try {
      return fileURLToPath(spec);
    } catch {
      return null;
    }
  }
  return spec.startsWith('/') || spec.startsWith('./') || spec.startsWith('../') ? spec : null;
}

/**
 * Candidates tried per process: the script and up to two arguments after it. A later one is used
 * only when every earlier one names no file at all — the interpreter could not have run it, so it
 * was an option's value — which keeps `node my-tool.js <banned>/cli.js` attributed to my-tool.
 */
const MAX_SCRIPT_CANDIDATES = 3;
/** What node's loader tries after the path as given (`node …/claude-code/cli` runs cli.js). */
const NODE_MAIN_EXTENSIONS = ['.js', '.json', '.node'] as const;
/**
 * One resolution (script lookup and walk) is abandoned after this long (ms): every file it touches
 * is the user's, and a stalled mount must cost an unattributed process, not a stuck pipeline.
 */
export const RESOLVE_TIMEOUT_MS = 2000;
/**
 * Pool threads the resolver may hold at once, and per uid: a user whose script sits on a stalled
 * mount pins one, other users keep the other (see safe-read.ts for the shared budget).
 */
const RESOLVE_MAX_IN_FLIGHT = 2;
const RESOLVE_MAX_PER_UID = 1;

/** Symlinks followed while resolving one script path at most (the kernel's own limit, MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/**
 * Why a package.json on the walk, or a script candidate, was not believed (counted in
 * `counts.untrusted_*`). The last two are about the script path: `not_searchable_by_user` (the
 * path goes through a directory the process's user may not search, so its package must not be
 * told), `planted_candidate` (a relative or later candidate that another user could have put
 * there, or that is not root's or the process's user's).
 */
export type UntrustedReason =
  | 'foreign_owner'
  | 'world_writable_dir'
  | 'not_readable_by_user'
  | 'not_searchable_by_user'
  | 'planted_candidate';

/** What one directory's package.json says, with the facts trust is decided on. */
interface DirFacts {
  readonly name: string;
  readonly version: string | null;
  /** Owner, group and mode of the package.json descriptor that was read. */
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
  /** Mode of the directory holding it. */
  readonly dirMode: number;
}

interface DirAnswer {
  readonly at: number;
  readonly pkg: DirFacts | null;
}

/** Who a resolution is for: the process's credentials and the owner of the script it runs. */
export interface TrustContext extends Credentials {
  /**
   * Owner of the script, when its word counts: null when the path to the script crossed a
   * directory someone other than root or the process's user may write (see `stepPlaced`).
   */
  readonly scriptOwner: number | null;
}

/** The process's identity as the kernel checks its file accesses (by mode bits). */
export interface Credentials {
  /** Real uid of the process, or null when the source cannot tell (Windows: then only root counts). */
  readonly uid: number | null;
  /** Real gid and supplementary groups, or null when unknown (then only owner and other bits apply). */
  readonly groups: readonly number[] | null;
}

/** Owner, group and mode of a file or directory. */
type Perms = Pick<Stats, 'uid' | 'gid' | 'mode'>;

/**
 * Whether `cred` may read (`bit` 4) or search (`bit` 1) a file of these perms by its mode bits,
 * the way the kernel picks the class: the owner's bits if it owns it, else the group's if it is in
 * the group, else other. Root may do anything; an unknown uid gets the other class. POSIX ACL
 * entries are not read (see docs/security.md).
 */
export function permits(f: Perms, cred: Credentials, bit: 4 | 1): boolean {
  if (cred.uid === 0) return true;
  if (cred.uid !== null && f.uid === cred.uid) return (f.mode & (bit << 6)) !== 0;
  if (cred.uid !== null && cred.groups?.includes(f.gid)) return (f.mode & (bit << 3)) !== 0;
  return (f.mode & bit) !== 0;
}

/**
 * True when someone other than root and the process's user `uid` may create or rename entries in
 * directory `d`: it is world-writable, owned by another non-root user, or group-writable by a
 * group other than root's.
 */
export function othersMayWrite(d: Perms, uid: number | null): boolean {
  if (worldWritable(d.mode)) return true;
  if (d.uid !== 0 && d.uid !== uid) return true;
  return (d.mode & 0o020) !== 0 && d.gid !== 0;
}

/**
 * Whether the entry `entry` (lstat: a link is judged as the link) found in directory `dir` was
 * put there by root or the process's user `uid`: the directory lets nobody else write, or the
 * entry is root's or the user's own (in a sticky directory nobody else can replace it; see
 * docs/security.md for the non-sticky rename limit). A link planted by another user is theirs.
 */
export function stepPlaced(dir: Perms, entry: Pick<Stats, 'uid'>, uid: number | null): boolean {
  return !othersMayWrite(dir, uid) || entry.uid === 0 || (uid !== null && entry.uid === uid);
}

/**
 * Whether a package.json may name the package of a script, or why not. The attacker is another
 * local user who plants a package.json with a banned name where someone else's script will walk
 * past it (a shared /tmp, a world-writable project dir), to get that user's or root's process
 * killed; or who links a root-only file there to read its name through guardd's events.
 *  - the file must be owned by root, by the process's user or by the script's owner: only they
 *    can make a statement about that script (the kernel records who created the file, and a file
 *    another user replaces changes owner). The script's owner counts only when every step of the
 *    path to the script was placed by root or the process's user (`stepPlaced`): otherwise a user
 *    could make their own file or directory "the script" (a directory named like another user's
 *    argument in a shared /tmp) and speak for it;
 *  - in a world-writable directory (o+w, sticky or not: anyone may create files there) only the
 *    process's own user is believed: that user can only get their own process attributed, while a
 *    root-owned or script-owner file there could have been renamed into place by anyone without
 *    the sticky bit's protection;
 *  - it must be readable by the process's user (by its owner, group and other bits, against the
 *    process's groups): otherwise the name would leak what that user cannot read. Every directory
 *    on the way must be searchable by that user too (checked by the path walk).
 */
export function untrustedReason(
  pkg: Omit<DirFacts, 'name' | 'version'>,
  ctx: TrustContext,
): UntrustedReason | null {
  const own = ctx.uid !== null && pkg.uid === ctx.uid;
  if (!own && pkg.uid !== 0 && pkg.uid !== ctx.scriptOwner) return 'foreign_owner';
  if (worldWritable(pkg.dirMode) && !own) return 'world_writable_dir';
  if (!own && !permits(pkg, ctx, 4)) return 'not_readable_by_user';
  return null;
}

export interface ScriptPackageResolverOptions {
  /** Clock for the cache TTL (ms). Default Date.now. */
  readonly now?: () => number;
  /** Admission for the resolver's file calls (tests pass a tight one). Default: 2 in flight, 1 per uid. */
  readonly gate?: ReadGate;
  /** Deadline of one resolution (ms). Default RESOLVE_TIMEOUT_MS. */
  readonly timeoutMs?: number;
}

/** Outcome of touching one user path during a resolution: a value, nothing there, or no answer in time. */
type Step<T> = { kind: 'value'; value: T } | { kind: 'none' } | { kind: 'stalled' };

/** What a script path leads to, and whether root or the process's user placed every step to it. */
interface Entry {
  readonly real: string;
  readonly isDir: boolean;
  readonly owner: number;
  readonly placed: boolean;
  /** The file's identity as the walk's lstat saw it. */
  readonly dev: number;
  readonly ino: number;
}

/** Groups of the process: a list, or a function reading it (called only when a walk needs it). */
type GroupsArg = readonly number[] | null | (() => readonly number[] | null);

export class ScriptPackageResolver {
  private readonly dirs = new Map<string, DirAnswer>();
  private readonly now: () => number;
  private readonly gate: ReadGate;
  private readonly timeoutMs: number;
  /** Outcomes since start: package.json files skipped as bad or untrusted, resolutions given up. */
  readonly counts = {
    bad_package_json: 0,
    resolved: 0,
    unresolved: 0,
    untrusted_foreign_owner: 0,
    untrusted_world_writable_dir: 0,
    untrusted_not_readable_by_user: 0,
    untrusted_not_searchable_by_user: 0,
    untrusted_planted_candidate: 0,
    /** A file call did not answer in time or found no free slot: the process stays unattributed. */
    stalled: 0,
  };

  constructor(options: ScriptPackageResolverOptions = {}) {
    this.now = options.now ?? Date.now;
    this.gate = options.gate ?? new ReadGate('script_package', RESOLVE_MAX_IN_FLIGHT, RESOLVE_MAX_PER_UID);
    this.timeoutMs = options.timeoutMs ?? RESOLVE_TIMEOUT_MS;
  }

  /** Gate state for status. */
  gateStatus(): Record<string, number> {
    return { pending: this.gate.pending, queued: this.gate.queued, ...this.gate.counts };
  }

  /**
   * The package of the script `exe` runs with `argv` for a process of real uid `uid`, or null (not
   * an interpreter, no script, the script is not inside a trusted named package, or the files did
   * not answer within the deadline). `cwd` (or a function reading it, called only when needed)
   * resolves a relative script path; `groups` (the process's real gid and supplementary groups,
   * or a function reading them) decide which directories' group bits apply to it. Never rejects;
   * never blocks the event loop on a user's file.
   */
  async resolve(
    exe: string | null,
    name: string,
    argv: readonly string[],
    cwd: string | null | (() => string | null),
    uid: number | null = null,
    groups: GroupsArg = null,
  ): Promise<ScriptPackage | null> {
    return (await this.resolveOutcome(exe, name, argv, cwd, uid, groups)).pkg;
  }

  /**
   * Like `resolve`, and says whether the answer is final: `stalled` is true when a file call did
   * not answer in time or found no free slot, so a later attempt may still find the package.
   * `walked`: steps already read for this process (the exec-events source reads its script
   * candidates' walks right after the exec: `ProcessSource.walked`), used before asking the pool.
   */
  async resolveOutcome(
    exe: string | null,
    name: string,
    argv: readonly string[],
    cwd: string | null | (() => string | null),
    uid: number | null = null,
    groups: GroupsArg = null,
    walked: ReadonlyMap<string, ChainAnswer> | null = null,
  ): Promise<{ pkg: ScriptPackage | null; stalled: boolean }> {
    const pkg = await this.resolveOnce(exe, name, argv, cwd, uid, groups, walked);
    return pkg === 'stalled' ? { pkg: null, stalled: true } : { pkg, stalled: false };
  }

  private async resolveOnce(
    exe: string | null,
    name: string,
    argv: readonly string[],
    cwd: string | null | (() => string | null),
    uid: number | null,
    groupsArg: GroupsArg,
    walked: ReadonlyMap<string, ChainAnswer> | null,
  ): Promise<ScriptPackage | null | 'stalled'> {
    const interpreter = exe && isInterpreter(exe) ? exe : isInterpreter(name) ? name : null;
    if (interpreter === null) return null;
    const candidates = scriptCandidates(interpreter, argv, MAX_SCRIPT_CANDIDATES);
    const deadline = performance.now() + this.timeoutMs;
    const key = uid ?? -1;
    let workDir: string | null | undefined;
    let found: Entry | null = null;
    // The groups are read only when a path is walked (procfs: one read of /proc/<pid>/status).
    const cred: Credentials = {
      uid,
      get groups() {
        const g = typeof groupsArg === 'function' ? groupsArg() : groupsArg;
        Object.defineProperty(this, 'groups', { value: g });
        return g;
      },
    };
    for (const [index, arg] of candidates.entries()) {
      // Longer than PATH_MAX or holding NUL: names no file, like any other missing candidate.
      if (arg.length > 4096 || arg.includes('\u0000')) continue;
      let script: string;
      if (isAbsolute(arg)) script = arg;
      else {
        // The working directory is read only now, for an interpreter with a relative script.
        if (workDir === undefined) workDir = typeof cwd === 'function' ? cwd() : cwd;
        if (!workDir) return null;
        script = resolve(workDir, arg);
      }
      const entry = await this.entryOf(script, cred, key, deadline, walked);
      if (entry.kind === 'stalled') {
        this.counts.stalled++;
        return 'stalled';
      }
      if (entry.kind === 'unreachable') {
        this.counts.untrusted_not_searchable_by_user++;
        return null;
      }
      if (entry.kind === 'value') {
        // A relative candidate (`perl -S job.pl`, `node inspect`, `bun run dev`: the interpreter
        // may not run a file of that name at all) or a later one (a guess that the previous
        // argument was a flag's value) is believed only when root or the process's user put it
        // there and it is theirs: another user must not be able to plant a name for it.
        const own = entry.value.owner === 0 || entry.value.owner === uid;
        if ((index > 0 || !isAbsolute(arg)) && !(entry.value.placed && own)) {
          this.counts.untrusted_planted_candidate++;
          return null;
        }
        found = entry.value;
        break;
      }
    }
    if (found === null) {
      if (candidates.length > 0) this.counts.unresolved++;
      return null;
    }
    // `node <package dir>` runs the package's main: the walk starts in the directory itself.
    const start = found.isDir ? found.real : dirname(found.real);
    const ctx: TrustContext = { uid, groups: cred.groups, scriptOwner: found.placed ? found.owner : null };
    const pkg = await this.packageOf(start, ctx, key, deadline);
    if (pkg === 'stalled') {
      this.counts.stalled++;
      return 'stalled';
    }
    if (pkg === null) {
      this.counts.unresolved++;
      return null;
    }
    this.counts.resolved++;
    const { owner: packageOwner, ...named } = pkg;
    if (found.isDir) return { ...named, script: found.real };
    return {
      ...named,
      script: found.real,
      scriptFile: { dev: found.dev, ino: found.ino, owner: found.owner, packageOwner },
    };
  }

  /**
   * Where the file an interpreter was told to load at `path` (absolute) really is, as the
   * process's user `uid` (with `groups`) reaches it: links followed component by component like
   * the kernel, node's extensions tried after the path as given, every directory on the way
   * searchable by that user. Null when there is no such file or that user could not reach it;
   * 'stalled' when the files did not answer within the resolver's deadline. Never rejects.
   */
  async locate(path: string, uid: number | null, groups: GroupsArg): Promise<string | null | 'stalled'> {
    const g = typeof groups === 'function' ? groups() : groups;
    const entry = await this.entryOf(path, { uid, groups: g }, uid ?? -1, performance.now() + this.timeoutMs);
    if (entry.kind === 'stalled') {
      this.counts.stalled++;
      return 'stalled';
    }
    return entry.kind === 'value' && !entry.value.isDir ? entry.value.real : null;
  }

  /**
   * The real path and owner of what an interpreter runs for `script`: the file or directory
   * itself, else the file node's loader would pick by adding an extension. The first form that
   * exists decides; `unreachable` when the process's user could not get there.
   */
  private async entryOf(
    script: string,
    cred: Credentials,
    key: number,
    deadline: number,
    ahead: ReadonlyMap<string, ChainAnswer> | null = null,
  ): Promise<Step<Entry> | { kind: 'unreachable' }> {
    for (const path of [script, ...NODE_MAIN_EXTENSIONS.map((ext) => script + ext)]) {
      const walked = await this.walk(path, cred, key, deadline, ahead);
      if (walked.kind !== 'none') return walked;
    }
    return { kind: 'none' };
  }

  /**
   * Resolves `path` (absolute, lexically normalised) one component at a time from `/`, the way
   * the kernel does, following symlinks: every directory looked into must be searchable by the
   * process's user (else `unreachable`: root's view must not tell what that user cannot reach),
   * and each step records whether root or that user placed its entry (`stepPlaced`). Steps in
   * `ahead` (read right after the exec) are taken from it; the others are asked of the pool.
   */
  private async walk(
    path: string,
    cred: Credentials,
    key: number,
    deadline: number,
    ahead: ReadonlyMap<string, ChainAnswer> | null = null,
  ): Promise<Step<Entry> | { kind: 'unreachable' }> {
    // Answers of the last chain jobs by path: each job lstats the lexical prefixes the walk will
    // step through next (and reads a link's target), so a path without links is one trip through
    // the pool, not one per component. Only this walk uses them.
    const answers = new Map<string, ChainAnswer>(ahead ?? []);
    const stepOf = async (p: string): Promise<Step<ChainStep>> => {
      let a = answers.get(p);
      if (a === undefined) {
        const chain = [p];
        // the components still to walk, next first (read only on a miss)
        for (let i = pending.length - 1; i >= 0; i--) {
          const name = pending[i] as string;
          if (chain.length >= CHAIN_MAX_PATHS || name === '..') break;
          if (name === '' || name === '.') continue;
          const last = chain[chain.length - 1] as string;
          chain.push(last === '/' ? `/${name}` : `${last}/${name}`);
        }
        const r = await lstatUserChain(chain, this.gate, key, remaining(deadline));
        if (!r.ok)
          return r.reason === 'timeout' || r.reason === 'busy' ? { kind: 'stalled' } : { kind: 'none' };
        for (const [i, answer] of r.value.entries()) answers.set(chain[i] as string, answer);
        a = answers.get(p);
      }
      return a?.ok ? { kind: 'value', value: a.step } : { kind: 'none' };
    };
    // Components still to resolve, next one last; bounded by the path and MAX_SYMLINKS targets.
    const pending = path.split('/').reverse();
    const top = await stepOf('/');
    if (top.kind !== 'value') return top;
    const root = top.value;
    let current = '/';
    let here = root;
    let placed = true;
    let links = 0;
    // An unknown uid (Windows) has no mode bits to check searching against.
    const mustSearch = cred.uid !== null && cred.uid !== 0;
    while (pending.length > 0) {
      const name = pending.pop() as string;
      if (name === '' || name === '.') continue;
      if (!isDir(here)) return { kind: 'none' };
      if (mustSearch && !permits(here, cred, 1)) return { kind: 'unreachable' };
      if (name === '..') {
        if (current === '/') continue;
        current = dirname(current);
        const up = await stepOf(current);
        if (up.kind !== 'value') return up;
        here = up.value;
        continue;
      }
      const next = current === '/' ? `/${name}` : `${current}/${name}`;
      const st = await stepOf(next);
      if (st.kind !== 'value') return st;
      if (!stepPlaced(here, st.value, cred.uid)) placed = false;
      if (st.value.link !== null) {
        if (++links > MAX_SYMLINKS) return { kind: 'none' };
        const target = st.value.link;
        if (target.startsWith('/')) {
          current = '/';
          here = root;
        }
        const parts = target.split('/');
        for (let i = parts.length - 1; i >= 0; i--) pending.push(parts[i] as string);
        continue;
      }
      current = next;
      here = st.value;
    }
    if (!isDir(here) && !isFile(here)) return { kind: 'none' };
    // `node <dir>`: the package walk starts by looking into the directory itself.
    if (isDir(here) && mustSearch && !permits(here, cred, 1)) return { kind: 'unreachable' };
    return {
      kind: 'value',
      value: { real: current, isDir: isDir(here), owner: here.uid, placed, dev: here.dev, ino: here.ino },
    };
  }

  /** The nearest trusted named package at or above `dir`, null when none, 'stalled' when out of time. */
  private async packageOf(
    dir: string,
    ctx: TrustContext,
    key: number,
    deadline: number,
  ): Promise<{ name: string; version: string | null; root: string; owner: number } | null | 'stalled'> {
    let current = dir;
    for (let depth = 0; depth < MAX_WALK_DEPTH; depth++) {
      const facts = await this.factsOf(current, key, deadline);
      if (facts === 'stalled') return 'stalled';
      if (facts !== null) {
        const why = untrustedReason(facts, ctx);
        // An untrusted package.json is as if absent: the walk goes on to the next one up.
        if (why === null)
          return { name: facts.name, version: facts.version, root: current, owner: facts.uid };
        this.counts[`untrusted_${why}`]++;
      }
      const parent = dirname(current);
      if (parent === current) break;
      current = parent;
    }
    return null;
  }

  /** The named package.json of one directory (cached for DIR_CACHE_TTL_MS), or null. */
  private async factsOf(dir: string, key: number, deadline: number): Promise<DirFacts | null | 'stalled'> {
    const now = this.now();
    const cached = this.dirs.get(dir);
    // A clock stepped back would otherwise keep an answer for as long as the step.
    if (cached && now >= cached.at && now - cached.at < DIR_CACHE_TTL_MS) return cached.pkg;
    const read = await this.readPackage(dir, key, deadline);
    if (read === 'stalled') return 'stalled';
    if (this.dirs.size >= DIR_CACHE_MAX) this.dirs.clear();
    this.dirs.set(dir, { at: now, pkg: read });
    return read;
  }

  private async readPackage(
    dir: string,
    key: number,
    deadline: number,
  ): Promise<DirFacts | null | 'stalled'> {
    const file = await readUserFile(`${dir}/package.json`, {
      maxBytes: PACKAGE_JSON_MAX_BYTES,
      gate: this.gate,
      key,
      timeoutMs: remaining(deadline),
    });
    if (!file.ok) {
      if (file.reason === 'timeout' || file.reason === 'busy') return 'stalled';
      if (file.reason !== 'missing') this.counts.bad_package_json++;
      return null;
    }
    let json: unknown;
    try {
      json = JSON.parse(file.data.toString('utf8'));
    } catch {
      this.counts.bad_package_json++;
      return null;
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      this.counts.bad_package_json++;
      return null;
    }
    const { name, version } = json as { name?: unknown; version?: unknown };
    // A package.json without a name (e.g. {"type":"module"} in a dist folder) is not a package root.
    if (typeof name !== 'string' || name.length === 0 || name.length > 214) return null;
    // The directory's mode decides whether anyone could have put the file there.
    const d = await lstatUserPath(dir, this.gate, key, remaining(deadline));
    if (!d.ok) return d.reason === 'timeout' || d.reason === 'busy' ? 'stalled' : null;
    return {
      name,
      version: typeof version === 'string' && version.length <= 256 ? version : null,
      uid: file.facts.uid,
      gid: file.facts.gid,
      mode: file.facts.mode,
      dirMode: d.value.mode,
    };
  }
}

/** File-type tests on a step's mode (lstat: a link is a link). */
function isDir(s: ChainStep): boolean {
  return (s.mode & 0o170000) === 0o040000;
}
function isFile(s: ChainStep): boolean {
  return (s.mode & 0o170000) === 0o100000;
}

/** Time left before `deadline` (ms, performance.now clock), at least 1 so a call is still tried. */
function remaining(deadline: number): number {
  return Math.max(1, Math.round(deadline - performance.now()));
}
