/**
 * Validates an ECS document against the field definitions the `@elastic/ecs` package ships
 * (`EcsFlat`: the generated `ecs_flat.yml` of the ECS release, one entry per dotted field with its
 * type, `normalize: ['array']` and `allowed_values`, each category with its `expected_event_types`).
 *
 * Rules (what an Elasticsearch index with the ECS templates would store as intended):
 * - every leaf (nested objects flattened to dotted names) is an ECS field, or lies under an object
 *   / flattened / nested field (`labels.*`), or under the custom namespace given (`toolguard.*`);
 * - its value fits the field's type (keyword-like: string; long/integer: integer; float-like:
 *   number; date: an ISO 8601 string; boolean; ip: an IP address);
 * - an array only where the field is normalised to an array, and such a field is an array;
 * - a value from `allowed_values` where the field has them (`event.kind/category/type/outcome`),
 *   and each `event.type` expected by at least one of the document's `event.category` values.
 */

import { isIP } from 'node:net';
import { EcsFlat, EcsVersion } from '@elastic/ecs';

export interface EcsIssue {
  readonly code:
    | 'unknown_field'
    | 'wrong_type'
    | 'not_array_field'
    | 'array_expected'
    | 'value_not_allowed'
    | 'type_not_expected_for_category'
    | 'missing_required';
  readonly field: string;
  readonly message: string;
}

interface FieldDef {
  readonly type: string;
  readonly normalize?: readonly string[];
  readonly allowed_values?: readonly { name: string; expected_event_types?: readonly string[] }[];
}

const FIELDS = EcsFlat as unknown as Record<string, FieldDef>;
const CONTAINER_TYPES = new Set(['object', 'flattened', 'nested']);
const KEYWORD_TYPES = new Set(['keyword', 'wildcard', 'match_only_text', 'constant_keyword', 'text']);
const INTEGER_TYPES = new Set(['long', 'integer', 'short', 'byte']);
const FLOAT_TYPES = new Set(['float', 'double', 'scaled_float', 'half_float']);
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
/** Fields every ECS event carries (ECS "Guidelines": @timestamp and ecs.version are required). */
const REQUIRED = ['@timestamp', 'ecs.version'];

/** The ECS release the package describes. */
export const ecsVersion: string = EcsVersion;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Does a field of `type` hold `v` (one value, not an array)? */
function fits(type: string, v: unknown): boolean {
  if (KEYWORD_TYPES.has(type)) return typeof v === 'string';
  if (INTEGER_TYPES.has(type)) return Number.isSafeInteger(v);
  if (FLOAT_TYPES.has(type)) return typeof v === 'number' && Number.isFinite(v);
  if (type === 'date') return typeof v === 'string' && ISO_DATE.test(v) && !Number.isNaN(Date.parse(v));
  if (type === 'boolean') return typeof v === 'boolean';
  if (type === 'ip') return typeof v === 'string' && isIP(v) !== 0;
  if (CONTAINER_TYPES.has(type)) return isPlainObject(v);
  if (type === 'geo_point') return isPlainObject(v) || typeof v === 'string';
  return false;
}

/** Validates `doc`; `customNamespaces` are top-level objects of the producer's own fields (ECS: custom fields go under a name of their own). */
export function validateEcs(doc: unknown, customNamespaces: readonly string[] = ['toolguard']): EcsIssue[] {
  const issues: EcsIssue[] = [];
  const add = (code: EcsIssue['code'], field: string, message: string): void => {
    issues.push({ code, field, message });
  };
  const seen = new Map<string, unknown>();
  const walk = (v: unknown, path: string): void => {
    if (path && customNamespaces.includes(path.split('.')[0] as string)) return;
    const def = path ? FIELDS[path] : undefined;
    if (def) {
      seen.set(path, v);
      const isArrayField = def.normalize?.includes('array') ?? false;
      if (Array.isArray(v)) {
        if (!isArrayField) add('not_array_field', path, `${path} holds one value, got an array`);
        for (const x of v)
          if (!fits(def.type, x)) add('wrong_type', path, `${path} (${def.type}) got ${JSON.stringify(x)}`);
      } else {
        if (isArrayField) add('array_expected', path, `${path} is an array field, got ${JSON.stringify(v)}`);
        if (!fits(def.type, v)) add('wrong_type', path, `${path} (${def.type}) got ${JSON.stringify(v)}`);
      }
      if (def.allowed_values) {
        const allowed = new Set(def.allowed_values.map((a) => a.name));
        for (const x of Array.isArray(v) ? v : [v])
          if (!allowed.has(x as string))
            add(
              'value_not_allowed',
              path,
              `${path} = ${JSON.stringify(x)} is not one of ${[...allowed].join(', ')}`,
            );
      }
      return;
    }
    if (isPlainObject(v)) {
      const entries = Object.entries(v);
      if (path && entries.length === 0) add('unknown_field', path, `${path}: empty object`);
      for (const [k, x] of entries) walk(x, path ? `${path}.${k}` : k);
      return;
    }
    add('unknown_field', path || '(root)', `${path || 'the document'} is not an ECS field`);
  };
  walk(doc, '');
  for (const f of REQUIRED) if (!seen.has(f)) add('missing_required', f, `${f} is required`);
  // each event.type must be one of those its categories expect
  const categories = seen.get('event.category');
  const types = seen.get('event.type');
  if (Array.isArray(categories) && Array.isArray(types)) {
    const expected = new Set(
      (FIELDS['event.category']?.allowed_values ?? [])
        .filter((a) => categories.includes(a.name))
        .flatMap((a) => a.expected_event_types ?? []),
    );
    for (const t of types)
      if (!expected.has(t as string))
        add(
          'type_not_expected_for_category',
          'event.type',
          `event.type ${JSON.stringify(t)} is expected by none of the categories ${categories.join(', ')}`,
        );
  }
  return issues;
}
