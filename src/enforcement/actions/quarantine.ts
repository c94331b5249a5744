/**
 * Owns the `block` action for installed things: move a package directory (or a path artifact)
 * into the quarantine, remove the bin links / shims that pointed into it, tell the owner.
 *
 * What may be moved is decided here, from what is at the path *now*: a real directory inside its
 * root (a package), or — for an `npm link`-style package — the symlink itself, and only when it
 * resolves to a package of the observed name. Anything else (the directory was swapped for a
 * symlink to /etc, a parent now leads out of the root) is refused: GUARD_QUARANTINE_UNSAFE_PATH.
 *
 * A package the installer already removed (`removed`: npm rolled back after its install script
 * was killed), or removed while it was being moved, leaves only links: those proven to point into
 * its former path are removed, as the owner of their directory, and the result is
 * `install_reverted`.
 *
 * The path is in a user's tree, down to a FUSE mount of theirs that never answers: every look the
 * action takes there itself (lstat, realpath, package.json) goes through the install read gate
 * under the tree's key (the observation's `treeKey`, which the install sensor's own calls use),
 * with a deadline (src/sensors/safe-read.ts), and so does the store's (owner-fs `actorFor`). A look
 * that finds no slot or no answer in time ends the action at once, before anything is recorded or
 * moved: `failed` with GUARD_QUARANTINE_BUSY. The user's stuck call keeps their one slot, never a
 * pool thread per try, and other users' quarantines go on.
 */
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { errorMessage, GuardError, isGuardError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { currentPlatform, type Platform } from '../../common/platform-paths.js';
import type { Decision } from '../../policy/matcher.js';
import { type TreeKey, turnedAway } from '../../sensors/install-reads.js';
import { binDirsFor, type InstallRoot, shimDirsFor } from '../../sensors/install-roots.js';
import type { PackageObservation, PathObservation } from '../../sensors/observation.js';
import { installReadGate, readPackageJsonAsync } from '../../sensors/package-reader.js';
import { lstatUserPath, realpathUserPath } from '../../sensors/safe-read.js';
import type { Action, ActionResult } from '../action.js';
import type { UserNotifier } from '../notifier.js';
import type { QuarantineRequest, QuarantineStore } from '../quarantine-store.js';

export interface QuarantineActionOptions {
  readonly store: QuarantineStore;
  /** Root-only directory under the state dir (informational: the store owns it). */
  readonly quarantineDir?: string;
  readonly notifier: UserNotifier;
  readonly logger: Logger;
  readonly platform?: Platform;
}

/**
 * When to look again for links into a quarantined path (ms after the move): npm links bins before
 * postinstall, other managers within a second or two of extracting; 10 s covers a slow machine.
 */
const LATE_LINK_SWEEPS_MS = [1_000, 3_000, 10_000];

export class QuarantineAction implements Action<PackageObservation | PathObservation> {
  private readonly log: Logger;
  private readonly platform: Platform;

  constructor(private readonly options: QuarantineActionOptions) {
    this.log = options.logger.child({ component: 'action.quarantine' });
    this.platform = options.platform ?? currentPlatform();
  }

  /** Moves the observed thing into quarantine. Resolves, never rejects. */
  async execute(obs: PackageObservation | PathObservation, decision: Decision): Promise<ActionResult> {
    const started = performance.now();
    const ms = (): number => Math.round((performance.now() - started) * 100) / 100;
    try {
      // The installer removed the package itself: nothing to move, only its links to clean.
      if (obs.kind === 'package' && obs.removed) return await this.cleanLeftovers(obs, ms);
      const req =
        obs.kind === 'package' ? await this.packageRequest(obs, decision) : this.pathRequest(obs, decision);
      const manifest = await this.options.store.quarantine(req);
      this.scheduleSweeps(manifest.id);
      const what = obs.kind === 'package' ? obs.name : obs.path;
      // Telling the owner must not hold up the result; the notifier bounds its own time.
      void this.options.notifier
        .notify(
          { uid: obs.owner.uid, user: obs.owner.user, tty: null },
          { title: `toolguard removed ${what}`, body: decision.message, url: decision.url },
        )
        .catch(() => undefined);
      return {
        actionTaken: 'quarantined',
        latencyMs: ms(),
        error: null,
        details: { quarantine_id: manifest.id, links_removed: manifest.links.map((l) => l.path) },
      };
    } catch (err) {
      // The installer removed it while it was being moved (npm rolling back after its install
      // script was killed): the move rolled back, and what is left are its links. (Not looked
      // for when the path did not answer: it would not now either.)
      if (obs.kind === 'package' && !isGuardError(err, 'GUARD_QUARANTINE_BUSY')) {
        const there = await lstatUserPath(obs.path, installReadGate, keyOf(obs));
        if (!there.ok && there.reason === 'missing') return this.cleanLeftovers(obs, ms);
      }
      const code = isGuardError(err) ? err.code : 'GUARD_QUARANTINE_IO';
      this.log.warn({ path: obs.path, code, err: errorMessage(err) }, 'quarantine refused or failed');
      return { actionTaken: 'failed', latencyMs: ms(), error: `${code}: ${errorMessage(err)}` };
    }
  }

  /**
   * Removes the links a package its installer removed left behind: `install_reverted`. Links left
   * alone make it `failed`: GUARD_QUARANTINE_BUSY when a place did not answer in time, else
   * GUARD_QUARANTINE_UNSAFE_PATH.
   */
  private async cleanLeftovers(obs: PackageObservation, ms: () => number): Promise<ActionResult> {
    const cleaned = await this.options.store.removeLeftoverLinks({
      path: obs.path,
      linkDirs: binDirsFor(this.rootOf(obs), this.platform),
      aliasDirs: this.aliasDirs(obs),
      gateKey: keyOf(obs),
    });
    const refused = cleaned.refused.map((r) => `${r.path} (${r.reason})`).join('; ');
    const code = cleaned.refused.some((r) => r.reason.startsWith('GUARD_QUARANTINE_BUSY'))
      ? 'GUARD_QUARANTINE_BUSY'
      : 'GUARD_QUARANTINE_UNSAFE_PATH';
    return {
      actionTaken: refused ? 'failed' : 'install_reverted',
      latencyMs: ms(),
      error: refused ? `${code}: leftover links not removed: ${refused}` : null,
      details: { links_removed: cleaned.removed },
    };
  }

  /**
   * An installer may still be creating bin links when the package is taken (yarn, pnpm and bun
   * link after extracting everything): sweep for late links into the old path a few times.
   */
  private scheduleSweeps(id: string): void {
    for (const delay of LATE_LINK_SWEEPS_MS) {
      const t = setTimeout(() => void this.options.store.sweepLinks(id), delay);
      t.unref();
    }
  }

  /** What the store is asked to move; throws GUARD_QUARANTINE_BUSY when a look did not answer in time. */
  private async packageRequest(obs: PackageObservation, decision: Decision): Promise<QuarantineRequest> {
    const key = keyOf(obs);
    const answered = <R extends { ok: boolean; reason?: string; detail?: string }>(r: R, what: string): R => {
      if (turnedAway(r))
        throw new GuardError(
          'GUARD_QUARANTINE_BUSY',
          `${what} did not answer in time (${r.detail ?? r.reason}: a stalled mount, or its tree's read slot held); nothing moved`,
          { path: obs.path },
        );
      return r;
    };
    let expect: QuarantineRequest['expect'] = 'directory';
    const st = answered(await lstatUserPath(obs.path, installReadGate, key), obs.path);
    if (st.ok && st.value.isSymbolicLink()) {
      // npm link-style: the link is what is installed; move it (never its target) only when it
      // really is a link to a package of this name. Anything else is a swap: refuse.
      const target = answered(await realpathUserPath(obs.path, installReadGate, key), obs.path);
      const pkg = target.ok
        ? answered(await readPackageJsonAsync(target.value, key), join(target.value, 'package.json'))
        : null;
      expect = pkg?.ok && pkg.info.name === obs.name ? 'symlink' : 'directory';
    }
    const pkg = answered(await readPackageJsonAsync(obs.path, key), join(obs.path, 'package.json'));
    const binNames = pkg.ok ? Object.keys(pkg.info.bin) : [];
    const root = this.rootOf(obs);
    const linkDirs = binDirsFor(root, this.platform);
    const aliasDirs = this.aliasDirs(obs);
    return {
      kind: 'package',
      path: obs.path,
      root: obs.root,
      expect,
      linkDirs,
      aliasDirs,
      shimDirs: shimDirsFor(root, this.platform),
      binNames,
      ownerUser: obs.owner.user,
      rule: decision.rule,
      policyVersion: decision.policyVersion,
      package: { name: obs.name, version: obs.version, manager: obs.manager },
      gateKey: key,
    };
  }

  private rootOf(obs: PackageObservation): InstallRoot {
    return { path: obs.root, manager: obs.manager, layout: layoutOf(obs), home: obs.owner.home };
  }

  /** The root and the package's scope dir: pnpm-style links to the package live there. */
  private aliasDirs(obs: PackageObservation): string[] {
    const dirs = [obs.root];
    const scope = /^(@[^/]+)\//.exec(obs.name)?.[1];
    if (scope) dirs.push(join(obs.root, scope));
    return dirs;
  }

  private pathRequest(obs: PathObservation, decision: Decision): QuarantineRequest {
    const home = obs.owner.home;
    const inHome = home !== null && isInside(obs.path, home);
    const root = inHome ? home : parentOf(obs.path);
    // Launcher links of native installers live in ~/.local/bin: the owner's, and the one beside
    // the artifact's own .local (the artifact's home, whoever owns the file).
    const linkDirs = home ? [join(home, '.local', 'bin'), join(home, 'bin')] : [];
    const local = ancestorNamed(obs.path, '.local');
    if (local) linkDirs.push(join(local, 'bin'));
    return {
      kind: 'path',
      path: obs.path,
      root,
      expect: obs.isDirectory ? 'directory' : 'file-or-symlink',
      linkDirs: [...new Set(linkDirs)],
      shimDirs: [],
      binNames: [],
      ownerUser: obs.owner.user,
      rule: decision.rule,
      policyVersion: decision.policyVersion,
      package: null,
      gateKey: keyOf(obs),
    };
  }
}

/** The install read gate's key of every look at `obs`'s path: its tree's, else its owner's uid. */
function keyOf(obs: PackageObservation | PathObservation): TreeKey {
  return obs.treeKey ?? obs.owner.uid;
}

function layoutOf(obs: PackageObservation): InstallRoot['layout'] {
  if (obs.manager === 'pnpm' || obs.path.includes('/.pnpm/') || obs.path.includes('\\.pnpm\\')) return 'pnpm';
  if (obs.manager === 'yarn') return 'yarn';
  if (obs.manager === 'bun') return 'bun';
  return 'npm';
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel.length > 0 && !rel.startsWith('..') && !isAbsolute(rel);
}

function ancestorNamed(path: string, name: string): string | null {
  let cur = dirname(path);
  for (let i = 0; i < 64 && dirname(cur) !== cur; i++) {
    if (basename(cur) === name) return cur;
    cur = dirname(cur);
  }
  return null;
}

function parentOf(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return i > 0 ? path.slice(0, i) : path;
}
