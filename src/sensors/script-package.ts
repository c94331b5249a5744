/**
 * Owns "which npm package does this interpreter run": when a process's executable is an
 * interpreter (node, nodejs, bun, deno, python*, ruby, perl), find the script argument (skipping
 * the interpreter's own flags), resolve it against the process's working directory, follow
 * symlinks (a `.bin/claude` link → `…/@anthropic-ai/claude-code/cli.js`), and walk up to the
 * nearest package.json that has a `name`. This is what makes a banned JS CLI recognisable however
 * it was launched: npx, a renamed symlink, an alias, `env`, another global prefix.
 *
 * package.json files are hostile input: size-capped, parsed defensively, a bad one is skipped
 * (the walk continues upward). Results are cached per directory for DIR_CACHE_TTL_MS.
 */
import { closeSync, fstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import type { ScriptPackage } from './observation.js';

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
 * The real path of what an interpreter runs for `script`: the file or directory itself, else the
 * file node's loader would pick by adding an extension; null when there is nothing to run.
 */
function entryOf(script: string): { real: string; isDir: boolean } | null {
  for (const path of [script, ...NODE_MAIN_EXTENSIONS.map((ext) => script + ext)]) {
    try {
      const real = realpathSync(path);
      const st = statSync(real);
      if (st.isFile() || st.isDirectory()) return { real, isDir: st.isDirectory() };
    } catch {
      // not there: try the next form
    }
  }
  return null;
}

interface DirAnswer {
  readonly at: number;
  readonly pkg: { name: string; version: string | null; root: string } | null;
}

export interface ScriptPackageResolverOptions {
  /** Clock for the cache TTL (ms). Default Date.now. */
  readonly now?: () => number;
}

export class ScriptPackageResolver {
  private readonly dirs = new Map<string, DirAnswer>();
  private readonly now: () => number;
  /** package.json files skipped (too large, not JSON, no name) since start. */
  readonly counts = { bad_package_json: 0, resolved: 0, unresolved: 0 };

  constructor(options: ScriptPackageResolverOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  /**
   * The package of the script `exe` runs with `argv`, or null (not an interpreter, no script, the
   * script is not inside a named package). `cwd` (or a function reading it, called only
   * when needed) resolves a relative script path. Never throws.
   */
  resolve(
    exe: string | null,
    name: string,
    argv: readonly string[],
    cwd: string | null | (() => string | null),
  ): ScriptPackage | null {
    const interpreter = exe && isInterpreter(exe) ? exe : isInterpreter(name) ? name : null;
    if (interpreter === null) return null;
    const candidates = scriptCandidates(interpreter, argv, MAX_SCRIPT_CANDIDATES);
    let workDir: string | null | undefined;
    let found: { real: string; isDir: boolean } | null = null;
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
      found = entryOf(script);
      if (found !== null) break;
    }
    if (found === null) {
      if (candidates.length > 0) this.counts.unresolved++;
      return null;
    }
    // `node <package dir>` runs the package's main: the walk starts in the directory itself.
    const pkg = this.packageOf(found.isDir ? found.real : dirname(found.real));
    if (pkg === null) {
      this.counts.unresolved++;
      return null;
    }
    this.counts.resolved++;
    return { ...pkg, script: found.real };
  }

  /** The nearest named package at or above `dir`. */
  private packageOf(dir: string): DirAnswer['pkg'] {
    const now = this.now();
    const visited: string[] = [];
    let found: DirAnswer['pkg'] = null;
    let current = dir;
    for (let depth = 0; depth < MAX_WALK_DEPTH; depth++) {
      const cached = this.dirs.get(current);
      // A clock stepped back would otherwise keep an answer for as long as the step.
      if (cached && now >= cached.at && now - cached.at < DIR_CACHE_TTL_MS) {
        found = cached.pkg;
        break;
      }
      visited.push(current);
      const pkg = this.readPackage(current);
      if (pkg) {
        found = pkg;
        break;
      }
      const parent = dirname(current);
      if (parent === current) break;
      current = parent;
    }
    if (this.dirs.size + visited.length > DIR_CACHE_MAX) this.dirs.clear();
    for (const d of visited) this.dirs.set(d, { at: now, pkg: found });
    return found;
  }

  private readPackage(dir: string): DirAnswer['pkg'] {
    let fd = -1;
    try {
      fd = openSync(`${dir}/package.json`, 'r');
      const st = fstatSync(fd);
      if (!st.isFile()) return null;
      if (st.size > PACKAGE_JSON_MAX_BYTES) {
        this.counts.bad_package_json++;
        return null;
      }
      const buf = Buffer.allocUnsafe(st.size);
      let n = 0;
      for (let i = 0; i < 1024 && n < st.size; i++) {
        const r = readSync(fd, buf, n, st.size - n, n);
        if (r <= 0) break;
        n += r;
      }
      const json: unknown = JSON.parse(buf.toString('utf8', 0, n));
      if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error('not an object');
      const { name, version } = json as { name?: unknown; version?: unknown };
      // A package.json without a name (e.g. {"type":"module"} in a dist folder) is not a package root.
      if (typeof name !== 'string' || name.length === 0 || name.length > 214) return null;
      return {
        name,
        version: typeof version === 'string' && version.length <= 256 ? version : null,
        root: dir,
      };
    } catch (err) {
      if (
        (err as NodeJS.ErrnoException).code !== 'ENOENT' &&
        (err as NodeJS.ErrnoException).code !== 'ENOTDIR'
      ) {
        this.counts.bad_package_json++;
      }
      return null;
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }
}
