/**
 * Owns how guardctl, guardd and guard-collector turn an error into a message, a hint and an exit
 * code (npm's error-message.js): one exit-code table for the three programs, documented in
 * docs/guardctl.md and in each program's --help and man page (EXIT_MEANINGS).
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
  SCHEMA_NEWER: 11,
} as const;

export type ExitName = keyof typeof EXIT;

/** What each exit code means, for --help, the man pages and docs/guardctl.md. */
export const EXIT_MEANINGS: Record<ExitName, string> = {
  OK: 'ok (guardd, guard-collector: stopped cleanly)',
  UNEXPECTED: 'unexpected error (guardd, guard-collector: could not start, e.g. the port is taken)',
  USAGE: 'usage error (unknown command or option, bad arguments)',
  DAEMON_NOT_RUNNING: 'guardd is not running or did not answer',
  FORBIDDEN: 'needs root, permission denied (a socket, a directory, a port below 1024), or --force needed',
  POLICY: 'policy rejected or invalid',
  CONFIG: 'config invalid',
  NOT_FOUND: 'not found',
  CHECK_FAILED: 'a check failed (doctor, policy verify, policy lint)',
  PACKAGE_INPUT: 'package: bad collector URL, unreadable enroll secret or bad trusted key',
  PACKAGE_BUILD: 'package: the package build failed',
  SCHEMA_NEWER:
    "guard-collector (and guardd --local's embedded one): the collector database's schema is newer than this build (upgrade; never downgrade the database)",
};

export function exitCodeFor(code: ErrorCode | string): number {
  if (code === 'GUARD_CONTROL_DAEMON_NOT_RUNNING' || code === 'GUARD_CONTROL_TIMEOUT')
    return EXIT.DAEMON_NOT_RUNNING;
  if (
    code === 'GUARD_CONTROL_FORBIDDEN' ||
    code === 'GUARD_CONTROL_PERMISSION_DENIED' ||
    code === 'GUARD_CLI_NEEDS_ROOT' ||
    code === 'GUARD_CLI_PERMISSION_DENIED' ||
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
  if (code === 'GUARD_STORE_SCHEMA_NEWER') return EXIT.SCHEMA_NEWER;
  if (code.startsWith('GUARD_CONFIG_')) return EXIT.CONFIG;
  return EXIT.UNEXPECTED;
}

/** What the program knows about where it looked, so a hint can name the right file and fix. */
export interface ErrorContext {
  /** The program that failed (default guardctl). */
  readonly program?: 'guardctl' | 'guardd' | 'guard-collector';
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
    hint: `This is a bug in ${context.program ?? 'guardctl'}: please report it with the command you ran.`,
    exitCode: EXIT.UNEXPECTED,
  };
}

/** The fix for each failure a person can cause; null when the message already says it all. */
function hintFor(code: string, details: Readonly<Record<string, unknown>>, ctx: ErrorContext): string | null {
  const program = ctx.program ?? 'guardctl';
  const command = ctx.command ? `${program} ${ctx.command}` : program;
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
    case 'GUARD_CLI_START_FAILED':
      return program === 'guardd'
        ? 'The log above says more (`journalctl -u toolguard -n 50` for the service).'
        : 'The log above says more (`journalctl -u guard-collector -n 50` for the service).';
    case 'GUARD_CLI_PERMISSION_DENIED':
      return permissionHint(program, details);
    case 'GUARD_CONTROL_INSTANCE_LOCKED':
      return 'Another guardd runs, or is starting, on the same state directory: `guardctl status` shows it once it answers; stop it first (`sudo systemctl stop toolguard`), or give this one another paths.state_dir.';
    case 'GUARD_CONTROL_SOCKET_IN_USE':
      return 'Another guardd already runs: `guardctl status` shows it; stop it first (`sudo systemctl stop toolguard`), or give this one another paths.socket_dir.';
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
    case 'GUARD_CONFIG_UNSAFE_DIR':
      return null; // a directory's owner or mode, not a config key: the message names the fix
    case 'GUARD_CLI_PUBLISH_FAILED':
      return 'Check --collector (scheme, host, port) and that the collector runs; for a private CA set NODE_EXTRA_CA_CERTS.';
    default:
      if (code.startsWith('GUARD_CONFIG_') && program === 'guard-collector')
        return `Set or fix it in ${ctx.configFile ?? 'the --config file'}, its TOOLGUARD_COLLECTOR_* variable or its flag; \`guard-collector --help\` lists every setting and its default.`;
      if (code.startsWith('GUARD_CONFIG_') && program === 'guardd')
        return `Fix ${ctx.configFile ?? 'the config file'} (keys and types: docs/config.md), or pass --config FILE; \`guardctl config\` validates it.`;
      if (code.startsWith('GUARD_CONFIG_'))
        return `Fix ${ctx.configFile ?? 'the config file'} (keys and types: docs/config.md), or pass --config FILE; \`guardctl config\` validates it.`;
      if (code.startsWith('GUARD_POLICY_') && ctx.command === 'policy publish')
        return '`guardctl policy lint <body>` lists every problem; the collector checks signatures against its policy_trusted_keys (docs/collector.md).';
      if (code.startsWith('GUARD_POLICY_'))
        return '`guardctl policy verify <file>` says why; see docs/policy.md.';
      return null;
  }
}

/** What to do when guardd or guard-collector may not create or open what it needs at start. */
function permissionHint(program: string, details: Readonly<Record<string, unknown>>): string {
  const asRoot = details.root === true;
  if (program === 'guardd')
    return asRoot
      ? 'Check the owner and mode of the path above (root-owned, not writable by others); `guardctl doctor` checks them.'
      : 'Run it as root (`sudo systemctl start toolguard`); to try it as yourself: `guardd --local` (what `npm start` runs).';
  if (details.port !== undefined)
    return 'Ports below 1024 need root or CAP_NET_BIND_SERVICE (the packaged unit grants it); or pass --listen HOST:PORT with a port from 1024.';
  return 'Run it as the user the package creates (`sudo systemctl start guard-collector`), or pass --db FILE in a directory you may write.';
}
