/**
 * An OCSF event validator for the test suite: compiles the released schema in
 * `test/fixtures/ocsf-schema-1.8.0/` the way the official OCSF compiler (ocsf-server's schema
 * cache and JSON reader) does, and checks events with the rules of the official event validator
 * (ocsf-server `Schema.Validator2`), using its error codes:
 *
 * - compile: `$include` of profiles (each attribute a profile adds is tagged with the profile; a
 *   class or object that redefines it with `"profile": null` makes it unconditional), class and
 *   object `extends` chains deep-merged parent first, every attribute deep-merged over its
 *   dictionary entry (type, `is_array`, enum, sibling), class_uid = category uid × 1000 + class
 *   uid, the `class_uid` / `category_uid` / `type_uid` enums generated per class, the observable
 *   `type_id` enum gathered from every `observable` annotation.
 * - validate: known class; `metadata.profiles` entries are known profiles; an attribute that
 *   only a profile adds is allowed only when the event declares that profile (else it is unknown);
 *   required attributes present (null counts as missing); no unknown attributes, except inside
 *   open-ended objects (`unmapped`); dictionary types (string, integer and long as whole numbers,
 *   float, boolean, json, subtypes with `max_len`, `range`, `values`); enums; arrays; objects
 *   recursively with their constraints (`at_least_one`, `just_one`); `type_uid`; `metadata.version`;
 *   observables naming attributes the class defines.
 *
 * Stricter than the official validator, on purpose (OCSF guidance it does not check): an enum
 * value 99 (Other) needs its sibling name (`activity_id` 99 → `activity_name`), because OCSF says
 * the sibling then carries the source's own label; an observable's `value` must equal the
 * attribute it names and its `type_id` the observable type of that attribute. A `float_t` value
 * must not be integral: JSON.stringify writes `3.0` as `3`, which the official validator reads as
 * an integer and refuses as a float. Extensions (linux, macos, windows) are not loaded, so their
 * profiles are unknown here. String lengths are checked wherever a type sets `max_len` (in 1.8.0:
 * ip_t, mac_t, subnet_t; string_t itself has no limit).
 *
 * Regex mismatches, deprecated attributes and wrong enum captions are warnings, as there.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

type Json = Record<string, unknown>;

/** One finding; `code` is the official validator's code (or one of the stricter ones above). */
export interface OcsfIssue {
  readonly code: string;
  /** Dotted attribute path, arrays as `[i]` (e.g. `observables[0].name`). */
  readonly path: string;
  readonly message: string;
}

export interface OcsfResult {
  readonly errors: OcsfIssue[];
  readonly warnings: OcsfIssue[];
}

interface Attr {
  type?: string;
  object_type?: string;
  is_array?: boolean;
  requirement?: string;
  profile?: string | null;
  sibling?: string;
  enum?: Record<string, { caption?: string; '@deprecated'?: unknown }>;
  '@deprecated'?: { message?: string };
  [k: string]: unknown;
}

interface Compiled {
  name: string;
  caption: string;
  uid?: number;
  attributes: Record<string, Attr>;
  constraints?: Record<string, string[]>;
  '@deprecated'?: unknown;
  observable?: number;
}

interface TypeDef {
  type?: string;
  max_len?: number;
  range?: [number, number];
  regex?: string;
  values?: unknown[];
}

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The compiler's deep merge: maps merge recursively, anything else (null included) is replaced. */
function deepMerge(left: unknown, right: unknown): unknown {
  if (!isObj(left) || !isObj(right)) return right;
  const out: Json = { ...left };
  for (const [k, v] of Object.entries(right)) out[k] = k in out ? deepMerge(out[k], v) : v;
  return out;
}

function readJson(file: string): Json {
  return JSON.parse(readFileSync(file, 'utf8')) as Json;
}

function jsonFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...jsonFiles(p));
    else if (name.endsWith('.json')) out.push(p);
  }
  return out;
}

