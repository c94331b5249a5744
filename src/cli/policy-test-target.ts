/**
 * Owns turning what `guardctl policy test` is given — a running pid, an executable file, an npm
 * package directory, any other path — into the observations guardd's sensors would report for it,
 * with the sensors' own readers: /proc through proc-files.ts, SHA-256 through ExeHasher, content
 * markers through ContentMarkerScanner (plus the script files of an interpreter, script-markers.ts),
 * the script package through ScriptPackageResolver, package.json through package-reader.ts, owners
 * through UserDirectory (NSS). The decision is then taken by the same matcher and decide() as
 * guardd's; nothing here matches.
 *
 * It runs as whoever runs guardctl: files are read with that user's rights (a root daemon must
 * not answer "does /etc/shadow contain X" to anyone, so this is not a control-socket method).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { GuardError } from '../common/errors.js';
import { NSS_LOOKUP_TIMEOUT_MS, type UserDirectory } from '../common/users.js';
import type { Matcher } from '../policy/matcher.js';
import { ContentMarkerScanner } from '../sensors/content-markers.js';
import { ExeHasher } from '../sensors/exe-hash.js';
import type { Observation, Owner, PackageObservation, ProcessObservation } from '../sensors/observation.js';
import { readPackageJson } from '../sensors/package-reader.js';
import {
  readCmdline,
  readGroups,
  readLink,
  readStat,
  readUid,
  ttyPath,
} from '../sensors/process-sources/proc-files.js';
import { scanScriptFiles } from '../sensors/script-markers.js';
import { isInterpreter, ScriptPackageResolver } from '../sensors/script-package.js';

export type TargetKind = 'pid' | 'file' | 'package' | 'path';

/** One observation of the target, and what it stands for. */
export interface TargetObservation {
  /** 'process' for a pid or an executable run as a program; 'package'; 'path' (an artifact). */
  readonly as: Observation['kind'];
  readonly observation: Observation;
  /** Facts read for it that the matcher may use, for "why not" (null: not read / not applicable). */
  readonly facts: Readonly<Record<string, unknown>>;
}

/** A shebang line is read up to this many bytes (the kernel's own limit is 256). */
const SHEBANG_MAX_BYTES = 256;
/** Linux `comm` keeps this many bytes of the executable's basename. */
const COMM_MAX_CHARS = 15;
const PROC = '/proc';

/** What the target string is: an explicit kind wins; digits are a pid; else the file system says. */
export function targetKind(target: string, explicit?: string): TargetKind {
  if (explicit) {
    if (!['pid', 'file', 'package', 'path'].includes(explicit))
      throw new GuardError('GUARD_CLI_USAGE', `--kind must be pid, file, package or path, not "${explicit}"`);
    return explicit as TargetKind;
  }
  if (/^\d+$/.test(target)) return 'pid';
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(target);
  } catch {
    return 'path'; // a path glob can still name something that is not there (yet)
  }
  if (st.isDirectory()) return readPackageJson(target).ok ? 'package' : 'path';
  return st.isFile() && (st.mode & 0o111) !== 0 ? 'file' : 'path';
}

export interface ObserveOptions {
  readonly matcher: Matcher;
  readonly users: UserDirectory;
  /** Whose process a file target is taken to be (default: guardctl's user). */
  readonly uid: number;
}

/** The observations guardd would make of `target`. Throws GUARD_CLI_USAGE when it cannot be read. */
export async function observeTarget(
  target: string,
  kind: TargetKind,
  opts: ObserveOptions,
): Promise<TargetObservation[]> {
  // The uids this target's observations name: a directory user's is looked up in the background
  // (common/users.ts), so wait for it here — a person asking may wait, guardd's scan may not.
  const uids = [opts.uid];
  try {
    uids.push(kind === 'pid' ? (readUid(PROC, Number(target)) ?? opts.uid) : statSync(resolve(target)).uid);
  } catch {
    // no such target: the observer below says so.
  }
  for (const uid of new Set(uids)) await opts.users.settle(uid, NSS_LOOKUP_TIMEOUT_MS);
  switch (kind) {
    case 'pid':
      return [await observePid(Number(target), opts)];
    case 'file': {
      const path = resolve(target);
      return [await observeFile(path, opts), observePath(path, opts)];
    }
    case 'package': {
      const path = resolve(target);
      return [observePackage(path, opts), observePath(path, opts)];
    }
    case 'path':
      return [observePath(resolve(target), opts)];
  }
}

