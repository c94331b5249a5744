/**
 * Owns validating events against the v1 JSON Schema (event.schema.json) and the field catalogue
 * derived from it. The schema is the one truth: the outbox refuses to send what it rejects, the
 * collector validates with the same function, and `guardctl explain` / docs/data-collected.md /
 * docs/events.md print `EVENT_FIELDS`, so the explanation cannot drift from the wire.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsImport from 'ajv-formats';
import { type ContentClass, isContentClass, isPersonal } from './content-class.js';
import schemaJson from './event.schema.json' with { type: 'json' };
import { EVENT_TYPES, type EventType } from './event-types.js';

/** The schema object (read-only by convention; exported for the collector and the docs). */
export const EVENT_SCHEMA: Readonly<Record<string, unknown>> = schemaJson as Record<string, unknown>;

/** At most this many error messages are returned per event: enough to fix it, bounded for hostile input. */
const MAX_ERRORS = 10;

export type EventValidation = { ok: true } | { ok: false; errors: string[] };

type SchemaNode = {
  $ref?: string;
  description?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  format?: string;
  pattern?: string;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  additionalProperties?: boolean | SchemaNode;
  items?: SchemaNode;
  anyOf?: SchemaNode[];
  'x-class'?: string;
  allOf?: { if: { properties: { type: { const: string } } }; then: SchemaNode }[];
  $defs?: Record<string, SchemaNode>;
};

const root = schemaJson as unknown as SchemaNode;

// ajv-formats is CommonJS; under NodeNext its default import is the module object.
const addFormats = ((addFormatsImport as unknown as { default?: unknown }).default ??
  addFormatsImport) as unknown as (ajv: Ajv2020) => void;

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
ajv.addKeyword({ keyword: 'x-class', schemaType: 'string' });
addFormats(ajv);
const compiled = ajv.compile(root);

/**
 * Validates one event (envelope + type fields). Never throws, whatever `obj` is. Errors name the
 * field path and what was expected, e.g. `/outcome/action_taken: must be equal to one of the allowed values`.
 */