/** A compiled OCSF schema (one release, no extensions). */
export class OcsfSchema {
  readonly version: string;
  private readonly types: Record<string, TypeDef>;
  private readonly dictionary: Record<string, Attr>;
  private readonly classes = new Map<number, Compiled>();
  private readonly objects = new Map<string, Compiled>();
  private readonly profiles = new Set<string>();
  private readonly includeCache = new Map<string, Json>();

  private constructor(private readonly dir: string) {
    this.version = String(readJson(join(dir, 'version.json')).version);
    const dict = readJson(join(dir, 'dictionary.json'));
    this.dictionary = dict.attributes as Record<string, Attr>;
    this.types = (dict.types as Json).attributes as Record<string, TypeDef>;
    for (const f of jsonFiles(join(dir, 'profiles'))) this.profiles.add(String(readJson(f).name));

    const categories = (readJson(join(dir, 'categories.json')).attributes ?? {}) as Record<
      string,
      { uid: number; caption: string }
    >;
    const rawClasses = new Map<string, Json>();
    for (const f of jsonFiles(join(dir, 'events'))) {
      const c = this.resolveIncludes(readJson(f));
      rawClasses.set(String(c.name), c);
    }
    const rawObjects = new Map<string, Json>();
    for (const f of jsonFiles(join(dir, 'objects'))) {
      const o = this.resolveIncludes(readJson(f));
      rawObjects.set(String(o.name), o);
    }

    const observableTypes: Record<string, { caption: string }> = {
      '0': { caption: 'Unknown' },
      '99': { caption: 'Other' },
    };
    const noteObservable = (id: unknown, caption: unknown): void => {
      if (typeof id === 'number') observableTypes[String(id)] = { caption: String(caption) };
    };
    // captions as the official compiler writes them (type / attribute caption, object caption,
    // "<Object caption> Object: <attribute>", "<Class caption> Class: <attribute>")
    for (const t of Object.values(this.types)) noteObservable((t as Json).observable, (t as Json).caption);
    for (const a of Object.values(this.dictionary)) noteObservable(a.observable, a.caption);

    for (const [name, raw] of rawObjects) {
      noteObservable(raw.observable, raw.caption);
      for (const [k, a] of Object.entries((raw.attributes ?? {}) as Record<string, Attr>))
        noteObservable(a.observable, `${String(raw.caption)} Object: ${k}`);
      const o = resolveExtends(rawObjects, raw);
      if (!name.startsWith('_'))
        this.objects.set(name, {
          ...toCompiled(o),
          ...(typeof o.observable === 'number' ? { observable: o.observable } : {}),
        });
    }
    for (const raw of rawClasses.values()) {
      if (typeof raw.uid !== 'number') continue; // abstract parents (system, discovery, …)
      const c = resolveExtends(rawClasses, raw);
      const cat = categories[String(c.category)];
      if (!cat) continue;
      const classUid = cat.uid * 1000 + (c.uid as number);
      const attrs = c.attributes as Record<string, Attr>;
      for (const [k, a] of Object.entries((raw.attributes ?? {}) as Record<string, Attr>))
        noteObservable(a.observable, `${String(raw.caption)} Class: ${k}`);
      for (const [k, v] of Object.entries((raw.observables ?? {}) as Record<string, unknown>))
        noteObservable(v, `${String(raw.caption)} Class: ${k}`);
      const activities = ((deepMerge(this.dictionary.activity_id, attrs.activity_id) as Attr | undefined)
        ?.enum ?? {}) as Record<string, { caption?: string }>;
      attrs.class_uid = { ...attrs.class_uid, enum: { [classUid]: { caption: String(c.caption) } } };
      attrs.category_uid = { ...attrs.category_uid, enum: { [cat.uid]: { caption: cat.caption } } };
      attrs.type_uid = {
        ...attrs.type_uid,
        enum: Object.fromEntries(
          Object.entries(activities).map(([k, v]) => [
            String(classUid * 100 + Number(k)),
            { caption: `${String(c.caption)}: ${String(v.caption)}` },
          ]),
        ),
      };
      this.classes.set(classUid, { ...toCompiled(c), uid: classUid });
    }
    const obs = this.objects.get('observable');
    if (obs) obs.attributes.type_id = { ...obs.attributes.type_id, enum: observableTypes };
  }

