/**
 * Owns how guardctl turns an error into a message and an exit code (npm's error-message.js).
 * Exit codes are documented in docs/guardctl.md:
 *   0 ok · 1 unexpected error · 2 usage · 3 daemon not running · 4 needs root / forbidden (or --force) ·
 *   5 policy rejected or invalid · 6 config invalid · 7 not found · 8 check failed (doctor, verify, lint) ·
 *   9 package input invalid (collector URL, enroll secret, trusted key) · 10 package build failed
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
  PACKAGE_INPUT: 9,
  PACKAGE_BUILD: 10,
} as const;

export function exitCodeFor(code: ErrorCode | string): number {
  if (code === 'GUARD_CONTROL_DAEMON_NOT_RUNNING' || code === 'GUARD_CONTROL_TIMEOUT')
    return EXIT.DAEMON_NOT_RUNNING;
  if (
    code === 'GUARD_CONTROL_FORBIDDEN' ||
    code === 'GUARD_CONTROL_PERMISSION_DENIED' ||
    code === 'GUARD_CLI_NEEDS_ROOT' ||
    code === 'GUARD_QUARANTINE_STILL_BANNED'
  ) {
    return EXIT.FORBIDDEN;
  }
  if (
    code === 'GUARD_CLI_USAGE' ||
    code === 'GUARD_CLI_FILE_EXISTS' ||
    code === 'GUARD_CONTROL_BAD_REQUEST' ||
    code === 'GUARD_CONTROL_UNKNOWN_METHOD'
  )
    return EXIT.USAGE;
  if (code === 'GUARD_QUARANTINE_NOT_FOUND') return EXIT.NOT_FOUND;
  if (code === 'GUARD_PACKAGE_UNSUPPORTED_FORMAT') return EXIT.USAGE;
  if (code === 'GUARD_PACKAGE_BUILD_FAILED') return EXIT.PACKAGE_BUILD;
  if (code.startsWith('GUARD_PACKAGE_')) return EXIT.PACKAGE_INPUT;
  if (
    code.startsWith('GUARD_POLICY_') ||
    code === 'GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER' ||
    code === 'GUARD_COLLECTOR_NO_SHADOW' ||
    code === 'GUARD_COLLECTOR_SHADOW_CHANGED'
  )
    return EXIT.POLICY;
  if (code === 'GUARD_COLLECTOR_UNAUTHORIZED') return EXIT.FORBIDDEN;
  if (code.startsWith('GUARD_CONFIG_')) return EXIT.CONFIG;
  return EXIT.UNEXPECTED;
}

/** What guardctl knows about where it looked, so a hint can name the right file and fix. */
export interface ErrorContext {
  /** The command as typed ('policy reload'), when one was recognised. */
  readonly command?: string;
  /** The config file guardctl read. */
  readonly configFile?: string;
  /** True when that config is a local-mode one (`guardd --local` / `npm start`). */
  readonly localMode?: boolean;
}

/** One-line message plus a hint for people; `{code, message}` for --json. */
export function describeError(
  err: unknown,
  context: ErrorContext = {},
): {
  code: string;
  message: string;
  hint: string | null;
  exitCode: number;
} {
  if (err instanceof GuardError) {
    return {
      code: err.code,
      message: err.message,
      hint: hintFor(err.code, err.details, context),
      exitCode: exitCodeFor(err.code),
    };
  }
  return {
    code: 'GUARD_INTERNAL',
    message: (err as Error)?.message ?? String(err),
    hint: 'This is a bug in guardctl: please report it with the command you ran.',
    exitCode: EXIT.UNEXPECTED,
  };
}

