/**
 * Owns the first step of reading one JSON line of an exec stream program (eslogger-parser.ts,
 * windows-start-parser.ts): the line as a JSON object, or the `skip` item that says why it is not
 * one, and the field readers both parsers use on untrusted values. Pure, never throws.
 */
import type { StreamItem } from './exec-stream-source.js';

export type Obj = Record<string, unknown>;

/** `v` when it is a plain object, else null. */
export function obj(v: unknown): Obj | null {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : null;
}

/** `v` when it is a non-negative safe integer, else null. */
export function int(v: unknown): number | null {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : null;
}

/** `v` when it is a non-empty string, else null. */
export function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

/**
 * One line (without its newline) as a JSON object, or the skip item that says why it is not one
 * (cut short, not JSON, not an object).
 */
export function objectLine(line: string): { readonly obj: Obj } | { readonly skip: StreamItem } {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    // An object that does not parse was cut short (the program died mid-line) or corrupted.
    const reason = line.trimStart().startsWith('{') ? 'truncated' : 'not_json';
    return { skip: { kind: 'skip', reason, lost: true } };
  }
  const o = obj(msg);
  return o ? { obj: o } : { skip: { kind: 'skip', reason: 'unknown_shape', lost: true } };
}
