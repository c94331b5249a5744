/**
 * Owns recognising a local-mode config (what `guardd --local` / `npm start` writes), so guardctl's
 * hints and `doctor` speak of `npm start` and the embedded collector instead of system services.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';

/** The state dir `npm start` uses in a checkout; guardctl finds a local-mode daemon through it. */
export const LOCAL_MODE_DIR = '.toolguard';

/**
 * True when `configFile` is one `guardd --local` wrote (`npm start`): it lives in a `.toolguard`
 * dir, or carries local mode's "//" note (a --local-dir elsewhere). Hints then say `npm start`,
 * not systemctl.
 */
export function isLocalModeConfig(configFile: string): boolean {
  if (basename(dirname(configFile)) === LOCAL_MODE_DIR && existsSync(configFile)) return true;
  try {
    const raw = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    return typeof raw['//'] === 'string' && raw['//'].includes('guardd --local');
  } catch {
    return false;
  }
}
