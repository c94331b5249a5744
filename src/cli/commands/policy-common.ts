/**
 * Owns what the policy authoring commands (keygen, sign, verify, lint, diff, publish) share:
 * reading a policy file that may be a bare body or a signed envelope, refusing a body that does not
 * lint before it is signed, reading keys given as files or inline text, and normalising repeatable
 * options. Not a command itself (not in command-list.ts).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { GuardError } from '../../common/errors.js';
import { lintPolicy } from '../../policy/policy-lint.js';
import type { DsseEnvelope } from '../../policy/policy-types.js';

/** Policy files larger than this are refused by the authoring tools (devices cap at policy.max_bytes). */
export const MAX_POLICY_FILE_BYTES = 64 * 1024 * 1024;

export interface PolicyFile {
  /** The parsed body (the decoded payload for an envelope; NOT verified). */
  readonly body: unknown;
  /** The envelope, when the file is one. */
  readonly envelope: DsseEnvelope | null;
  /** The exact bytes of the body (what `sign` signs). */
  readonly bodyBytes: Buffer;
  /** The file's whole text. */
  readonly text: string;
}

/** Reads a file as text, with GUARD_CLI_USAGE when it is missing or too large. */
export function readTextFile(file: string, what: string): string {
  try {
    const size = statSync(file).size;
    if (size > MAX_POLICY_FILE_BYTES) {
      throw new GuardError('GUARD_POLICY_TOO_LARGE', `${what} ${file} is ${size} bytes`);
    }
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof GuardError) throw err;
    throw new GuardError('GUARD_CLI_USAGE', `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

/**
 * The unsigned body in `bodyFile` for `verb` (sign, publish) to sign: refused with GUARD_CLI_USAGE
 * when the file is already an envelope, and with the first error's code when lint finds errors —
 * every error listed, nothing done.
 */
export function lintedBody(bodyFile: string, verb: string): PolicyFile {
  const input = readPolicyFile(bodyFile);
  if (input.envelope)
    throw new GuardError('GUARD_CLI_USAGE', `${bodyFile} is already an envelope; ${verb} the unsigned body`);
  const errors = lintPolicy(input.body, { now: Date.now() }).filter((f) => f.severity === 'error');
  if (errors.length > 0) {
    const first = errors[0];
    const code = first?.code === 'GUARD_POLICY_LINT' || !first ? 'GUARD_POLICY_SCHEMA' : first.code;
    throw new GuardError(
      code,
      `refusing to ${verb} ${bodyFile} (nothing done), ${errors.length} error(s):\n${errors.map((f) => `  ${f.path} ${f.message}`).join('\n')}`,
      { findings: errors },
    );
  }
  return input;
}

/** Reads a body or an envelope (decoded without verification, for lint/diff/sign --previous). */
export function readPolicyFile(file: string): PolicyFile {
  const text = readTextFile(file, 'policy file');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new GuardError('GUARD_POLICY_PAYLOAD_NOT_JSON', `${file} is not JSON: ${(err as Error).message}`);
  }
  const v = value as Record<string, unknown> | null;
  if (v && typeof v === 'object' && typeof v.payload === 'string' && typeof v.payloadType === 'string') {
    const bodyBytes = Buffer.from(v.payload, 'base64');
    try {
      return {
        body: JSON.parse(bodyBytes.toString('utf8')),
        envelope: v as unknown as DsseEnvelope,
        bodyBytes,
        text,
      };
    } catch (err) {
      throw new GuardError(
        'GUARD_POLICY_PAYLOAD_NOT_JSON',
        `payload of ${file} is not JSON: ${(err as Error).message}`,
      );
    }
  }
  return { body: value, envelope: null, bodyBytes: Buffer.from(text, 'utf8'), text };
}

/** A key given on the command line: a file path when one exists, else the inline PEM / base64 text. */
export function readKeyArg(value: string): string {
  return existsSync(value) ? readTextFile(value, 'key file') : value;
}

/** A repeatable option's value(s) as a list. */
export function optionList(v: unknown): string[] {
  if (v === undefined || v === null || v === false) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}
