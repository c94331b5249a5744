/**
 * Owns reading the config: defaults from the settings table, then the JSON file, then (macOS)
 * the MDM's managed preferences, then `TOOLGUARD_*` environment variables, then explicit overrides
 * (flags) — each layer wins over the ones before it. Returns one frozen,
 * validated `Config`. Bad input is refused with the key, the bad value and what was expected
 * (`GUARD_CONFIG_*`); nothing is guessed or silently dropped.
 *
 * The file may nest by the dots of a key (`{"collector": {"url": …}}`) or use the dotted key
 * itself (`{"collector.url": …}`); both name the same setting.
 */
import { readFileSync } from 'node:fs';
import { GuardError } from '../common/errors.js';
import { defaultManagedPreferencesFile, readManagedPreferences } from './managed-preferences.js';
import { type Config, envVarOf, SETTINGS, type SettingDef, type SettingKey } from './settings.js';

export interface LoadConfigOptions {
  /** Config file path. Missing is an error only when `required` is true. */
  readonly file?: string;
  readonly required?: boolean;
  /**
   * macOS managed preferences (configuration profile) plist, layered over the file and under env.
   * undefined = the platform default (/Library/Managed Preferences/io.toolguard.guardd.plist on
   * macOS, none elsewhere); null = not read. A missing file is not an error.
   */
  readonly managedPreferencesFile?: string | null;
  /** Environment to read `TOOLGUARD_*` from; defaults to `process.env`. Pass `{}` to ignore it. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Values that win over everything (dotted keys), e.g. from flags or the local mode. */
  readonly overrides?: Readonly<Record<string, unknown>>;
}

/** A config value from a file larger than this is refused: MDM configs are a few KiB. */
const MAX_CONFIG_BYTES = 1024 * 1024;

const SETTING_KEYS = new Set<string>(Object.keys(SETTINGS));

/** Loads and validates the config. Throws `GuardError` with a `GUARD_CONFIG_*` code. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const values: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(SETTINGS) as [SettingKey, SettingDef<unknown>][]) {
    values[key] = typeof def.default === 'function' ? (def.default as () => unknown)() : def.default;
  }
  if (options.file) {
    const fromFile = readConfigFile(options.file, options.required ?? false);
    for (const [key, raw] of Object.entries(fromFile))
      values[key] = checkValue(key, raw, `file ${options.file}`);
  }
  const mpFile =
    options.managedPreferencesFile === undefined
      ? defaultManagedPreferencesFile()
      : options.managedPreferencesFile;
  if (mpFile) {
    for (const [key, raw] of Object.entries(readManagedPreferences({ file: mpFile }))) {
      if (!SETTING_KEYS.has(key)) throw unknownKey(key, `managed preferences ${mpFile}`);
      values[key] = checkValue(key, raw, `managed preferences ${mpFile}`);
    }
  }
  const env = options.env ?? process.env;
  for (const key of SETTING_KEYS) {
    const raw = env[envVarOf(key)];
    if (raw !== undefined && raw !== '') values[key] = checkValue(key, parseEnv(key, raw), envVarOf(key));
  }
  for (const [key, raw] of Object.entries(options.overrides ?? {})) {
    if (!SETTING_KEYS.has(key)) throw unknownKey(key, 'overrides');
    values[key] = checkValue(key, raw, 'overrides');
  }
  for (const v of Object.values(values)) if (Array.isArray(v)) Object.freeze(v);
  return Object.freeze(values) as Config;
}

/** Reads a config file into dotted keys. Exported for `guardctl doctor` and tests. */
export function readConfigFile(file: string, required: boolean): Record<string, unknown> {
  const parsed = readJsonObjectFile(file, required);
  const out: Record<string, unknown> = {};
  if (parsed) flatten(parsed, '', out, file);
  return out;
}

/**
 * Reads a JSON config file that must hold one object (guardd's and guard-collector's configs).
 * Missing → null when not `required`; every other problem is GUARD_CONFIG_UNREADABLE with the file.
 */
