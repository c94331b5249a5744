/**
 * Owns recognising the dynamic loader run as a program (`ld-linux-x86-64.so.2 ./tool args…`) and
 * naming the program it loads. Run that way, the kernel execs the loader, not the tool: the
 * process's exe and name are the loader's, and the tool's file is opened and mapped by the loader
 * itself, which raises no exec event and no exec permission request. Without this the loader
 * would be a way around every name, path, hash and content-marker rule.
 *
 * The process sensor builds a second observation for such a process from the program argument:
 * its name, its path (relative to the process's working directory) and the argv from it on, and
 * hashes and scans that file instead of the loader. The kill then follows within the exec event's
 * latency (docs/process-detection.md): the loader is allowed to start because, at exec-permission
 * time, nobody can see which program it was given (argv is not readable yet).
 *
 * Recognised by file name (`ld-*.so*`: glibc's ld-linux*, musl's ld-musl-*, old ld-2.NN.so), so a
 * renamed copy of the loader is not recognised here; docs/process-detection.md says so.
 */
import { basename } from 'node:path';

/**
 * Loader file names: glibc's ld-linux-x86-64.so.2, ld-linux-aarch64.so.1, ld-2.31.so, ld.so.1,
 * ld64.so.2 (ppc64, s390x), musl's ld-musl-x86_64.so.1.
 */
const LOADER_NAME = /^(?:ld-[A-Za-z0-9_.-]*\.so(?:\.\d+)*|ld\.so(?:\.\d+)?|ld64\.so\.\d+)$/;

/** glibc ld.so options that take the next argument as their value (ld.so --help, glibc 2.36). */
const WITH_VALUE = new Set([
  '--glibc-hwcaps-prefix',
  '--library-path',
  '--inhibit-rpath',
  '--audit',
  '--preload',
  '--argv0',
  '--glibc-hwcaps-prepend',
  '--glibc-hwcaps-mask',
]);

/** Whether `exe` (a real path) is a dynamic loader. */
export function isDynamicLoader(exe: string | null): boolean {
  return exe !== null && LOADER_NAME.test(basename(exe));
}

export interface LoadedProgram {
  /** Index in argv of the program argument (the program's own argv starts there). */
  readonly index: number;
  /**
   * The argument as given: relative to the process's working directory unless absolute (glibc's
   * loader searches no directory for its program, not even with --library-path: a bare name that
   * is not in the system library dirs fails to load).
   */
  readonly path: string;
}

/** Modes in which the loader maps the program without running it (`ldd` runs `ld.so --list`), or runs nothing. */
const NOT_RUNNING = new Set([
  '--list',
  '--verify',
  '--help',
  '--version',
  '--list-tunables',
  '--list-diagnostics',
]);

/**
 * The program a loader runs: the first argument after argv[0] that is not an option (or an
 * option's value), or the one after `--`. Null when there is none, or the loader only inspects
 * it (`ld.so --list tool`, what ldd runs) or prints something (`--help`).
 */
export function loadedProgram(argv: readonly string[]): LoadedProgram | null {
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i] as string;
    let index = i;
    if (NOT_RUNNING.has(a)) return null;
    if (a === '--') index = i + 1;
    else if (WITH_VALUE.has(a)) {
      i++;
      continue;
    } else if (a.startsWith('--')) continue; // --list, --verify, --inhibit-cache …
    const path = argv[index];
    return path === undefined || path === '' ? null : { index, path };
  }
  return null;
}