  /** Loads and compiles the schema in `dir` (a released ocsf-schema tree). */
  static load(dir: string): OcsfSchema {
    return new OcsfSchema(dir);
  }

  /** The compiled class (attributes deep-merged over the dictionary), or undefined. */
  classOf(classUid: number): Compiled | undefined {
    const c = this.classes.get(classUid);
    return c && { ...c, attributes: this.enrich(c.attributes) };
  }

  private objectOf(name: string): Compiled | undefined {
    const o = this.objects.get(name);
    return o && { ...o, attributes: this.enrich(o.attributes) };
  }

  private enrich(attrs: Record<string, Attr>): Record<string, Attr> {
    const out: Record<string, Attr> = {};
    for (const [name, a] of Object.entries(attrs)) {
      const merged = deepMerge(this.dictionary[name] ?? {}, a) as Attr;
      if (merged.type && !merged.type.endsWith('_t')) {
        merged.object_type = merged.type;
        merged.type = 'object_t';
      }
      out[name] = merged;
    }
    return out;
  }

  /** `$include` of profile and trait files, as ocsf-server's JSON reader resolves them. */
  private resolveIncludes(data: Json): Json {
    const attrs = { ...((data.attributes ?? {}) as Json) };
    const inc = attrs.$include;
    delete attrs.$include;
    let merged: Json = attrs;
    for (const file of inc === undefined ? [] : Array.isArray(inc) ? inc : [inc]) {
      const included = this.included(String(file));
      merged = deepMerge(included.attributes ?? {}, merged) as Json;
    }
    for (const [k, v] of Object.entries(merged)) {
      if (isObj(v) && v.$include !== undefined) {
        const { $include, ...rest } = v;
        merged[k] = deepMerge(this.included(String($include)), rest);
      }
    }
    return { ...data, attributes: merged };
  }

  private included(file: string): Json {
    const cached = this.includeCache.get(file);
    if (cached) return cached;
    const data = readJson(join(this.dir, file));
    if (data.meta === 'profile') {
      const annotations = (data.annotations ?? {}) as Json;
      const attrs: Json = {};
      for (const [k, v] of Object.entries((data.attributes ?? {}) as Json))
        attrs[k] = deepMerge(annotations, { ...(v as Json), profile: data.name });
      data.attributes = attrs;
    }
    this.includeCache.set(file, data);
    return data;
  }

