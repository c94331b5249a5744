/**
 * Owns where global npm-style trees live: every package manager's global `node_modules` for every
 * user's home, on Linux, macOS and Windows (the list is docs/install-detection.md), the bin / shim
 * directories whose links point into them, and the "anchor" directories to watch so that a root
 * that appears later (a user installs nvm) is discovered without a restart.
 *
 * A root whose base does not exist yet (an extra root, a `.npmrc` prefix, a system prefix) is
 * anchored at its nearest existing ancestor, and roots at fixed paths that are missing are
 * returned as `absent` (their bin dirs may hold links left by a reverted install).
 *
 * Discovery is a few dozen stat/readdir calls per home; it never follows a user's symlink to decide
 * whether a root exists beyond what `stat` does, and roots that are the same directory (a prefix
 * symlinked to another) are reported once, keyed by device + inode. Every call touches a user's
 * tree, so each goes through safe-read.ts (async, deadline, gated per home): a home on a stalled
 * mount makes discovery skip that home for the round (`stalled`), never freezes the daemon; a home
 * the caller already knows to be stalled (`DiscoverOptions.stalled`) is skipped without a call.
 */

import { posix, win32 } from 'node:path';
import type { Platform } from '../common/platform-paths.js';
import type { PackageManager } from './observation.js';
import { installReadGate } from './package-reader.js';
import {
  lstatUserPath,
  type ReadGate,
  readdirUserPath,
  readUserFile,
  realpathUserPath,
  type SafePathResult,
  statUserPath,
} from './safe-read.js';

/** How packages sit under a root (decides where bin links live and how symlinks are read). */
export type RootLayout = 'npm' | 'pnpm' | 'yarn' | 'bun';

export interface InstallRoot {
  /** The global node_modules directory (holds `<name>` and `@scope/<name>`). */
  readonly path: string;
  readonly manager: PackageManager;
  readonly layout: RootLayout;
  /** The home it belongs to, or null for system prefixes and extra roots. */
  readonly home: string | null;
}

export interface RootPattern {
  /** Directory the pattern starts from (a home or a system base); nothing above it is watched. */
  readonly base: string;
  /** Path segments below `base`; `*` = any one directory entry. */
  readonly segments: readonly string[];
  readonly manager: PackageManager;
  readonly layout: RootLayout;
  readonly home: string | null;
}

export interface DiscoverOptions {
  readonly platform: Platform;
  /** Homes to look in (every local user's, or the configured override). */
  readonly homes: readonly string[];
  /** Extra global node_modules directories (config `sensors.install.extra_roots`). */
  readonly extraRoots: readonly string[];
  /** Windows only: the machine's Program Files and ProgramData (defaults from the environment). */
  readonly programFiles?: string;
  /** When false, the system prefixes (/usr/lib…, /opt/homebrew…) are not included (tests). */
  readonly systemRoots?: boolean;
  /** Admission for discovery's file calls. Default: the install sensor's gate. */
  readonly gate?: ReadGate;
  /**
   * The gate key of a home's calls (or 'system', 'extra'): the install sensor gives the uid of the
   * home's user, so that all of a user's calls share one slot. Default: the home itself.
   */
  readonly gateKey?: (key: string) => string | number;
  /**
   * Gate keys known not to answer now (the install sensor's stalled trees): their calls are not
   * made, and their keys are `stalled` this round at once, instead of after a deadline.
   */
  readonly stalled?: (gateKey: string | number) => boolean;
}

