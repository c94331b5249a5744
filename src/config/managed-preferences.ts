/**
 * Owns reading macOS managed preferences: the settings an MDM pushes in a configuration profile
 * (payload type `io.toolguard.guardd`, see service/macos/toolguard.mobileconfig) land in
 * `/Library/Managed Preferences/io.toolguard.guardd.plist`. They are returned as dotted setting keys
 * for `loadConfig`, which layers them over the JSON file and under env and flags.
 *
 * On macOS the file (often a binary plist) is converted by `plutil -convert json -o - <file>`; on
 * other OSes, and for tests, a small XML-plist parser reads it. Keys may be nested by the dots of a
 * setting key (`collector` → `url`) or dotted themselves (`collector.url`). Profile bookkeeping keys
 * (`Payload*`, `mcx_*`) are skipped; anything else unknown is refused by `loadConfig` with the key.
 * The file is hostile input: size- and depth-capped, every failure is GUARD_CONFIG_UNREADABLE.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { GuardError } from '../common/errors.js';
import { currentPlatform, type Platform } from '../common/platform-paths.js';

/** Where macOS puts the device-wide managed preferences of guardd's domain. */
export const MANAGED_PREFERENCES_FILE = '/Library/Managed Preferences/io.toolguard.guardd.plist';
/** Same cap as the JSON config: a profile's settings are a few KiB. */
const MAX_PLIST_BYTES = 1024 * 1024;
/** Nesting deeper than this is not a settings file (and would only exhaust the stack). */
const MAX_DEPTH = 32;
/** plutil is local and fast; a hung one must not hold the daemon's start. */
const PLUTIL_TIMEOUT_MS = 5_000;

export interface ManagedPreferencesOptions {
  /** The plist to read; default MANAGED_PREFERENCES_FILE. A missing file means "none" ({}). */
  readonly file?: string;
  /** Platform: darwin converts with plutil, others parse XML here. Default: the current one. */
  readonly platform?: Platform;
  /**
   * Converts a plist file to a JSON value (macOS: plutil). Injected by tests; called only on darwin.
   * Throws on an unreadable or malformed file.
   */
  readonly convert?: (file: string) => unknown;
}

/** The platform's managed-preferences file, or null where there is none (Linux, Windows). */
export function defaultManagedPreferencesFile(platform: Platform = currentPlatform()): string | null {
  return platform === 'darwin' ? MANAGED_PREFERENCES_FILE : null;
}

/**
 * Reads the managed preferences into dotted keys (values unvalidated: `loadConfig` checks them).
 * Returns {} when the file does not exist. Throws GuardError GUARD_CONFIG_UNREADABLE otherwise.
 */
export function readManagedPreferences(options: ManagedPreferencesOptions = {}): Record<string, unknown> {
  const file = options.file ?? MANAGED_PREFERENCES_FILE;
  const unreadable = (why: string, cause?: unknown): GuardError =>
    new GuardError('GUARD_CONFIG_UNREADABLE', `managed preferences ${file}: ${why}`, { file }, { cause });
  let size: number;
  try {
    size = statSync(file).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw unreadable((err as Error).message, err);
  }
  if (size > MAX_PLIST_BYTES) throw unreadable(`larger than ${MAX_PLIST_BYTES} bytes`);
  let root: unknown;
  if ((options.platform ?? currentPlatform()) === 'darwin') {
    try {
      root = (options.convert ?? plutilToJson)(file);
    } catch (err) {
      throw unreadable(`cannot convert: ${(err as Error).message}`, err);
    }
  } else {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw unreadable((err as Error).message, err);
    }
    if (text.startsWith('bplist')) throw unreadable('binary plist (convert it with plutil on macOS)');
    try {
      root = parseXmlPlist(text);
    } catch (err) {
      throw unreadable((err as Error).message, err);
    }
  }
  if (!isPlainObject(root)) throw unreadable('the top level is not a dictionary');
  const out: Record<string, unknown> = {};
  flatten(root, '', out, 0);
  return out;
}

function plutilToJson(file: string): unknown {
  const json = execFileSync('/usr/bin/plutil', ['-convert', 'json', '-o', '-', file], {
    encoding: 'utf8',
    timeout: PLUTIL_TIMEOUT_MS,
    maxBuffer: 4 * MAX_PLIST_BYTES,
  });
  return JSON.parse(json);
}

function flatten(
  obj: Record<string, unknown>,
  prefix: string,
  out: Record<string, unknown>,
  depth: number,
): void {
  if (depth > MAX_DEPTH) throw new Error('nested too deeply');
  for (const [k, v] of Object.entries(obj)) {
    // Profile bookkeeping that macOS may copy into the domain, and comment keys.
    if (!prefix && (k.startsWith('Payload') || k.startsWith('mcx_') || k === '//' || k === '$schema'))
      continue;
    const key = prefix ? `${prefix}.${k}` : k;
    if (isPlainObject(v)) flatten(v, key, out, depth + 1);
    else out[key] = v;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ------------------------------------------------------------------------------------------------
// A small XML property-list parser: plist, dict, array, key, string, integer, real, true, false,
// date (kept as its ISO string), data (kept as its base64 text). Comments, the XML declaration and
// the DOCTYPE are skipped. Anything else is an error naming the offending tag.

type Token = { kind: 'open' | 'close' | 'empty'; name: string } | { kind: 'text'; text: string };

const ENTITIES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|[a-z]+);/g, (m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(Number.parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(Number.parseInt(e.slice(1), 10));
    const v = ENTITIES[e];
    if (v === undefined) throw new Error(`unknown XML entity ${m}`);
    return v;
  });
}

