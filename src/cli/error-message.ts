/**
 * Owns how guardctl turns an error into a message and an exit code (npm's error-message.js).
 * Exit codes are documented in docs/guardctl.md:
 *   0 ok · 1 unexpected error · 2 usage · 3 daemon not running · 4 needs root / forbidden (or --force) ·
 *   5 policy rejected or invalid · 6 config invalid · 7 not found · 8 check failed (doctor, verify, lint)
 */
import { type ErrorCode, GuardError } from '../common/errors.js';

export const EXIT = {
  OK: 0,
  UNEXPECTED: 1,
  USAGE: 2,
  DAEMON_NOT_RUNNING: 3,
  FORBIDDEN: 4,
  POLICY: 5,
  CONFIG: 6,
  NOT_FOUND: 7,
  CHECK_FAILED: 8,
} as const;

export function exitCodeFor(code: ErrorCode | string): number {
  if (code === 'GUARD_CONTROL_DAEMON_NOT_RUNNING' || code === 'GUARD_CONTROL_TIMEOUT')
    return EXIT.DAEMON_NOT_RUNNING;
  if (
    code === 'GUARD_CONTROL_FORBIDDEN' ||
    code === 'GUARD_CLI_NEEDS_ROOT' ||
    code === 'GUARD_QUARANTINE_STILL_BANNED'
  ) {
    return EXIT.FORBIDDEN;
  }
  if (
    code === 'GUARD_CLI_USAGE' ||
    code === 'GUARD_CONTROL_BAD_REQUEST' ||
    code === 'GUARD_CONTROL_UNKNOWN_METHOD'
  )
    return EXIT.USAGE;
  if (code === 'GUARD_QUARANTINE_NOT_FOUND') return EXIT.NOT_FOUND;
  if (code.startsWith('GUARD_POLICY_')) return EXIT.POLICY;
  if (code.startsWith('GUARD_CONFIG_')) return EXIT.CONFIG;
  return EXIT.UNEXPECTED;
}

/** One-line message plus a hint for people; `{code, message}` for --json. */
export function describeError(err: unknown): {
  code: string;
  message: string;
  hint: string | null;
  exitCode: number;
} {
  if (err instanceof GuardError) {
    return { code: err.code, message: err.message, hint: hintFor(err.code), exitCode: exitCodeFor(err.code) };
  }
  return {
    code: 'GUARD_INTERNAL',
    message: (err as Error)?.message ?? String(err),
    hint: null,
    exitCode: EXIT.UNEXPECTED,
  };
}

function hintFor(code: string): string | null {
  switch (code) {
    case 'GUARD_CONTROL_DAEMON_NOT_RUNNING':
      return 'Start it: `sudo systemctl start toolguard` (Linux), `sudo launchctl kickstart -k system/io.toolguard.guardd` (macOS), or `npm start` in a checkout.';
    case 'GUARD_CONTROL_FORBIDDEN':
    case 'GUARD_CLI_NEEDS_ROOT':
      return 'Run it as root (sudo) so it can use the admin socket.';
    default:
      return null;
  }
}