export function validateEvent(obj: unknown): EventValidation {
  if (compiled(obj)) return { ok: true };
  const errors: string[] = [];
  for (const e of compiled.errors ?? []) {
    // The if/then wrappers only repeat the inner error; keep the inner one.
    if (e.keyword === 'if') continue;
    let msg = `${e.instancePath || '/'}: ${e.message ?? 'invalid'}`;
    if (e.keyword === 'additionalProperties')
      msg += ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})`;
    if (e.keyword === 'enum')
      msg += ` (${((e.params as { allowedValues?: unknown[] }).allowedValues ?? []).join(', ')})`;
    if (!errors.includes(msg)) errors.push(msg);
    if (errors.length >= MAX_ERRORS) break;
  }
  return { ok: false, errors: errors.length ? errors : ['/: invalid event'] };
}

/** One documented field: what `guardctl explain` and docs/data-collected.md print. */
export interface EventField {
  /** Dotted path within the event, `[]` for array items, `*` for map values (e.g. `outcome.details.killed[]`, `sensors.*`). */
  readonly path: string;
  /** JSON type(s), e.g. `string`, `integer|null`, `enum: block, warn, audit`. */
  readonly type: string;
  readonly description: string;
  /** The event types that can carry this field (with this meaning). */
  readonly eventTypes: readonly EventType[];
  /** True when every event of those types carries it (the parent object being present). */
  readonly required: boolean;
  /** The types among `eventTypes` whose events always carry it (the parent object being present). */
  readonly requiredIn: readonly EventType[];
  /** What kind of value the field carries (`x-class` in the schema; src/events/content-class.ts). */
  readonly contentClass: ContentClass;
  /**
   * True when the field can identify a person or reveal what they work on (user, paths, command
   * line, host, free text): computed from `contentClass`, never kept by hand.
   */
  readonly personal: boolean;
}

function resolve(node: SchemaNode): SchemaNode {
  let n = node;
  for (let i = 0; i < 16 && n.$ref; i++) {
    const name = n.$ref.replace('#/$defs/', '');
    const target = root.$defs?.[name];
    if (!target) throw new Error(`event.schema.json: unresolved $ref ${n.$ref}`);
    n = target;
  }
  return n;
}

function typeLabel(n: SchemaNode): string {
  if (n.enum) return `enum: ${n.enum.join(', ')}`;
  if (n.anyOf) return n.anyOf.map((a) => typeLabel(resolve(a))).join(' | ');
  const t = Array.isArray(n.type) ? n.type.join('|') : (n.type ?? 'any');
  if (n.format === 'date-time') return t.replace('string', 'string (RFC 3339 time)');
  if (n.type === 'array' && n.items) return `array of ${typeLabel(resolve(n.items))}`;
  return t;
}

/** The shape (top-level object schema) of each event type. */
function shapeOf(type: EventType): SchemaNode {
  const branch = root.allOf?.find((b) => b.if.properties.type.const === type);
  if (!branch) throw new Error(`event.schema.json: no shape for ${type}`);
  return resolve(branch.then);
}

function buildCatalogue(): EventField[] {
  const byKey = new Map<
    string,
    {
      path: string;
      type: string;
      description: string;
      types: EventType[];
      required: boolean;
      requiredIn: EventType[];
      contentClass: ContentClass;
    }
  >();
  const visit = (path: string, node: SchemaNode, required: boolean, type: EventType, depth: number): void => {
    const n = resolve(node);
    const key = `${path}\u0000${n.description ?? ''}`;
    let entry = byKey.get(key);
    if (!entry) {
      const cls = n['x-class'];
      if (!isContentClass(cls))
        throw new Error(`event.schema.json: ${path} has no known x-class (${String(cls)})`);
      entry = {
        path,
        type: typeLabel(n),
        description: n.description ?? '',
        types: [],
        required,
        requiredIn: [],
        contentClass: cls,
      };
      byKey.set(key, entry);
    }
    if (!entry.types.includes(type)) entry.types.push(type);
    entry.required &&= required;
    if (required && !entry.requiredIn.includes(type)) entry.requiredIn.push(type);
    if (depth > 8) return;
    for (const [k, child] of Object.entries(n.properties ?? {}))
      visit(`${path}.${k}`, child, (n.required ?? []).includes(k), type, depth + 1);
    if (typeof n.additionalProperties === 'object')
      visit(`${path}.*`, n.additionalProperties, false, type, depth + 1);
  };
  for (const type of EVENT_TYPES) {
    const shape = shapeOf(type);
    for (const [k, child] of Object.entries(shape.properties ?? {}))
      visit(k, child, (shape.required ?? []).includes(k), type, 0);
  }
  return [...byKey.values()].map((e) => ({
    path: e.path,
    type: e.type,
    description: e.description,
    eventTypes: e.types,
    required: e.required,
    requiredIn: e.requiredIn,
    contentClass: e.contentClass,
    personal: isPersonal(e.contentClass),
  }));
}

/** Every field any event can carry, in schema order (common fields first). */
export const EVENT_FIELDS: readonly EventField[] = Object.freeze(buildCatalogue());

/** The names of the common envelope fields (carried by every event). */
export const COMMON_FIELDS: readonly string[] = Object.freeze(
  Object.keys(shapeOf('agent.started').properties ?? {}).filter((k) =>
    EVENT_FIELDS.some((f) => f.path === k && f.eventTypes.length === EVENT_TYPES.length),
  ),
);

/** The schema-level description of the v1 event (printed at the top of docs). */
export const EVENT_SCHEMA_DESCRIPTION: string = root.description ?? '';

/**
 * The dotted field paths present in `event` (objects descended, arrays as `[]`, map values of
 * `sensors` as `*`), for the test that proves every emitted field is in the catalogue.
 */
export function fieldPathsOf(event: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  const mapPaths = new Set(EVENT_FIELDS.filter((f) => f.path.endsWith('.*')).map((f) => f.path.slice(0, -2)));
  const walk = (prefix: string, v: unknown, depth: number): void => {
    if (depth > 8 || typeof v !== 'object' || v === null || Array.isArray(v)) return;
    for (const [k, child] of Object.entries(v)) {
      const p = mapPaths.has(prefix) ? `${prefix}.*` : prefix ? `${prefix}.${k}` : k;
      out.push(p);
      walk(p, child, depth + 1);
    }
  };
  walk('', event, 0);
  return [...new Set(out)];
}
