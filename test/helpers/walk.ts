/**
 * Path walks in tests of the script resolver's steps (native/pathwalk, native/procevents walker.c,
 * script-package.ts): the prefixes a walk of a path steps through.
 */

/** `path` and every lexical prefix of it from `/`, in walk order. */
export function walkPrefixes(path: string): string[] {
  const out = ['/'];
  for (const name of path.split('/').filter(Boolean)) {
    const last = out[out.length - 1] as string;
    out.push(last === '/' ? `/${name}` : `${last}/${name}`);
  }
  return out;
}