export interface Discovery {
  readonly roots: readonly InstallRoot[];
  /** Existing directories whose changes may create a new root: watch them at depth 0. */
  readonly anchors: readonly string[];
  /**
   * Each anchor's key: the home whose pattern anchored it (or 'system', 'extra'), so that a watch
   * on a user's dir out of every home (above a `.npmrc` prefix not made yet) is that user's.
   */
  readonly anchorKeys: ReadonlyMap<string, string>;
  /** Homes (or 'system', 'extra') skipped this round because a call did not answer in time. */
  readonly stalled: readonly string[];
  /** Homes (or 'system', 'extra') with a pattern that had more than MAX_WILDCARD_ENTRIES roots or dirs at one level. */
  readonly truncated: readonly string[];
  /**
   * Roots that would be at a fixed path (no `*` in the pattern, extra roots, `.npmrc` prefixes) but
   * do not exist now: an install that created the root and was reverted (npm removes a root it
   * created) leaves its links in the bin dir beside where the root was. Never those of a key in
   * `stalled` (unknown this round, not absent).
   */
  readonly absent: readonly InstallRoot[];
}

/** `.npmrc` files larger than this are not read for `prefix=` (real ones are a few hundred bytes). */
const MAX_NPMRC_BYTES = 64 * 1024;
/**
 * At most this many directories per level of one pattern, its roots included (a home with 10,000
 * node versions is hostile): a `*` segment lists at most this many names, and a pattern with two
 * (pnpm dlx, Volta's scoped packages) at most this many in all — 256 × 256 of a user's empty dirs
 * were 65,536 roots, ~80 MiB of guardd's heap. The first by name are kept (sorted listings).
 */
const MAX_WILDCARD_ENTRIES = 256;
/** Ancestors looked at to anchor a missing root's base (real paths are a handful deep). */
const MAX_ANCHOR_HOPS = 32;

/** Every root pattern for `options` (before checking what exists). Exported for docs and tests. */
export function rootPatterns(
  options: DiscoverOptions,
  npmrcPrefixes?: ReadonlyMap<string, string | null>,
): RootPattern[] {
  const { platform } = options;
  const p = platform === 'win32' ? win32 : posix;
  const out: RootPattern[] = [];
  const add = (
    base: string,
    rel: string,
    manager: PackageManager,
    layout: RootLayout,
    home: string | null,
  ): void => {
    out.push({ base, segments: rel.split('/').filter(Boolean), manager, layout, home });
  };
  if (options.systemRoots !== false) {
    if (platform === 'win32') {
      const pf = options.programFiles ?? process.env.ProgramFiles ?? 'C:\\Program Files';
      add(p.join(pf, 'nodejs'), 'node_modules', 'npm', 'npm', null);
    } else {
      add('/usr/lib', 'node_modules', 'npm', 'npm', null);
      add('/usr/local/lib', 'node_modules', platform === 'darwin' ? 'homebrew' : 'npm', 'npm', null);
      add('/opt/homebrew/lib', 'node_modules', 'homebrew', 'npm', null);
      if (platform === 'linux')
        add('/home/linuxbrew/.linuxbrew/lib', 'node_modules', 'homebrew', 'npm', null);
    }
  }
  for (const home of options.homes) {
    if (platform === 'win32') {
      const roaming = p.join(home, 'AppData', 'Roaming');
      const local = p.join(home, 'AppData', 'Local');
      add(roaming, 'npm/node_modules', 'npm', 'npm', home);
      add(roaming, 'nvm/*/node_modules', 'nvm', 'npm', home);
      add(local, 'pnpm/global/*/node_modules', 'pnpm', 'pnpm', home);
      add(local, 'Yarn/Data/global/node_modules', 'yarn', 'yarn', home);
      add(local, 'Volta/tools/image/packages/*/node_modules', 'volta', 'npm', home);
      add(local, 'Volta/tools/image/packages/@*/*/node_modules', 'volta', 'npm', home);
      add(local, 'fnm_multishells/*/node_modules', 'fnm', 'npm', home);
      add(roaming, 'fnm/node-versions/*/installation/node_modules', 'fnm', 'npm', home);
      add(local, 'npm-cache/_npx/*/node_modules', 'npx', 'npm', home);
      add(local, 'pnpm-cache/dlx/*/*/node_modules', 'npx', 'pnpm', home);
      add(home, '.bun/install/global/node_modules', 'bun', 'bun', home);
      continue;
    }
    add(home, '.npm-global/lib/node_modules', 'npm', 'npm', home);
    add(home, '.nvm/versions/node/*/lib/node_modules', 'nvm', 'npm', home);
    add(home, '.local/share/fnm/node-versions/*/installation/lib/node_modules', 'fnm', 'npm', home);
    add(home, '.fnm/node-versions/*/installation/lib/node_modules', 'fnm', 'npm', home);
    add(home, '.volta/tools/image/packages/*/lib/node_modules', 'volta', 'npm', home);
    add(home, '.volta/tools/image/packages/@*/*/lib/node_modules', 'volta', 'npm', home);
    add(home, '.volta/tools/image/node/*/lib/node_modules', 'volta', 'npm', home);
    add(home, '.asdf/installs/nodejs/*/lib/node_modules', 'asdf', 'npm', home);
    add(home, '.local/share/mise/installs/node/*/lib/node_modules', 'mise', 'npm', home);
    add(home, '.local/share/pnpm/global/*/node_modules', 'pnpm', 'pnpm', home);
    add(home, '.config/yarn/global/node_modules', 'yarn', 'yarn', home);
    add(home, '.bun/install/global/node_modules', 'bun', 'bun', home);
    add(home, '.npm/_npx/*/node_modules', 'npx', 'npm', home);
    add(home, '.cache/pnpm/dlx/*/*/node_modules', 'npx', 'pnpm', home);
    if (platform === 'darwin') {
      add(
        home,
        'Library/Application Support/fnm/node-versions/*/installation/lib/node_modules',
        'fnm',
        'npm',
        home,
      );
      add(home, 'Library/pnpm/global/*/node_modules', 'pnpm', 'pnpm', home);
      add(home, 'Library/Caches/pnpm/dlx/*/*/node_modules', 'npx', 'pnpm', home);
    }
    const prefix = npmrcPrefixes?.get(home);
    if (prefix) add(prefix, 'lib/node_modules', 'npm', 'npm', home);
  }
  if (platform === 'win32') {
    for (const home of options.homes) {
      const prefix = npmrcPrefixes?.get(home);
      if (prefix) add(prefix, 'node_modules', 'npm', 'npm', home);
    }
  }
  return out;
}

