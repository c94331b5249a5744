/**
 * Owns the redaction of secrets in command lines before they are stored or logged.
 *
 * Command lines are hostile input: they can be huge, binary, or carry tokens and passwords that
 * must never leave the machine. `redactArgv` is the one place that decides what is kept; every
 * event field that holds a command line passes through it.
 */

/** Stored in place of a secret. */
export const REDACTED = '[REDACTED]';

/** One argument longer than this is cut: 4 KiB keeps real paths and flags, drops pasted blobs. */
export const MAX_ARG_CHARS = 4096;
/** At most this many arguments are kept; the rest are summarised as a count. */
export const MAX_ARGS = 256;

/** Flags whose *next* argument (or `=value`) is a secret. Matched case-insensitively, dashes folded. */
const SECRET_FLAG =
  /^-{1,2}(?:[a-z0-9]*[-_])?(?:password|passwd|pwd|pass|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|auth|authorization|credentials?|client[-_]?secret|session|cookie|bearer)$/i;

/** Whole-argument patterns that are secrets wherever they appear. */
const SECRET_VALUE_PATTERNS: readonly RegExp[] = [
  /\b(?:sk|pk|rk)-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}/g, // Anthropic / OpenAI / Stripe style keys
  /\bgh[pousr]_[A-Za-z0-9]{20,}/g, // GitHub tokens
  /\bgithub_pat_[A-Za-z0-9_]{20,}/g,
  /\bxox[abprs]-[A-Za-z0-9-]{10,}/g, // Slack
  /\bAKIA[0-9A-Z]{16}\b/g, // AWS access key id
  /\bAIza[0-9A-Za-z_-]{30,}/g, // Google API key
  /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, // JWT
  /\bnpm_[A-Za-z0-9]{30,}/g, // npm tokens
];

/** `KEY=value` where KEY names a secret (env assignments, `--opt=value`). */
const SECRET_ASSIGNMENT =
  /^(-{0,2}[A-Za-z0-9_.-]*?(?:password|passwd|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|auth|credentials?|cookie)[A-Za-z0-9_.-]*)=(.+)$/i;

/** Credentials embedded in URLs: scheme://user:pass@host. */
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^/\s:@]+):([^/\s@]+)@/gi;

/** Authorization headers passed on the command line (curl -H). */
const AUTH_HEADER = /^((?:proxy-)?authorization:\s*(?:bearer|basic|token|splunk)?\s*)(.+)$/i;

/** Redacts one argument that is not itself the value of a secret flag. */
export function redactArg(arg: string): string {
  let out = sanitize(arg);
  const assignment = SECRET_ASSIGNMENT.exec(out);
  if (assignment) return `${assignment[1]}=${REDACTED}`;
  const header = AUTH_HEADER.exec(out);
  if (header) return `${header[1]}${REDACTED}`;
  out = out.replace(URL_CREDENTIALS, `$1$2:${REDACTED}@`);
  for (const pattern of SECRET_VALUE_PATTERNS) out = out.replace(pattern, REDACTED);
  return out;
}

/**
 * Returns a copy of `argv` that is safe to store: secrets replaced by `[REDACTED]`, control and
 * invalid characters replaced, each argument and the argument count capped.
 */
export function redactArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  let secretNext = false;
  const limit = Math.min(argv.length, MAX_ARGS);
  for (let i = 0; i < limit; i++) {
    const arg = argv[i] ?? '';
    if (secretNext) {
      out.push(REDACTED);
      secretNext = false;
      continue;
    }
    if (SECRET_FLAG.test(arg)) {
      out.push(arg);
      secretNext = true;
      continue;
    }
    out.push(redactArg(arg));
  }
  if (argv.length > MAX_ARGS) out.push(`[+${argv.length - MAX_ARGS} more arguments]`);
  return out;
}

/** Replaces control characters (a terminal escape in a stored argv is an attack) and caps length. */
function sanitize(arg: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  let s = arg.replace(/[\u0000-\u0008\u000b-\u001f\u007f\u009b]/g, '\uFFFD');
  if (s.length > MAX_ARG_CHARS) s = `${s.slice(0, MAX_ARG_CHARS)}[+${s.length - MAX_ARG_CHARS} chars]`;
  return s;
}
