/**
 * Owns "which npm package does this interpreter run": when a process's executable is an
 * interpreter (node, nodejs, bun, deno, python*, ruby, perl), find the script argument (skipping
 * the interpreter's own flags), resolve it against the process's working directory, follow
 * symlinks (a `.bin/claude` link → `…/@anthropic-ai/claude-code/cli.js`), and walk up to the
 * nearest package.json that has a `name`. This is what makes a banned JS CLI recognisable however
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
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import type { ScriptPackage } from './observation.js';
import {
  lstatUserPath,
  ReadGate,
  readUserFile,
  realpathUserPath,
  statUserPath,
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

/** Why a package.json on the walk was not believed (counted in `counts.untrusted_*`). */
export type UntrustedReason = 'foreign_owner' | 'world_writable_dir' | 'not_readable_by_user';

/** What one directory's package.json says, with the facts trust is decided on. */
interface DirFacts {
  readonly name: string;
  readonly version: string | null;
  /** Owner and mode of the package.json descriptor that was read. */
  readonly uid: number;
  readonly mode: number;
  /** Mode of the directory holding it. */
  readonly dirMode: number;
}

interface DirAnswer {
  readonly at: number;
  readonly pkg: DirFacts | null;
}

/** Who a resolution is for: the process's real uid and the owner of the script it runs. */
export interface TrustContext {
  /** Real uid of the process, or null when the source cannot tell (then only root and the script owner count). */
  readonly uid: number | null;
  readonly scriptOwner: number;
}

/**
 * Whether a package.json may name the package of a script, or why not. The attacker is another
 * local user who plants a package.json with a banned name where someone else's script will walk
 * past it (a shared /tmp, a world-writable project dir), to get that user's or root's process
 * killed; or who links a root-only file there to read its name through guardd's events.
 *  - the file must be owned by root, by the process's user or by the script's owner: only they
 *    can make a statement about that script (the kernel records who created the file, and a file
 *    another user replaces changes owner);
 *  - in a world-writable directory (o+w, sticky or not: anyone may create files there) only the
 *    process's own user is believed: that user can only get their own process attributed, while a
 *    root-owned or script-owner file there could have been renamed into place by anyone without
 *    the sticky bit's protection;
 *  - it must be readable by the process's user (owner, or world-readable): otherwise the name
 *    would leak what that user cannot read.
 */
export function untrustedReason(
  pkg: Omit<DirFacts, 'name' | 'version'>,
  ctx: TrustContext,
): UntrustedReason | null {
  const own = ctx.uid !== null && pkg.uid === ctx.uid;
  if (!own && pkg.uid !== 0 && pkg.uid !== ctx.scriptOwner) return 'foreign_owner';
  if (worldWritable(pkg.dirMode) && !own) return 'world_writable_dir';
  if (!own && (pkg.mode & 0o004) === 0) return 'not_readable_by_user';
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
   * resolves a relative script path. Never rejects; never blocks the event loop on a user's file.
   */
  async resolve(
    exe: string | null,
    name: string,
    argv: readonly string[],
    cwd: string | null | (() => string | null),
    uid: number | null = null,
  ): Promise<ScriptPackage | null> {
    return (await this.resolveOutcome(exe, name, argv, cwd, uid)).pkg;
  }

  /**
   * Like `resolve`, and says whether the answer is final: `stalled` is true when a file call did
   * not answer in time or found no free slot, so a later attempt may still find the package.
   */
  async resolveOutcome(
    exe: string | null,
    name: string,
    argv: readonly string[],
    cwd: string | null | (() => string | null),
    uid: number | null = null,
  ): Promise<{ pkg: ScriptPackage | null; stalled: boolean }> {
    const pkg = await this.resolveOnce(exe, name, argv, cwd, uid);
    return pkg === 'stalled' ? { pkg: null, stalled: true } : { pkg, stalled: false };
  }

  private async resolveOnce(
    exe: string | null,
    name: string,
    argv: readonly string[],
    cwd: string | null | (() => string | null),
    uid: number | null,
  ): Promise<ScriptPackage | null | 'stalled'> {
    const interpreter = exe && isInterpreter(exe) ? exe : isInterpreter(name) ? name : null;
    if (interpreter === null) return null;
    const candidates = scriptCandidates(interpreter, argv, MAX_SCRIPT_CANDIDATES);
    const deadline = performance.now() + this.timeoutMs;
    const key = uid ?? -1;
    let workDir: string | null | undefined;
    let found: { real: string; isDir: boolean; owner: number } | null = null;
    for (const arg of candidates) {
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
      const entry = await this.entryOf(script, key, deadline);
      if (entry.kind === 'stalled') {
        this.counts.stalled++;
        return 'stalled';
      }
      if (entry.kind === 'value') {
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
    const pkg = await this.packageOf(start, { uid, scriptOwner: found.owner }, key, deadline);
    if (pkg === 'stalled') {
      this.counts.stalled++;
      return 'stalled';
    }
    if (pkg === null) {
      this.counts.unresolved++;
      return null;
    }
    this.counts.resolved++;
    return { ...pkg, script: found.real };
  }

  /**
   * The real path and owner of what an interpreter runs for `script`: the file or directory
   * itself, else the file node's loader would pick by adding an extension.
   */
  private async entryOf(
    script: string,
    key: number,
    deadline: number,
  ): Promise<Step<{ real: string; isDir: boolean; owner: number }>> {
    for (const path of [script, ...NODE_MAIN_EXTENSIONS.map((ext) => script + ext)]) {
      const real = await realpathUserPath(path, this.gate, key, remaining(deadline));
      if (!real.ok) {
        if (real.reason === 'timeout' || real.reason === 'busy') return { kind: 'stalled' };
        continue; // not there: try the next form
      }
      const st = await statUserPath(real.value, this.gate, key, remaining(deadline));
      if (!st.ok) {
        if (st.reason === 'timeout' || st.reason === 'busy') return { kind: 'stalled' };
        continue;
      }
      if (st.value.isFile() || st.value.isDirectory())
        return {
          kind: 'value',
          value: { real: real.value, isDir: st.value.isDirectory(), owner: st.value.uid },
        };
    }
    return { kind: 'none' };
  }

  /** The nearest trusted named package at or above `dir`, null when none, 'stalled' when out of time. */
  private async packageOf(
    dir: string,
    ctx: TrustContext,
    key: number,
    deadline: number,
  ): Promise<{ name: string; version: string | null; root: string } | null | 'stalled'> {
    let current = dir;
    for (let depth = 0; depth < MAX_WALK_DEPTH; depth++) {
      const facts = await this.factsOf(current, key, deadline);
      if (facts === 'stalled') return 'stalled';
      if (facts !== null) {
        const why = untrustedReason(facts, ctx);
        // An untrusted package.json is as if absent: the walk goes on to the next one up.
        if (why === null) return { name: facts.name, version: facts.version, root: current };
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
      mode: file.facts.mode,
      dirMode: d.value.mode,
    };
  }
}

/** Time left before `deadline` (ms, performance.now clock), at least 1 so a call is still tried. */
function remaining(deadline: number): number {
  return Math.max(1, Math.round(deadline - performance.now()));
}
