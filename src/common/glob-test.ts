/**
 * Owns turning picomatch globs into lean match functions for what is held for the daemon's
 * lifetime (the compiled policy's exe and path globs, the install sensor's path globs).
 *
 * Why not `picomatch(glob)` itself: the function it returns closes over the glob's full parse
 * state (every token with its output) for its `returnObject` mode, ~4.7 KiB of heap per glob where
 * the RegExp alone is ~0.4 KiB. A 1,000-rule policy expands to tens of thousands of globs (exe
 * globs + path globs × homes, compiled again by the safety check for three platforms), which made
 * that state the largest part of guardd's memory (docs/security.md "Memory budget").
 *
 * Same answers as picomatch's matcher with the same options: the empty string never matches; a
 * string equal to the glob matches; otherwise the glob's RegExp decides. `windows` defaults to
 * the host OS as picomatch's default export does. Inputs are expected in posix form (callers
 * convert backslashes), so picomatch's `format` step is a no-op and is left out.
 */
import picomatch from 'picomatch';

export interface GlobTestOptions {
  readonly nocase?: boolean;
  /** Leading-dot names match `*` and `**` (picomatch `dot`). Default true, as every caller here wants. */
  readonly dot?: boolean;
}

const WINDOWS = process.platform === 'win32';

/** A test of one glob; throws picomatch's error on a glob it cannot compile. */
export function globTest(glob: string, options: GlobTestOptions = {}): (s: string) => boolean {
  const re = picomatch.makeRe(glob, {
    dot: options.dot ?? true,
    nocase: options.nocase ?? false,
    windows: WINDOWS,
  });
  return (s) => s !== '' && (s === glob || re.test(s));
}

/** A test that any of `globs` matches (picomatch(array) semantics); throws as globTest does. */
export function anyGlobTest(globs: readonly string[], options: GlobTestOptions = {}): (s: string) => boolean {
  if (globs.length === 1) return globTest(globs[0] as string, options);
  const tests = globs.map((g) => globTest(g, options));
  return (s) => {
    for (const t of tests) if (t(s)) return true;
    return false;
  };
}
