/**
 * Owns toolguard's typed errors: one `GuardError` class with a stable `code`, grouped by area.
 *
 * Codes are part of the contract (tests, the CLI's exit-code map and operators' alerts key on
 * them), so a code is never renamed or reused; add new ones to the band of their area.
 * Inside the pipeline an expected failure is a value (counted and logged); a `GuardError` is
 * thrown only across an API edge (config load, policy verification, a control request, the CLI).
 */

/** Every error code, by area. The area prefix is the second word of the code. */
export const ERROR_CODES = {
  // config: bad settings refused at start
  GUARD_CONFIG_UNKNOWN_KEY: 'a config key that is not in the settings table',
  GUARD_CONFIG_INVALID_VALUE: 'a config value of the wrong type or out of range',
  GUARD_CONFIG_UNREADABLE: 'the config file cannot be read or is not JSON',
  GUARD_CONFIG_UNSAFE_DIR:
    'a directory guardd would write its state or bind its control sockets in that another user could change',
  // policy: signed ban list
  GUARD_POLICY_MALFORMED_ENVELOPE: 'not a DSSE envelope',
  GUARD_POLICY_UNSIGNED: 'no signatures in the envelope, or plain JSON',
  GUARD_POLICY_SIGNATURE_INVALID: 'a signature does not verify against any trusted key',
  GUARD_POLICY_UNTRUSTED_KEY: 'signed only by keys the config does not trust',
  GUARD_POLICY_THRESHOLD_NOT_MET: 'fewer distinct trusted keys signed than the threshold',
  GUARD_POLICY_WRONG_PAYLOAD_TYPE: 'payloadType is not the policy v1 type',
  GUARD_POLICY_PAYLOAD_NOT_JSON: 'the signed payload is not JSON',
  GUARD_POLICY_SCHEMA: 'the policy body violates the schema',
  GUARD_POLICY_ROLLBACK: 'version lower than the highest accepted one',
  GUARD_POLICY_EQUIVOCATION: 'same version as the accepted one, different content',
  GUARD_POLICY_EXPIRED: 'expires_at is in the past',
  GUARD_POLICY_NOT_YET_VALID: 'issued_at is in the future beyond the clock-skew allowance',
  GUARD_POLICY_TOO_LARGE: 'the policy exceeds the size cap',
  GUARD_POLICY_FETCH_FAILED: 'the policy could not be fetched (network, status, content type, timeout)',
  GUARD_POLICY_UNSAFE_RULE: 'a rule would match critical system processes or is otherwise unsafe',
  GUARD_POLICY_KEY_INVALID: 'a public or private key cannot be parsed',
  GUARD_POLICY_REGEX_UNSUPPORTED:
    'an argv pattern uses syntax the linear-time RE2 engine refuses (backreference, lookaround) or is too large',
  // store: SQLite state and outbox
  GUARD_STORE_CORRUPT: 'the database failed its integrity check',
  GUARD_STORE_IO: 'the database cannot be opened or written',
  GUARD_STORE_SCHEMA_NEWER:
    "the collector's database has a newer schema than this collector knows (refused, never downgraded)",
  GUARD_STORE_UNAVAILABLE: "the collector's PostgreSQL database cannot be reached or refused the login",
  GUARD_STORE_BUSY:
    "a row the operation needs stayed locked by another session past the wait (a forwarder's delivery or rewind that has not ended); nothing was changed",
  // control: local sockets
  GUARD_CONTROL_DAEMON_NOT_RUNNING: 'no daemon answers on the control socket',
  GUARD_CONTROL_BAD_REQUEST: 'a control request is malformed or too large',
  GUARD_CONTROL_UNKNOWN_METHOD: 'a control request names no known method',
  GUARD_CONTROL_FORBIDDEN: 'the method needs the admin socket',
  GUARD_CONTROL_PERMISSION_DENIED:
    'the operating system refused to open the control socket (EACCES/EPERM: its mode, or its directory)',
  GUARD_CONTROL_TIMEOUT: 'the daemon did not answer in time',
  GUARD_CONTROL_SOCKET_IN_USE: 'another guardd already answers on the control socket',
  GUARD_CONTROL_INSTANCE_LOCKED:
    'another guardd, running or still starting, holds the single-instance lock of the same state directory',
  GUARD_CONTROL_BUSY:
    'every control connection slot is answering a request, or this connection was evicted to make room',
  GUARD_PEERCRED_UNAVAILABLE:
    'the peer credentials addon is missing or does not load; control limits stay per connection',
  GUARD_PEERCRED_FAILED: 'the kernel did not tell the credentials of a control client',
  // sensors: exec sources
  GUARD_PROCEVENTS_UNAVAILABLE:
    'the exec events addon (native/procevents) is missing or does not load; the process sensor polls /proc',
  GUARD_PROCEVENTS_OPEN_FAILED:
    'the kernel refused the process events connector (needs root with CAP_NET_ADMIN); the process sensor polls /proc',
  GUARD_EXEC_STREAM_MISSING:
    'the exec event program (eslogger on macOS 13+, powershell.exe on Windows) is not there; the process sensor polls with ps-list',
  GUARD_EXEC_STREAM_NOT_PERMITTED:
    'the exec event program was refused by the OS (macOS: guardd lacks Full Disk Access or root; Windows: not an administrator); the process sensor polls with ps-list',
  GUARD_EXEC_STREAM_EXITED:
    'the exec event program exited; it is restarted with backoff, ps-list polls meanwhile',
  GUARD_EXEC_STREAM_SCHEMA:
    'the exec event program writes a format version guardd does not know; the process sensor polls with ps-list',
  // daemon: guardd's own scheduling (src/daemon/priority.ts, native/sched)
  GUARD_SCHED_FAILED: "the kernel refused to read or set a thread's scheduling attributes (errno says why)",
  GUARD_SCHED_BAD_ARGUMENT:
    'the sched addon was given a tid that is not a positive int32 or a slice outside 0..100 ms',
  // enforcement
  GUARD_ENFORCE_IDENTITY_CHANGED: 'the process is not the one that was matched (pid reused)',
  GUARD_ENFORCE_PROTECTED_PROCESS: 'the target is guardd, PID 1 or an ancestor of guardd',
  GUARD_ENFORCE_KILL_FAILED: 'a signal could not be delivered',
  GUARD_EXEC_DENY_UNAVAILABLE:
    'pre-exec deny is off: not Linux, or the execperm addon is missing or does not load; blocked programs are killed after they start',
  GUARD_EXEC_DENY_FAILED: 'the kernel refused the pre-exec listener (fanotify) or one of its marks',
  GUARD_QUARANTINE_UNSAFE_PATH: 'the path changed or points outside its root; not moved',
  GUARD_QUARANTINE_NOT_FOUND: 'no quarantine entry with that id',
  GUARD_QUARANTINE_STILL_BANNED: 'restoring needs --force: the current policy still bans it',
  GUARD_QUARANTINE_IO: 'moving or restoring failed',
  GUARD_QUARANTINE_BUSY:
    "a look at the path did not answer in time (a user's stalled mount, or that tree's read slot held by one); nothing moved",
  // shipping and collector
  GUARD_SHIP_FAILED: 'the collector did not accept a batch',
  GUARD_SHIP_UNAUTHORIZED: 'the collector refused the device token',
  GUARD_COLLECTOR_BAD_REQUEST: 'a request body is not valid',
  GUARD_COLLECTOR_UNAUTHORIZED: 'missing, malformed or unknown bearer token (device or admin)',
  GUARD_COLLECTOR_ENROLL_DENIED: 'the enrollment secret is wrong',
  GUARD_COLLECTOR_BODY_TOO_LARGE: 'the request body (decompressed) exceeds the size limit',
  GUARD_COLLECTOR_GZIP_BOMB: 'the gzip body expands beyond the allowed compression ratio',
  GUARD_COLLECTOR_BAD_ENCODING: 'an unsupported Content-Encoding or a corrupt gzip stream',
  GUARD_COLLECTOR_UNSUPPORTED_MEDIA_TYPE: 'the Content-Type is not accepted by this endpoint',
  GUARD_COLLECTOR_BODY_TIMEOUT: 'the request (headers or body) arrived too slowly',
  GUARD_COLLECTOR_RATE_LIMITED: 'too many requests for this token; retry after Retry-After seconds',
  GUARD_COLLECTOR_QUOTA_EXCEEDED:
    'this device token used its quota of events or bytes for the window; retry after Retry-After seconds',
  GUARD_COLLECTOR_ENROLL_RATE_LIMITED:
    'too many enroll attempts (or failed ones) from this source address; retry after Retry-After seconds',
  GUARD_COLLECTOR_BUSY: 'the collector is at its in-flight body budget; retry after Retry-After seconds',
  GUARD_COLLECTOR_INVALID_EVENTS: 'some events of a batch were rejected (the valid ones were stored)',
  GUARD_COLLECTOR_NO_POLICY: 'no signed policy file is configured or readable',
  GUARD_COLLECTOR_NOT_FOUND: 'no such route',
  GUARD_COLLECTOR_HOST_NOT_ALLOWED:
    "the request's Host header names a host not in allowed_hosts (DNS rebinding, or a name the operator did not list)",
  GUARD_COLLECTOR_BAD_QUERY: 'an admin query parameter is invalid',
  GUARD_COLLECTOR_STORE_FAILED: 'the events could not be stored durably; nothing was acknowledged',
  GUARD_COLLECTOR_WORKER_FAILED: 'a parse worker stopped before it parsed the body; nothing was acknowledged',
  GUARD_COLLECTOR_INTERNAL: 'an unexpected collector failure (logged); the request may be retried',
  GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER:
    'a published policy version is not greater than the one the collector serves',
  GUARD_COLLECTOR_UNKNOWN_FORWARDER: 'no forwarder sink of that name is configured on this collector',
  GUARD_COLLECTOR_FORWARDER_BUSY:
    "a delivery held the forwarder's claim for longer than a rewind waits; retry after Retry-After seconds",
  // console: the browser fleet console served by the collector (src/collector/console/)
  GUARD_CONSOLE_LOGIN_FAILED: 'the console credential is neither the admin token nor the viewer token',
  GUARD_CONSOLE_LOGIN_RATE_LIMITED:
    'too many failed console logins from this source address; retry after Retry-After seconds',
  GUARD_CONSOLE_UNAUTHENTICATED: 'no console session, or it expired or was logged out: log in again',
  GUARD_CONSOLE_CSRF: "a state-changing console request without the session's x-csrf-token header",
  GUARD_CONSOLE_CROSS_SITE: 'a state-changing console request from another site (Origin / Sec-Fetch-Site)',
  GUARD_CONSOLE_FORBIDDEN: "the console session's role (viewer) may not do this",
  GUARD_CONSOLE_NOT_FOUND: 'no such device, event or console page',
  GUARD_CONSOLE_NOT_BUILT: "the console's browser bundle is missing: run `npm run build`",
  GUARD_BAD_REQUEST: 'a console request parameter is invalid (a limit outside 1..500, an unknown sort)',
  GUARD_BAD_CURSOR: 'a console page cursor is malformed or belongs to another listing',
  GUARD_COLLECTOR_NO_SHADOW: 'there is no shadow policy to promote or clear',
  GUARD_COLLECTOR_SHADOW_CHANGED: 'the shadow policy changed since it was looked at (review it again)',
  // package: `guardctl package` (an endpoint package with the organisation's config baked in)
  GUARD_PACKAGE_BAD_COLLECTOR_URL: 'the collector URL is not an absolute http(s) URL without credentials',
  GUARD_PACKAGE_SECRET_UNREADABLE: 'the enrollment secret file cannot be read, is empty or too large',
  GUARD_PACKAGE_BAD_TRUSTED_KEY: 'a trusted key file cannot be read or holds no Ed25519 public key',
  GUARD_PACKAGE_UNSUPPORTED_FORMAT:
    'the package format cannot be built on this machine (a .pkg is built on a Mac)',
  GUARD_PACKAGE_BUILD_FAILED: 'the package build (installers/build-package.sh) failed or is not available',
  // cli
  GUARD_CLI_USAGE: 'a guardctl command was called with the wrong arguments',
  GUARD_CLI_FILE_EXISTS: 'the output file already exists; guardctl does not overwrite it',
  GUARD_CLI_PUBLISH_FAILED: 'the collector refused or did not answer a policy publication',
  GUARD_CLI_NEEDS_ROOT: 'the command needs root (or the admin socket)',
  GUARD_CLI_PERMISSION_DENIED:
    'guardd or guard-collector may not create or open what it needs at start (a directory, a file, a port below 1024)',
  GUARD_CLI_START_FAILED: 'guardd or guard-collector could not start (a port taken, a database unusable)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error with a stable code and optional structured details (never secrets). */
export class GuardError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    details: Record<string, unknown> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'GuardError';
    this.code = code;
    this.details = Object.freeze({ ...details });
  }

  toJSON(): { code: ErrorCode; message: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** True when `err` is a GuardError, optionally with the given code. */
export function isGuardError(err: unknown, code?: ErrorCode): err is GuardError {
  return err instanceof GuardError && (code === undefined || err.code === code);
}

/** The message of anything thrown, for logs and event `error` fields. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