  /** Validates one event; never throws for any JSON value. */
  validate(event: unknown): OcsfResult {
    const r: OcsfResult = { errors: [], warnings: [] };
    if (!isObj(event)) {
      r.errors.push({ code: 'event_wrong_type', path: '', message: 'event is not an object' });
      return r;
    }
    const classUid = event.class_uid;
    if (classUid === undefined || classUid === null) {
      r.errors.push({ code: 'attribute_required_missing', path: 'class_uid', message: 'class_uid missing' });
      return r;
    }
    if (!Number.isInteger(classUid)) {
      r.errors.push({ code: 'attribute_wrong_type', path: 'class_uid', message: 'class_uid not an integer' });
      return r;
    }
    const cls = this.classOf(classUid as number);
    if (!cls) {
      r.errors.push({
        code: 'class_uid_unknown',
        path: 'class_uid',
        message: `no class ${String(classUid)}`,
      });
      return r;
    }
    const metadata = isObj(event.metadata) ? event.metadata : {};
    const declared = Array.isArray(metadata.profiles) ? metadata.profiles : [];
    declared.forEach((p, i) => {
      if (typeof p === 'string' && !this.profiles.has(p))
        r.errors.push({
          code: 'profile_unknown',
          path: `metadata.profiles[${i}]`,
          message: `no profile "${p}"`,
        });
    });
    const profiles = new Set(declared.filter((p): p is string => typeof p === 'string'));
    if (cls['@deprecated'])
      r.warnings.push({ code: 'class_deprecated', path: '', message: `class ${cls.name} is deprecated` });
    this.validateItem(r, event, '', cls, profiles);

    if (typeof metadata.version === 'string') {
      const v = metadata.version;
      if (!/^\d+\.\d+\.\d+(?:-dev|-rc\.\d+)?$/.test(v))
        r.errors.push({ code: 'version_invalid_format', path: 'metadata.version', message: v });
      else if (v < '1.0.0' || v > this.version)
        r.errors.push({ code: 'version_incompatible', path: 'metadata.version', message: v });
      else if (v !== this.version)
        r.warnings.push({ code: 'version_incorrect', path: 'metadata.version', message: v });
    }
    if (Number.isInteger(event.activity_id) && Number.isInteger(event.type_uid)) {
      const expected = (classUid as number) * 100 + (event.activity_id as number);
      if (event.type_uid !== expected)
        r.errors.push({
          code: 'type_uid_incorrect',
          path: 'type_uid',
          message: `expected ${expected}, got ${String(event.type_uid)}`,
        });
    }
    if (Array.isArray(event.observables))
      event.observables.forEach((o, i) => {
        if (!isObj(o) || typeof o.name !== 'string') return;
        const found = this.resolvePath(event, o.name.split('.'), cls, profiles);
        if (!found.attr) {
          r.errors.push({
            code: 'observable_name_invalid_reference',
            path: `observables[${i}].name`,
            message: `"${o.name}" is not an attribute of class ${cls.name}`,
          });
          return;
        }
        const expected = this.observableOf(found.attr);
        if (expected !== undefined && o.type_id !== expected)
          r.errors.push({
            code: 'observable_type_id_mismatch',
            path: `observables[${i}].type_id`,
            message: `${o.name} is observable type ${expected}, got ${String(o.type_id)}`,
          });
        if (o.value !== undefined && !found.values.some((v) => String(v) === o.value))
          r.errors.push({
            code: 'observable_value_mismatch',
            path: `observables[${i}].value`,
            message: `"${String(o.value)}" is not the value of ${o.name}`,
          });
      });
    return r;
  }

  /** Follows an observable name through the class (arrays of objects are walked element-wise). */
  private resolvePath(
    item: unknown,
    keys: string[],
    schema: Compiled,
    profiles: Set<string>,
  ): { attr?: Attr; values: unknown[] } {
    const [key, ...rest] = keys;
    const attr = key === undefined ? undefined : visible(schema.attributes, profiles)[key];
    if (!attr || key === undefined) return { values: [] };
    const items = Array.isArray(item) ? item : [item];
    const values = items.flatMap((i) => {
      const v = isObj(i) ? i[key] : undefined;
      return Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
    });
    if (rest.length === 0) return { attr, values };
    const obj = attr.type === 'object_t' ? this.objectOf(String(attr.object_type)) : undefined;
    if (!obj) return { values: [] };
    return this.resolvePath(values, rest, obj, profiles);
  }

  /** The observable type id an attribute carries: its own annotation, else its type's or object's. */
  private observableOf(a: Attr): number | undefined {
    if (typeof a.observable === 'number') return a.observable;
    if (a.type === 'object_t') {
      return this.objects.get(String(a.object_type))?.observable;
    }
    const t = this.types[String(a.type)] as (TypeDef & { observable?: number }) | undefined;
    return t?.observable;
  }