async function observePid(pid: number, opts: ObserveOptions): Promise<TargetObservation> {
  if (process.platform !== 'linux')
    throw new GuardError(
      'GUARD_CLI_USAGE',
      'policy test <pid> reads /proc: Linux only (give the file instead)',
    );
  const stat = readStat(PROC, pid);
  if (!stat) throw new GuardError('GUARD_CLI_USAGE', `no process ${pid} (or /proc/${pid} is not readable)`);
  const uid = readUid(PROC, pid);
  const exe = readLink(PROC, pid, 'exe');
  const argv = readCmdline(PROC, pid)?.argv ?? [];
  const obs: ProcessObservation = {
    kind: 'process',
    pid,
    ppid: stat.ppid,
    startTime: stat.startTime,
    name: stat.comm,
    exe,
    argv,
    owner: uid === null ? unknownOwner() : opts.users.owner(uid),
    tty: ttyPath(stat.ttyNr),
  };
  return enrich(
    obs,
    `/proc/${pid}/exe`,
    {
      uid,
      cwd: () => readLink(PROC, pid, 'cwd'),
      groups: () => readGroups(PROC, pid),
    },
    opts,
  );
}

/** An executable file as if run by path: a script's shebang interpreter becomes the process. */
async function observeFile(path: string, opts: ObserveOptions): Promise<TargetObservation> {
  const real = safeRealpath(path);
  const shebang = readShebang(real);
  let exe = real;
  let name = basename(path);
  let argv = [path];
  if (shebang) {
    const viaEnv = basename(shebang.interpreter) === 'env' && shebang.arg;
    const interpreter = viaEnv ? which(shebang.arg as string) : shebang.interpreter;
    if (interpreter) {
      exe = safeRealpath(interpreter);
      // `env node` execs node (comm "node"); a direct `#!/usr/bin/node` keeps the script's name.
      name = viaEnv ? basename(interpreter) : name;
      argv = viaEnv || !shebang.arg ? [interpreter, path] : [interpreter, shebang.arg, path];
    }
  }
  if (process.platform === 'linux') name = name.slice(0, COMM_MAX_CHARS);
  const obs: ProcessObservation = {
    kind: 'process',
    pid: 0,
    ppid: 0,
    startTime: 0,
    name,
    exe,
    argv,
    owner: opts.users.owner(opts.uid),
    tty: null,
  };
  return enrich(
    obs,
    exe,
    { uid: opts.uid, cwd: () => process.cwd(), groups: () => process.getgroups?.() ?? null },
    opts,
  );
}

/** Fills hash, content markers and script package the way the process sensor does. */
async function enrich(
  obs: ProcessObservation,
  openPath: string,
  proc: { uid: number | null; cwd: () => string | null; groups: () => readonly number[] | null },
  opts: ObserveOptions,
): Promise<TargetObservation> {
  const key = proc.uid ?? -1;
  const sha256 = await new ExeHasher().hash(openPath, key);
  const interpreter = obs.exe && isInterpreter(obs.exe) ? obs.exe : isInterpreter(obs.name) ? obs.name : null;
  const resolver = new ScriptPackageResolver();
  const scriptPackage = interpreter
    ? (await resolver.resolveOutcome(obs.exe, obs.name, obs.argv, proc.cwd, proc.uid, proc.groups)).pkg
    : null;
  const automaton = opts.matcher.markers();
  let contentMarkers: readonly string[] | null | undefined;
  if (automaton) {
    const scanner = new ContentMarkerScanner();
    const own = (await scanner.scan(openPath, automaton, key)).found;
    contentMarkers = own;
    if (interpreter) {
      const scripts = await scanScriptFiles(
        interpreter,
        { exe: obs.exe, name: obs.name, argv: obs.argv, uid: proc.uid, cwd: proc.cwd, groups: proc.groups },
        resolver,
        scanner,
        automaton,
      );
      if (scripts.found !== null) contentMarkers = [...new Set([...(own ?? []), ...scripts.found])];
    }
  }
  const full: ProcessObservation = {
    ...obs,
    sha256,
    scriptPackage,
    ...(contentMarkers !== undefined ? { contentMarkers } : {}),
  };
  return {
    as: 'process',
    observation: full,
    facts: {
      name: full.name,
      exe: full.exe,
      argv: full.argv,
      user: full.owner.user,
      groups: full.owner.groups,
      sha256,
      script_package: scriptPackage ? `${scriptPackage.name}@${scriptPackage.version ?? '?'}` : null,
      // not_needed: no rule has content markers; unreadable: the scan could not read the file
      markers_scan:
        contentMarkers === undefined ? 'not_needed' : contentMarkers === null ? 'unreadable' : 'scanned',
      content_markers: contentMarkers ?? null,
    },
  };
}

