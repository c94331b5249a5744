/**
 * Owns the types of the signed ban list (policy v1, DESIGN.md "Signed ban list"). The JSON Schema
 * in policy/policy.schema.json is the validation truth; these types describe a body that passed it.
 */

export const POLICY_PAYLOAD_TYPE = 'application/vnd.toolguard.policy.v1+json';
export const POLICY_SCHEMA_ID = 'toolguard.policy/v1';

export type RuleAction = 'block' | 'warn' | 'audit';
export type PolicyMode = 'enforce' | 'monitor';
export type PolicyPlatform = 'linux' | 'darwin' | 'win32';

export interface ProcessCriteria {
  /** Process names (comm or executable basename), exact, case-sensitive. */
  readonly names?: readonly string[];
  /** Globs (picomatch) on the real executable path. */
  readonly exe_globs?: readonly string[];
  /** Patterns in RE2 syntax (linear-time matching; no backreferences or lookaround) on the joined argv. */
  readonly argv_patterns?: readonly string[];
  /** npm package names whose scripts, run by an interpreter, are banned. */
  readonly script_packages?: readonly string[];
  /** Lower-case hex SHA-256 of banned executables. */
  readonly sha256?: readonly string[];
  /**
   * Content markers (src/policy/content-markers.ts): marker sets, each a list of byte strings
   * (UTF-8 text, or `hex:` + hex digits) that must ALL occur in the executable; any set matching
   * matches the rule.
   */
  readonly markers?: readonly (readonly string[])[];
  /**
   * Apple Developer ID team identifiers (10 upper-case letters/digits): every program signed by
   * that team matches (macOS, from the exec source's code-signing facts; docs/policy.md).
   */
  readonly team_ids?: readonly string[];
  /**
   * Signing identifiers qualified by their team, `TEAMID:identifier` (Santa's form), or
   * `platform:identifier` for Apple's own binaries: a signing identifier alone is chosen by whoever
   * signs, so only the team (certified by Apple) makes it mean anything.
   */
  readonly signing_ids?: readonly string[];
}

export interface PackageCriteria {
  readonly ecosystem: 'npm';
  readonly name: string;
  /** semver range; "*" = every version. */
  readonly range: string;
}

export interface PolicyRule {
  readonly id: string;
  readonly name: string;
  readonly action: RuleAction;
  readonly message: string;
  readonly url?: string;
  readonly process?: ProcessCriteria;
  readonly packages?: readonly PackageCriteria[];
  /** Globs of installed artifacts; a leading `~` means each user's home. */
  readonly paths?: readonly string[];
  /** Absent = every platform. */
  readonly platforms?: readonly PolicyPlatform[];
}

export interface PolicyException {
  readonly rule: string;
  readonly users?: readonly string[];
  readonly groups?: readonly string[];
  /** Hostname globs. */
  readonly hosts?: readonly string[];
  readonly device_tags?: readonly string[];
  readonly expires_at: string;
}

export interface PolicyBody {
  readonly schema: typeof POLICY_SCHEMA_ID;
  readonly version: number;
  readonly issued_at: string;
  readonly expires_at: string;
  readonly mode: PolicyMode;
  readonly rules: readonly PolicyRule[];
  readonly exceptions?: readonly PolicyException[];
}

export interface DsseSignature {
  readonly keyid?: string;
  readonly sig: string;
}

export interface DsseEnvelope {
  readonly payload: string;
  readonly payloadType: string;
  readonly signatures: readonly DsseSignature[];
}

/** A policy that passed signature, schema and freshness checks. */
export interface VerifiedPolicy {
  readonly body: PolicyBody;
  /** Hex SHA-256 of the exact payload bytes (the anti-rollback identity of this version). */
  readonly sha256: string;
  /** keyids of the distinct trusted keys whose signatures verified. */
  readonly signedBy: readonly string[];
  /** The envelope as received, kept so the daemon can cache and re-serve it. */
  readonly envelope: DsseEnvelope;
}