function* tokenize(xml: string): Generator<Token> {
  let i = 0;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    if (lt < 0) {
      yield { kind: 'text', text: xml.slice(i) };
      return;
    }
    if (lt > i) yield { kind: 'text', text: xml.slice(i, lt) };
    if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt + 4);
      if (end < 0) throw new Error('unterminated comment');
      i = end + 3;
      continue;
    }
    if (xml.startsWith('<?', lt) || xml.startsWith('<!', lt)) {
      const end = xml.indexOf('>', lt);
      if (end < 0) throw new Error('unterminated declaration');
      i = end + 1;
      continue;
    }
    const gt = xml.indexOf('>', lt);
    if (gt < 0) throw new Error('unterminated tag');
    const body = xml.slice(lt + 1, gt).trim();
    const m = /^(\/?)([A-Za-z][\w.-]*)(?:\s[^>]*?)?(\/?)$/.exec(body);
    if (!m) throw new Error(`malformed tag <${body.slice(0, 40)}>`);
    const name = m[2] as string;
    yield m[1] ? { kind: 'close', name } : m[3] ? { kind: 'empty', name } : { kind: 'open', name };
    i = gt + 1;
  }
}

/** Parses an XML property list into JSON values. Throws Error with the reason on malformed input. */
export function parseXmlPlist(xml: string): unknown {
  const tokens = [...tokenize(xml)].filter((t) => t.kind !== 'text' || t.text.trim() !== '');
  let pos = 0;
  const next = (): Token => {
    const t = tokens[pos++];
    if (!t) throw new Error('unexpected end of plist');
    return t;
  };
  const textUntilClose = (name: string): string => {
    let text = '';
    for (;;) {
      const t = next();
      if (t.kind === 'text') text += t.text;
      else if (t.kind === 'close' && t.name === name) return decodeEntities(text);
      else throw new Error(`unexpected <${t.name}> inside <${name}>`);
    }
  };
  const value = (t: Token, depth: number): unknown => {
    if (depth > MAX_DEPTH) throw new Error('nested too deeply');
    if (t.kind === 'text') throw new Error(`unexpected text "${t.text.trim().slice(0, 40)}"`);
    if (t.kind === 'close') throw new Error(`unexpected </${t.name}>`);
    const empty = t.kind === 'empty';
    switch (t.name) {
      case 'true':
      case 'false':
        if (!empty && next().kind !== 'close') throw new Error(`<${t.name}> must be empty`);
        return t.name === 'true';
      case 'string':
      case 'date':
        return empty ? '' : textUntilClose(t.name);
      case 'data':
        return empty ? '' : textUntilClose('data').replace(/\s+/g, '');
      case 'integer': {
        const s = empty ? '' : textUntilClose('integer').trim();
        if (!/^[+-]?\d+$/.test(s)) throw new Error(`bad <integer> "${s.slice(0, 40)}"`);
        return Number(s);
      }
      case 'real': {
        const s = empty ? '' : textUntilClose('real').trim();
        const n = Number(s);
        if (s === '' || !Number.isFinite(n)) throw new Error(`bad <real> "${s.slice(0, 40)}"`);
        return n;
      }
      case 'array': {
        const arr: unknown[] = [];
        if (empty) return arr;
        for (;;) {
          const c = next();
          if (c.kind === 'close' && c.name === 'array') return arr;
          arr.push(value(c, depth + 1));
        }
      }
      case 'dict': {
        const obj: Record<string, unknown> = Object.create(null);
        if (empty) return { ...obj };
        for (;;) {
          const k = next();
          if (k.kind === 'close' && k.name === 'dict') return { ...obj };
          if (k.kind === 'text' || k.name !== 'key') throw new Error('a <dict> entry must start with <key>');
          const key = k.kind === 'empty' ? '' : textUntilClose('key');
          if (key === '__proto__') throw new Error('forbidden key "__proto__"');
          obj[key] = value(next(), depth + 1);
        }
      }
      default:
        throw new Error(`unsupported plist element <${t.name}>`);
    }
  };
  const first = next();
  if (first.kind !== 'open' || first.name !== 'plist')
    throw new Error('not an XML property list (no <plist>)');
  const root = value(next(), 0);
  const end = next();
  if (end.kind !== 'close' || end.name !== 'plist') throw new Error('more than one value in <plist>');
  if (pos !== tokens.length) throw new Error('content after </plist>');
  return root;
}