  private validateItem(
    r: OcsfResult,
    item: Json,
    path: string,
    schema: Compiled,
    profiles: Set<string>,
  ): void {
    const attrs = visible(schema.attributes, profiles);
    const at = (k: string) => (path ? `${path}.${k}` : k);
    for (const [name, a] of Object.entries(attrs)) {
      const value = item[name];
      if (value === undefined || value === null) {
        if (a.requirement === 'required')
          r.errors.push({
            code: 'attribute_required_missing',
            path: at(name),
            message: `required attribute "${at(name)}" is missing`,
          });
        continue;
      }
      if (a['@deprecated'])
        r.warnings.push({
          code: 'attribute_deprecated',
          path: at(name),
          message: a['@deprecated'].message ?? '',
        });
      if (a.is_array) {
        if (!Array.isArray(value)) {
          r.errors.push({
            code: 'attribute_wrong_type',
            path: at(name),
            message: `expected an array of ${a.type}`,
          });
          continue;
        }
        value.forEach((v, i) => {
          this.validateValue(r, v, `${at(name)}[${i}]`, a, profiles);
        });
      } else this.validateValue(r, value, at(name), a, profiles);
    }
    if (Object.keys(attrs).length > 0)
      for (const key of Object.keys(item))
        if (!(key in attrs)) {
          const gated = schema.attributes[key]?.profile;
          r.errors.push({
            code: 'attribute_unknown',
            path: at(key),
            message: `attribute "${key}" is not defined in ${schema.uid ? 'class' : 'object'} "${schema.name}"${gated ? ` unless metadata.profiles declares "${gated}"` : ''}`,
          });
        }
    for (const [name, a] of Object.entries(attrs)) {
      if (!a.enum || item[name] === undefined || item[name] === null) continue;
      const values = a.is_array && Array.isArray(item[name]) ? (item[name] as unknown[]) : [item[name]];
      for (const value of values) {
        const e = a.enum[String(value)];
        if (!e) {
          r.errors.push({
            code: 'attribute_enum_value_unknown',
            path: at(name),
            message: `value ${JSON.stringify(value)} is not defined for enum "${name}"`,
          });
          continue;
        }
        if (e['@deprecated'])
          r.warnings.push({
            code: 'attribute_enum_value_deprecated',
            path: at(name),
            message: String(value),
          });
        if (a.is_array || !a.sibling) continue;
        const sibling = item[a.sibling];
        if (value === 99 && (sibling === undefined || sibling === null))
          r.errors.push({
            code: 'attribute_enum_sibling_missing_for_other',
            path: at(a.sibling),
            message: `"${at(name)}" is 99 (Other): "${at(a.sibling)}" must carry the source's own label`,
          });
        else if (value !== 99 && sibling !== undefined && sibling !== e.caption)
          r.warnings.push({
            code: 'attribute_enum_sibling_incorrect',
            path: at(a.sibling),
            message: `expected "${String(e.caption)}", got ${JSON.stringify(sibling)}`,
          });
      }
    }
    for (const [kind, keys] of Object.entries(schema.constraints ?? {})) {
      const present = keys.filter((k) => item[k] !== undefined && item[k] !== null).length;
      if ((kind === 'at_least_one' && present === 0) || (kind === 'just_one' && present !== 1))
        r.errors.push({
          code: 'constraint_failed',
          path,
          message: `${kind} of [${keys.join(', ')}] in "${schema.name}", got ${present}`,
        });
    }
  }

