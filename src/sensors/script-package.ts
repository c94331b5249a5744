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
import { closeSync, fstatSync, openSync, readSync, realpathSync } from 'node:fs';
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
    if (argv[i] !== 'run') return null;
    i++;
  } else if (family === 'bun' && (argv[i] === 'run' || argv[i] === 'x')) {
    i++;
  }
  const valueFlags =
    family === 'python' ? PY_VALUE_FLAGS : family === 'rubyperl' ? RUBY_PERL_VALUE_FLAGS : NODE_VALUE_FLAGS;
  const noScript =
    family === 'python' ? PY_NO_SCRIPT : family === 'rubyperl' ? RUBY_PERL_NO_SCRIPT : NODE_NO_SCRIPT;
  // Bounded by argv length (the source already capped argv).
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') return argv[i + 1] ?? null;
    if (arg === '-' || arg === '') return null;
    if (!arg.startsWith('-')) return arg;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (noScript.has(flag)) return null;
    if (eq < 0 && valueFlags.has(flag)) i++;
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
    const arg = scriptArgument(interpreter, argv);
    if (arg === null || arg.length > 4096 || arg.includes('\u0000')) return null;
    let script: string;
    // The working directory is read only now, for an interpreter with a relative script.
    const dir = isAbsolute(arg) ? null : typeof cwd === 'function' ? cwd() : cwd;
    if (isAbsolute(arg)) script = arg;
    else if (dir) script = resolve(dir, arg);
    else return null;
    let real: string;
    try {
      real = realpathSync(script);
    } catch {
      this.counts.unresolved++;
      return null;
    }
    const pkg = this.packageOf(dirname(real));
    if (pkg === null) {
      this.counts.unresolved++;
      return null;
    }
    this.counts.resolved++;
    return { ...pkg, script: real };
  }

  /** The nearest named package at or above `dir`. */
  private packageOf(dir: string): DirAnswer['pkg'] {
    const now = this.now();
    const visited: string[] = [];
    let found: DirAnswer['pkg'] = null;
    let current = dir;
    for (let depth = 0; depth < MAX_WALK_DEPTH; depth++) {
      const cached = this.dirs.get(current);
      if (cached && now - cached.at < DIR_CACHE_TTL_MS) {
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