/** Deadline of one discovery call (ms): a home that does not answer in this long is skipped. */
const DISCOVERY_CALL_TIMEOUT_MS = 2000;

/**
 * The file calls of one discovery, keyed by whose tree they touch; after the first call of a key
 * that does not answer, the rest of that key's calls are skipped (a stalled home would otherwise
 * cost a deadline per call).
 */
class DiscoveryProbe {
  readonly stalled = new Set<string>();

  constructor(
    private readonly gate: ReadGate,
    private readonly gateKey: (key: string) => string | number,
    private readonly known: (gateKey: string | number) => boolean,
  ) {}

  /** True when `key`'s calls are not made this round (it did not answer, now or before). */
  private skipped(key: string): boolean {
    if (!this.stalled.has(key) && this.known(this.gateKey(key))) this.stalled.add(key);
    return this.stalled.has(key);
  }

  private async call<T>(key: string, run: () => Promise<SafePathResult<T>>): Promise<T | null> {
    if (this.skipped(key)) return null;
    const r = await run();
    if (r.ok) return r.value;
    if (r.reason === 'timeout' || r.reason === 'busy') this.stalled.add(key);
    return null;
  }

  /** True when `path` is (or links to) a directory. */
  async isDir(key: string, path: string): Promise<boolean> {
    const st = await this.call(key, () =>
      statUserPath(path, this.gate, this.gateKey(key), DISCOVERY_CALL_TIMEOUT_MS),
    );
    return st?.isDirectory() ?? false;
  }

  /** device:inode of a directory (following links), or null when it is not one. */
  async dirId(key: string, path: string): Promise<string | null> {
    const st = await this.call(key, () =>
      statUserPath(path, this.gate, this.gateKey(key), DISCOVERY_CALL_TIMEOUT_MS),
    );
    return st?.isDirectory() ? `${st.dev}:${st.ino}` : null;
  }

