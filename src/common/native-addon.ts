/**
 * Owns where guardd's own native addons are: `native/<name>/build/Release/<name>.node` at the top of
 * the checkout or the installed package (scripts/build-native.js builds them there, the packages
 * carry them at the same place), found from this file's place (dist/common/, or src/common/ under
 * vitest: both two levels below the top). Built with join, not `new URL(…, import.meta.url)`: the
 * packaging tests take those as files every payload must carry, and the Windows payload has no addon.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The path of addon `name`; it may not exist (each loader says what it does without it). */
export function nativeAddonPath(name: string): string {
  return join(
    dirname(fileURLToPath(import.meta.url)),
    '..',
    '..',
    'native',
    name,
    'build',
    'Release',
    `${name}.node`,
  );
}