export function readJsonObjectFile(file: string, required = true): Record<string, unknown> | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new GuardError(
      'GUARD_CONFIG_UNREADABLE',
      `cannot read config file ${file}: ${(err as Error).message}`,
      { file },
    );
  }
  if (text.length > MAX_CONFIG_BYTES) {
    throw new GuardError(
      'GUARD_CONFIG_UNREADABLE',
      `config file ${file} is larger than ${MAX_CONFIG_BYTES} bytes`,
      { file },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new GuardError(
      'GUARD_CONFIG_UNREADABLE',
      `config file ${file} is not valid JSON: ${(err as Error).message}`,
      { file },
    );
  }
  if (!isPlainObject(parsed)) {
    throw new GuardError('GUARD_CONFIG_UNREADABLE', `config file ${file} must hold a JSON object`, { file });
  }
  return parsed;
}

function flatten(
  obj: Record<string, unknown>,
  prefix: string,
  out: Record<string, unknown>,
  file: string,
): void {
  for (const [k, v] of Object.entries(obj)) {
    if (k === '$schema' || k === '//') continue; // editor hints and comments are allowed at any level
    const key = prefix ? `${prefix}.${k}` : k;
    if (SETTING_KEYS.has(key)) {
      out[key] = v;
    } else if (isPlainObject(v) && [...SETTING_KEYS].some((s) => s.startsWith(`${key}.`))) {
      flatten(v, key, out, file);
    } else {
      throw unknownKey(key, `file ${file}`);
    }
  }
}

function unknownKey(key: string, source: string): GuardError {
  const near = [...SETTING_KEYS].filter((s) => s.split('.')[0] === key.split('.')[0]);
  const hint = near.length > 0 ? `; keys in this group: ${near.join(', ')}` : '';
  return new GuardError('GUARD_CONFIG_UNKNOWN_KEY', `unknown config key "${key}" (${source})${hint}`, {
    key,
    source,
  });
}

function parseEnv(key: string, raw: string): unknown {
  const def = SETTINGS[key as SettingKey] as SettingDef<unknown>;
  switch (def.kind) {
    case 'integer':
      return /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw;
    case 'boolean':
      if (/^(true|1|yes)$/i.test(raw)) return true;
      if (/^(false|0|no)$/i.test(raw)) return false;
      return raw;
    case 'string[]':
      if (raw.trim().startsWith('[')) {
        try {
          return JSON.parse(raw);
        } catch {
          return raw;
        }
      }
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    default:
      return raw;
  }
}

function checkValue(key: string, value: unknown, source: string): unknown {
  const def = SETTINGS[key as SettingKey] as SettingDef<unknown>;
  const bad = (expected: string): GuardError =>
    new GuardError(
      'GUARD_CONFIG_INVALID_VALUE',
      `config key "${key}" (${source}): got ${describe(value, def.secret)}, expected ${expected}`,
      { key, source, expected },
    );
  switch (def.kind) {
    case 'string':
      if (typeof value !== 'string') throw bad('a string');
      if (def.pattern && !def.pattern.re.test(value)) throw bad(def.pattern.expected);
      return value;
    case 'integer': {
      if (typeof value !== 'number' || !Number.isInteger(value)) throw bad('an integer');
      const range = `an integer from ${def.min ?? '-∞'} to ${def.max ?? '∞'}`;
      if ((def.min !== undefined && value < def.min) || (def.max !== undefined && value > def.max))
        throw bad(range);
      return value;
    }
    case 'boolean':
      if (typeof value !== 'boolean') throw bad('true or false');
      return value;
    case 'string[]':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
        throw bad('an array of strings');
      return [...value];
    case 'enum':
      if (typeof value !== 'string' || !def.values?.includes(value))
        throw bad(`one of ${def.values?.join(', ')}`);
      return value;
  }
}

function describe(value: unknown, secret?: boolean): string {
  if (secret) return 'a value of the wrong type';
  const json = JSON.stringify(value);
  return json === undefined ? String(value) : json.length > 80 ? `${json.slice(0, 80)}…` : json;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