  /** The real path of `path`, or null when it cannot be had. */
  async realpath(key: string, path: string): Promise<string | null> {
    return this.call(key, () =>
      realpathUserPath(path, this.gate, this.gateKey(key), DISCOVERY_CALL_TIMEOUT_MS),
    );
  }

  /** Names of the subdirectories (or links) of `dir`, sorted; empty when unreadable. */
  async listDirs(key: string, dir: string): Promise<string[]> {
    const entries = await this.call(key, () =>
      readdirUserPath(dir, this.gate, this.gateKey(key), DISCOVERY_CALL_TIMEOUT_MS),
    );
    return (entries ?? [])
      .filter((e) => e.isDirectory() || e.isSymbolicLink())
      .map((e) => e.name)
      .sort();
  }

  /** The `prefix=` of `<home>/.npmrc` (see `npmrcPrefix`), null when absent or stalled. */
  async npmrcPrefix(home: string, platform: Platform): Promise<string | null> {
    if (this.skipped(home)) return null;
    const file = (platform === 'win32' ? win32 : posix).join(home, '.npmrc');
    const read = await readUserFile(file, {
      maxBytes: MAX_NPMRC_BYTES,
      gate: this.gate,
      key: this.gateKey(home),
      timeoutMs: DISCOVERY_CALL_TIMEOUT_MS,
    });
    if (!read.ok && (read.reason === 'timeout' || read.reason === 'busy')) this.stalled.add(home);
    return read.ok ? prefixOfNpmrc(read.data.toString('utf8'), home, platform) : null;
  }

  /** The layout of an extra root, from its path (a pnpm global dir has `.pnpm` inside). */
  async layoutOf(key: string, path: string): Promise<RootLayout> {
    const st = await this.call(key, () =>
      lstatUserPath(posix.join(path, '.pnpm'), this.gate, this.gateKey(key), DISCOVERY_CALL_TIMEOUT_MS),
    );
    return st?.isDirectory() ? 'pnpm' : 'npm';
  }
}

