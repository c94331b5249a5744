/** Owns the agent version string reported in every event and by `--version`. */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** toolguard's version, from package.json at the package root. */
export const AGENT_VERSION: string = readVersion();
