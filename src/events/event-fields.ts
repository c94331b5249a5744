/**
 * Owns reading the fields of an agent event (a parsed, schema-valid object, or one arriving from
 * an older or hostile agent) for the SIEM mappings (ocsf.ts, ecs.ts): each reader answers the value
 * when it has the expected type, else null ({} for objects), so a mapping never throws on a field.
 */

export type Obj = Record<string, unknown>;

/** `v` when it is a plain object, else {}. */
export function obj(v: unknown): Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}
/** `v` when it is a finite number. */
export function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
/** `v` when it is a safe integer. */
export function int(v: unknown): number | null {
  return Number.isSafeInteger(v) ? (v as number) : null;
}
/** `v` when it is a string. */
export function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}
/** A non-empty string, or null (names and paths must say something). */
export function text(v: unknown): string | null {
  return typeof v === 'string' && v.length > 0 ? v : null;
}
/** The last component of a POSIX or Windows path (the path itself when it has none). */
export function baseName(path: string): string {
  const parts = path.split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] ?? path;
}