/** Finds the roots that exist now and the anchors to watch for new ones. Never rejects. */
export async function discoverRoots(options: DiscoverOptions): Promise<Discovery> {
  const p = options.platform === 'win32' ? win32 : posix;
  const probe = new DiscoveryProbe(
    options.gate ?? installReadGate,
    options.gateKey ?? ((k) => k),
    options.stalled ?? (() => false),
  );
  const roots: InstallRoot[] = [];
  /** Anchor → the key of the pattern that anchored it first. */
  const anchors = new Map<string, string>();
  const anchor = (key: string, dir: string): void => {
    if (!anchors.has(dir)) anchors.set(dir, key);
  };
  /** Absent root path → the root and the key whose calls found it missing. */
  const absent = new Map<string, { root: InstallRoot; key: string }>();
  const seen = new Set<string>();
  const truncated = new Set<string>();
  /**
   * A user's root is known by its real path, and belongs to the home that holds that path: another
   * user's link to it (their `~/.npm-global` → this user's) does not make it theirs — known by the
   * link's path, the owner's banned package there could not be quarantined (two users control it).
   */
  const addRoot = async (key: string, root: InstallRoot): Promise<void> => {
    const id = await probe.dirId(key, root.path);
    if (!id || seen.has(id)) return;
    // System prefixes and extra roots (root's and the admin's) keep the path they are named by.
    const real = root.home === null ? root.path : await probe.realpath(key, root.path);
    if (!real) return;
    seen.add(id);
    const within = (h: string): boolean => real === h || real.startsWith(h.endsWith(p.sep) ? h : h + p.sep);
    // A link out of every home (to root's dirs, say) keeps the path it was found by, as before:
    // the user's link stays on it, so nothing there is acted on as if it were root's own tree.
    const owner = options.homes.find(within);
    roots.push(owner ? { ...root, path: real, home: owner } : root);
  };
  /**
   * A base that does not exist (yet): watch its nearest existing ancestor, so creating it (an
   * admin's extra root, a user's new `.npmrc` prefix) re-runs discovery. Never `/` itself.
   */
  const anchorAbove = async (key: string, path: string): Promise<void> => {
    let cur = path;
    for (let i = 0; i < MAX_ANCHOR_HOPS; i++) {
      const up = p.dirname(cur);
      if (up === cur || p.dirname(up) === up) return;
      cur = up;
      if (await probe.isDir(key, cur)) {
        anchor(key, cur);
        return;
      }
    }
  };
  for (const extra of options.extraRoots) {
    const path = p.resolve(extra);
    if (await probe.isDir('extra', path)) {
      const layout = await probe.layoutOf('extra', path);
      await addRoot('extra', { path, manager: 'other', layout, home: null });
    } else {
      absent.set(path, { root: { path, manager: 'other', layout: 'npm', home: null }, key: 'extra' });
      await anchorAbove('extra', path);
    }
  }
  const prefixes = new Map<string, string | null>();
  for (const home of options.homes) prefixes.set(home, await probe.npmrcPrefix(home, options.platform));
  for (const pattern of rootPatterns(options, prefixes)) {
    const key = pattern.home ?? 'system';
    const root = (path: string): InstallRoot => ({
      path,
      manager: pattern.manager,
      layout: pattern.layout,
      home: pattern.home,
    });
    /** Remembers where the root would be when the rest of the pattern has no `*`. */
    const noteAbsent = (dir: string, rest: readonly string[]): void => {
      if (rest.some((seg) => seg.includes('*'))) return;
      const path = p.join(dir, ...rest);
      if (!absent.has(path)) absent.set(path, { root: root(path), key });
    };
    if (!(await probe.isDir(key, pattern.base))) {
      // Homes always exist; a missing base is a system prefix or a `.npmrc` prefix not made yet.
      noteAbsent(pattern.base, pattern.segments);
      if (!probe.stalled.has(key)) await anchorAbove(key, pattern.base);
      continue;
    }
    // Walk the segments; every directory where the walk stops short is an anchor.
    let frontier = [pattern.base];
    for (const [i, seg] of pattern.segments.entries()) {
      const next: string[] = [];
      let full = false;
      for (const dir of frontier) {
        if (full) break;
        if (seg === '*' || seg === '@*') {
          anchor(key, dir);
          for (const name of await probe.listDirs(key, dir)) {
            if (seg === '@*' ? !name.startsWith('@') : name.startsWith('.')) continue;
            full = next.length >= MAX_WILDCARD_ENTRIES;
            if (full) break;
            next.push(p.join(dir, name));
          }
          if (full) truncated.add(key);
        } else {
          const child = p.join(dir, seg);
          if (await probe.isDir(key, child)) next.push(child);
          else {
            anchor(key, dir);
            noteAbsent(dir, pattern.segments.slice(i));
          }
        }
      }
      frontier = next;
    }
    for (const path of frontier) await addRoot(key, root(path));
  }
  const present = new Set(roots.map((r) => r.path));
  return {
    roots,
    anchors: [...anchors.keys()].sort(),
    anchorKeys: anchors,
    stalled: [...probe.stalled].sort(),
    truncated: [...truncated].sort(),
    // A key that stalled did not say what is missing: its roots are unknown this round, not absent.
    absent: [...absent.values()]
      .filter((a) => !present.has(a.root.path) && !probe.stalled.has(a.key))
      .map((a) => a.root),
  };
}

/**
 * Directories whose entries may be links or shims into packages of `root` (removed on quarantine):
 * the prefix's `bin` (npm, nvm, fnm, asdf, mise, Homebrew), `<root>/.bin`, PNPM_HOME (pnpm), the
 * yarn and bun bin dirs. Derived from the root's own path (not from who owns the files), so a root
 * in any home finds its own bin dirs. Windows npm puts `.cmd`/`.ps1` shims in the prefix itself.
 */