/** The fix for each failure a person can cause; null when the message already says it all. */
function hintFor(code: string, details: Readonly<Record<string, unknown>>, ctx: ErrorContext): string | null {
  const command = ctx.command ? `guardctl ${ctx.command}` : 'guardctl';
  switch (code) {
    case 'GUARD_CONTROL_DAEMON_NOT_RUNNING':
      return ctx.localMode
        ? 'Start it: `npm start` in the checkout (local mode), then try again.'
        : 'Start it: `sudo systemctl start toolguard` (Linux), `sudo launchctl kickstart -k system/io.toolguard.guardd` (macOS), or `npm start` in a checkout.';
    case 'GUARD_CONTROL_TIMEOUT':
      return ctx.localMode
        ? 'guardd is up but busy or stuck: look at the terminal running `npm start`.'
        : 'guardd is up but busy or stuck: `journalctl -u toolguard -n 50` (Linux) or `guardctl doctor`.';
    case 'GUARD_CONTROL_PERMISSION_DENIED':
      return `You may not open ${typeof details.socket === 'string' ? details.socket : 'the socket'}: the public socket is mode 0666 in a 0755 directory; \`guardctl doctor\` checks both (or pass --socket-dir).`;
    case 'GUARD_CONTROL_FORBIDDEN':
    case 'GUARD_CLI_NEEDS_ROOT':
      return `Run it as root: \`sudo ${command}\` (changes go through the root-only admin socket).`;
    case 'GUARD_CLI_USAGE':
      return `See \`${command} --help\`.`;
    case 'GUARD_CONTROL_BUSY':
      return 'Too many clients are talking to guardd right now; try again in a moment.';
    case 'GUARD_QUARANTINE_STILL_BANNED':
      return 'The policy in force still bans it; add --force to restore it anyway.';
    case 'GUARD_PACKAGE_BAD_COLLECTOR_URL':
      return 'Pass the URL agents reach the collector at, e.g. --collector-url https://collector.example.com (credentials never go in the URL).';
    case 'GUARD_PACKAGE_SECRET_UNREADABLE':
      return "--enroll-secret-file names a file holding the collector's enroll secret (its enroll_secret_file) on one line.";
    case 'GUARD_PACKAGE_BAD_TRUSTED_KEY':
      return '--trusted-key takes the public key file `guardctl policy keygen` wrote (<prefix>.pub), never the .key.';
    case 'GUARD_PACKAGE_BUILD_FAILED':
      return 'Run it in a toolguard checkout after `npm ci && npm run build`; the build log above says what failed (docs/install.md).';
    case 'GUARD_QUARANTINE_NOT_FOUND':
      return '`guardctl quarantine list --all` shows the ids.';
    case 'GUARD_CLI_FILE_EXISTS':
      return 'guardctl never overwrites it: pass another --out, or move the file away first.';
    case 'GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER':
      return 'Raise "version" in the body above the served one (`GET /v1/admin/policy/history` lists the published versions).';
    case 'GUARD_COLLECTOR_UNAUTHORIZED':
      return "--admin-token-file must hold the collector's admin token (its admin_token_file).";
    case 'GUARD_COLLECTOR_NO_SHADOW':
      return 'Publish a shadow first: `guardctl policy publish <body> --shadow …`; `GET /v1/admin/policy/shadow` shows the state.';
    case 'GUARD_COLLECTOR_SHADOW_CHANGED':
      return 'Someone published or cleared a shadow meanwhile: `GET /v1/admin/policy/shadow` shows it; review, then promote its version.';
    case 'GUARD_CLI_PUBLISH_FAILED':
      return 'Check --collector (scheme, host, port) and that the collector runs; for a private CA set NODE_EXTRA_CA_CERTS.';
    default:
      if (code.startsWith('GUARD_CONFIG_'))
        return `Fix ${ctx.configFile ?? 'the config file'} (keys and types: docs/config.md), or pass --config FILE; \`guardctl config\` validates it.`;
      if (code.startsWith('GUARD_POLICY_') && ctx.command === 'policy publish')
        return '`guardctl policy lint <body>` lists every problem; the collector checks signatures against its policy_trusted_keys (docs/collector.md).';
      if (code.startsWith('GUARD_POLICY_'))
        return '`guardctl policy verify <file>` says why; see docs/policy.md.';
      return null;
  }
}