  private validateValue(r: OcsfResult, value: unknown, path: string, a: Attr, profiles: Set<string>): void {
    const wrong = (expected: string) =>
      r.errors.push({
        code: 'attribute_wrong_type',
        path,
        message: `expected ${expected}, got ${Array.isArray(value) ? 'array' : typeof value}`,
      });
    if (a.type === 'object_t') {
      const obj = this.objectOf(String(a.object_type));
      if (!obj) {
        r.errors.push({ code: 'schema_bug_type_missing', path, message: String(a.object_type) });
        return;
      }
      if (!isObj(value)) return void wrong(`${String(a.object_type)} (object)`);
      if (obj['@deprecated']) r.warnings.push({ code: 'object_deprecated', path, message: obj.name });
      this.validateItem(r, value, path, obj, profiles);
      return;
    }
    const typeName = String(a.type);
    const t = this.types[typeName];
    if (!t) {
      r.errors.push({ code: 'schema_bug_type_missing', path, message: typeName });
      return;
    }
    const base = t.type ?? typeName;
    const superT = t.type ? this.types[t.type] : undefined;
    switch (base) {
      case 'boolean_t':
        if (typeof value !== 'boolean') return void wrong(typeName);
        break;
      // the official validator allows 64-bit integer_t and 128-bit long_t; JSON.parse keeps
      // whole numbers exact only up to 2^53, so that is the range checked here
      case 'integer_t':
      case 'long_t':
        if (!Number.isSafeInteger(value)) return void wrong(`${typeName} (a whole number)`);
        break;
      case 'float_t':
        if (typeof value !== 'number' || !Number.isFinite(value) || Number.isInteger(value))
          return void wrong(`${typeName} (a JSON number with a fraction)`);
        break;
      case 'string_t':
        if (typeof value !== 'string') return void wrong(typeName);
        break;
      case 'json_t':
        return;
      default:
        r.errors.push({ code: 'schema_bug_primitive_type_unknown', path, message: base });
        return;
    }
    const values = t.values ?? superT?.values;
    if (values && !values.includes(value))
      r.errors.push({ code: 'attribute_value_not_in_type_values', path, message: String(value) });
    const range = t.range ?? superT?.range;
    if (range && typeof value === 'number' && (value < range[0] || value > range[1]))
      r.errors.push({
        code: 'attribute_value_exceeds_range',
        path,
        message: `${value} outside ${range[0]}..${range[1]} of ${typeName}`,
      });
    if (typeof value === 'string') {
      const maxLen = t.max_len ?? superT?.max_len;
      const len = [...value].length;
      if (maxLen !== undefined && len > maxLen)
        r.errors.push({
          code:
            t.max_len !== undefined
              ? 'attribute_value_exceeds_max_len'
              : 'attribute_value_exceeds_super_type_max_len',
          path,
          message: `length ${len} exceeds ${typeName} max length ${maxLen}`,
        });
      const regex = t.regex ?? superT?.regex;
      if (regex && !new RegExp(regex).test(value))
        r.warnings.push({
          code: 'attribute_value_regex_not_matched',
          path,
          message: `does not match ${typeName}`,
        });
    }
  }
}

/** The attributes an event may use: those no profile adds, and those of the declared profiles. */
function visible(attrs: Record<string, Attr>, profiles: Set<string>): Record<string, Attr> {
  const out: Record<string, Attr> = {};
  for (const [k, a] of Object.entries(attrs))
    if (a.profile === undefined || a.profile === null || profiles.has(a.profile)) out[k] = a;
  return out;
}

function resolveExtends(all: Map<string, Json>, item: Json, seen = new Set<string>()): Json {
  const parentName = item.extends;
  if (typeof parentName !== 'string') return item;
  const parent = all.get(parentName);
  if (!parent || seen.has(parentName)) throw new Error(`${String(item.name)} extends unknown ${parentName}`);
  const base = resolveExtends(all, parent, new Set([...seen, parentName]));
  const { extends: _drop, ...rest } = { ...base, ...item };
  return { ...rest, attributes: deepMerge(base.attributes ?? {}, item.attributes ?? {}) };
}

function toCompiled(c: Json): Compiled {
  return {
    name: String(c.name),
    caption: String(c.caption ?? c.name),
    attributes: { ...(c.attributes as Record<string, Attr>) },
    ...(isObj(c.constraints) ? { constraints: c.constraints as Record<string, string[]> } : {}),
    ...(c['@deprecated'] ? { '@deprecated': c['@deprecated'] } : {}),
  };
}

/** The OCSF 1.8.0 release the collector's output claims, from the test fixtures. */
export const OCSF_SCHEMA_DIR = join(import.meta.dirname, '..', 'fixtures', 'ocsf-schema-1.8.0');

let loaded: OcsfSchema | undefined;
/** The 1.8.0 schema, compiled once per test file. */
export function ocsf180(): OcsfSchema {
  loaded ??= OcsfSchema.load(OCSF_SCHEMA_DIR);
  return loaded;
}