export function binDirsFor(root: InstallRoot, platform: Platform): string[] {
  const p = platform === 'win32' ? win32 : posix;
  const dirs = [p.join(root.path, '.bin')];
  const parent = p.dirname(root.path);
  if (platform === 'win32') dirs.push(parent);
  else if (p.basename(parent) === 'lib') dirs.push(p.join(p.dirname(parent), 'bin'));
  if (root.layout === 'pnpm') {
    // <PNPM_HOME>/global/<v>/node_modules: shims live in PNPM_HOME.
    const globalDir = ancestorNamed(root.path, 'global', p);
    if (globalDir) dirs.push(p.dirname(globalDir));
  }
  if (root.layout === 'yarn') {
    // <home>/.config/yarn/global/node_modules → <home>/.yarn/bin (Windows: …/Yarn/Data/global → Yarn/bin).
    const config = ancestorNamed(root.path, '.config', p);
    if (config) dirs.push(p.join(p.dirname(config), '.yarn', 'bin'));
    const yarn = ancestorNamed(root.path, 'Yarn', p);
    if (yarn) dirs.push(p.join(yarn, 'bin'));
  }
  if (root.layout === 'bun') {
    const bun = ancestorNamed(root.path, '.bun', p);
    if (bun) dirs.push(p.join(bun, 'bin'));
  }
  return [...new Set(dirs)];
}

/**
 * Shim directories whose entries are matched by bin *name* (they are all links to one shim binary
 * or scripts that call the manager): Volta, asdf, mise. Derived from the root's path.
 */
export function shimDirsFor(root: InstallRoot, platform: Platform): string[] {
  const p = platform === 'win32' ? win32 : posix;
  switch (root.manager) {
    case 'volta': {
      const v = ancestorNamed(root.path, '.volta', p) ?? ancestorNamed(root.path, 'Volta', p);
      return v ? [p.join(v, 'bin')] : [];
    }
    case 'asdf': {
      const a = ancestorNamed(root.path, '.asdf', p);
      return a ? [p.join(a, 'shims')] : [];
    }
    case 'mise': {
      const m = ancestorNamed(root.path, 'mise', p);
      return m ? [p.join(m, 'shims')] : [];
    }
    default:
      return [];
  }
}

/** The nearest ancestor of `path` whose basename is `name`, or null. */
function ancestorNamed(path: string, name: string, p: typeof posix): string | null {
  let cur = p.dirname(path);
  for (let i = 0; i < 64; i++) {
    if (p.basename(cur) === name) return cur;
    const up = p.dirname(cur);
    if (up === cur) return null;
    cur = up;
  }
  return null;
}

/**
 * The `prefix` from a user's `.npmrc`, or null. The file is the user's (hostile): read through
 * safe-read.ts (regular file, no link followed, size-capped, deadline), and only the `prefix=`
 * line is read; the value must be an absolute path.
 */
export async function npmrcPrefix(
  file: string,
  home: string,
  platform: Platform,
  gate: ReadGate = installReadGate,
): Promise<string | null> {
  const read = await readUserFile(file, { maxBytes: MAX_NPMRC_BYTES, gate, key: home });
  return read.ok ? prefixOfNpmrc(read.data.toString('utf8'), home, platform) : null;
}

/** The absolute `prefix=` of `.npmrc` text (`~` and `$HOME` expanded), or null. */
function prefixOfNpmrc(text: string, home: string, platform: Platform): string | null {
  let prefix: string | null = null;
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*prefix\s*=\s*(.*?)\s*$/.exec(line);
    if (m) prefix = (m[1] ?? '').replace(/^(["'])(.*)\1$/, '$2');
  }
  if (!prefix) return null;
  const p = platform === 'win32' ? win32 : posix;
  if (prefix === '~' || prefix.startsWith('~/')) prefix = p.join(home, prefix.slice(1));
  prefix = prefix.replace(/^\$\{HOME\}|^\$HOME/, home);
  if (!p.isAbsolute(prefix) || prefix.includes('\0')) return null;
  return p.normalize(prefix);
}