function observePackage(dir: string, opts: ObserveOptions): TargetObservation {
  const r = readPackageJson(dir);
  if (!r.ok) throw new GuardError('GUARD_CLI_USAGE', `${dir}/package.json: ${r.reason}`);
  const obs: PackageObservation = {
    kind: 'package',
    ecosystem: 'npm',
    name: r.info.name,
    version: r.info.version,
    path: dir,
    // The global node_modules it sits in: one level up, two for a scoped name.
    root: r.info.name.startsWith('@') ? dirname(dirname(dir)) : dirname(dir),
    manager: 'other',
    owner: ownerOfPath(dir, opts),
  };
  return {
    as: 'package',
    observation: obs,
    facts: { name: obs.name, version: obs.version, path: dir, user: obs.owner.user },
  };
}

function observePath(path: string, opts: ObserveOptions): TargetObservation {
  let isDirectory = false;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    // not there: still a path the policy's globs may name
  }
  const owner = ownerOfPath(path, opts);
  return {
    as: 'path',
    observation: { kind: 'path', path, isDirectory, owner },
    facts: { path, is_directory: isDirectory, user: owner.user },
  };
}

function ownerOfPath(path: string, opts: ObserveOptions): Owner {
  try {
    return opts.users.owner(statSync(path).uid);
  } catch {
    return opts.users.owner(opts.uid);
  }
}

function unknownOwner(): Owner {
  return { uid: -1, user: null, groups: [], home: null };
}

function safeRealpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * Opening the target to read its shebang: non-blocking (a FIFO swapped in for the file, or given
 * with --kind file, must not hang guardctl — often run by root on a user's path) and no
 * controlling tty (a tty device must not become root's). 0 where absent (Windows).
 */
const SHEBANG_OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/** `#!interpreter [arg]` of `file`, or null (also when what opens is not a regular file). */
function readShebang(file: string): { interpreter: string; arg: string | null } | null {
  let fd: number;
  try {
    fd = openSync(file, SHEBANG_OPEN_FLAGS);
  } catch {
    return null;
  }
  try {
    if (!fstatSync(fd).isFile()) return null;
    const buf = Buffer.alloc(SHEBANG_MAX_BYTES);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const text = buf.subarray(0, n).toString('utf8');
    if (!text.startsWith('#!')) return null;
    const line = text.slice(2).split('\n')[0]?.trim() ?? '';
    const [interpreter, ...rest] = line.split(/\s+/);
    if (!interpreter || !isAbsolute(interpreter)) return null;
    return { interpreter, arg: rest.length > 0 ? rest.join(' ') : null };
  } finally {
    closeSync(fd);
  }
}

/** `cmd` looked up on PATH as `env` would, or null. */
function which(cmd: string): string | null {
  if (isAbsolute(cmd)) return cmd;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      const st = statSync(p);
      if (st.isFile() && (st.mode & 0o111) !== 0) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** The uid of a user given by name or number (NSS through `id -u`). */
export function uidOf(user: string): number {
  if (/^\d+$/.test(user)) return Number(user);
  try {
    return Number(execFileSync('id', ['-u', '--', user], { encoding: 'utf8', timeout: 2_000 }).trim());
  } catch {
    throw new GuardError('GUARD_CLI_USAGE', `no user "${user}" on this machine`);
  }
}
