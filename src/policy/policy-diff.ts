/**
 * Owns `guardctl policy diff`: what changes between two policy bodies, for the admin reviewing a
 * change before signing it (and for the change log). Rules are compared by id, field by field;
 * list fields show added (+) and removed (-) values; exceptions are compared as whole entries.
 */
import type { PolicyBody, PolicyException, PolicyRule } from './policy-types.js';

export interface FieldChange {
  readonly field: string;
  readonly from?: unknown;
  readonly to?: unknown;
  readonly added?: readonly string[];
  readonly removed?: readonly string[];
}

export interface PolicyDiff {
  readonly header: readonly FieldChange[];
  readonly rulesAdded: readonly PolicyRule[];
  readonly rulesRemoved: readonly PolicyRule[];
  readonly rulesChanged: readonly { readonly id: string; readonly changes: readonly FieldChange[] }[];
  /** Rule ids in a different order (order breaks ties between equal actions). */
  readonly orderChanged: boolean;
  readonly exceptionsAdded: readonly PolicyException[];
  readonly exceptionsRemoved: readonly PolicyException[];
}

const HEADER_FIELDS = ['schema', 'version', 'mode', 'issued_at', 'expires_at'] as const;

/** The differences from `a` (old) to `b` (new). */
export function diffPolicies(a: PolicyBody, b: PolicyBody): PolicyDiff {
  const header: FieldChange[] = [];
  for (const f of HEADER_FIELDS) if (a[f] !== b[f]) header.push({ field: f, from: a[f], to: b[f] });
  const oldRules = new Map(a.rules.map((r) => [r.id, r]));
  const newRules = new Map(b.rules.map((r) => [r.id, r]));
  const rulesChanged: { id: string; changes: FieldChange[] }[] = [];
  for (const r of b.rules) {
    const o = oldRules.get(r.id);
    if (!o) continue;
    const changes = diffObjects(flatten(o), flatten(r));
    if (changes.length > 0) rulesChanged.push({ id: r.id, changes });
  }
  const common = (rules: readonly PolicyRule[], other: Map<string, PolicyRule>) =>
    rules.filter((r) => other.has(r.id)).map((r) => r.id);
  const exKey = (e: PolicyException): string => JSON.stringify(e, Object.keys(e).sort());
  const oldEx = new Set((a.exceptions ?? []).map(exKey));
  const newEx = new Set((b.exceptions ?? []).map(exKey));
  return {
    header,
    rulesAdded: b.rules.filter((r) => !oldRules.has(r.id)),
    rulesRemoved: a.rules.filter((r) => !newRules.has(r.id)),
    rulesChanged,
    orderChanged: common(a.rules, newRules).join('\0') !== common(b.rules, oldRules).join('\0'),
    exceptionsAdded: (b.exceptions ?? []).filter((e) => !oldEx.has(exKey(e))),
    exceptionsRemoved: (a.exceptions ?? []).filter((e) => !newEx.has(exKey(e))),
  };
}

/** A rule as `field → scalar | string[]` (process.* and packages flattened to comparable strings). */
function flatten(r: PolicyRule): Map<string, unknown> {
  const m = new Map<string, unknown>();
  m.set('name', r.name);
  m.set('action', r.action);
  m.set('message', r.message);
  m.set('url', r.url ?? null);
  const p = r.process ?? {};
  m.set('process.names', [...(p.names ?? [])]);
  m.set('process.exe_globs', [...(p.exe_globs ?? [])]);
  m.set('process.argv_patterns', [...(p.argv_patterns ?? [])]);
  m.set('process.script_packages', [...(p.script_packages ?? [])]);
  m.set('process.sha256', [...(p.sha256 ?? [])]);
  m.set(
    'process.markers',
    (p.markers ?? []).map((set) => set.map((x) => JSON.stringify(x)).join(' & ')),
  );
  m.set(
    'packages',
    (r.packages ?? []).map((k) => `${k.ecosystem}:${k.name}@${k.range}`),
  );
  m.set('paths', [...(r.paths ?? [])]);
  m.set('platforms', [...(r.platforms ?? ['linux', 'darwin', 'win32'])]);
  return m;
}

function diffObjects(a: Map<string, unknown>, b: Map<string, unknown>): FieldChange[] {
  const out: FieldChange[] = [];
  for (const [field, to] of b) {
    const from = a.get(field);
    if (Array.isArray(to) && Array.isArray(from)) {
      const added = to.filter((v) => !from.includes(v)) as string[];
      const removed = from.filter((v) => !to.includes(v)) as string[];
      if (added.length || removed.length) out.push({ field, added, removed });
    } else if (from !== to) out.push({ field, from, to });
  }
  return out;
}

function describeException(e: PolicyException): string {
  const parts = [`rule ${e.rule}`];
  if (e.users) parts.push(`users=${e.users.join(',')}`);
  if (e.groups) parts.push(`groups=${e.groups.join(',')}`);
  if (e.hosts) parts.push(`hosts=${e.hosts.join(',')}`);
  if (e.device_tags) parts.push(`device_tags=${e.device_tags.join(',')}`);
  parts.push(`until ${e.expires_at}`);
  return parts.join(' ');
}

const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** Human-readable diff; "no differences" when there are none. */
export function formatDiff(d: PolicyDiff): string {
  const lines: string[] = [];
  for (const h of d.header) lines.push(`${h.field.padEnd(11)} ${show(h.from)} → ${show(h.to)}`);
  for (const r of d.rulesAdded) lines.push(`+ rule ${r.id} (${r.action}): ${r.name}`);
  for (const r of d.rulesRemoved) lines.push(`- rule ${r.id} (${r.action}): ${r.name}`);
  for (const c of d.rulesChanged) {
    lines.push(`~ rule ${c.id}`);
    for (const f of c.changes) {
      if (f.added || f.removed) {
        for (const v of f.added ?? []) lines.push(`    ${f.field}: + ${v}`);
        for (const v of f.removed ?? []) lines.push(`    ${f.field}: - ${v}`);
      } else lines.push(`    ${f.field}: ${show(f.from)} → ${show(f.to)}`);
    }
  }
  if (d.orderChanged)
    lines.push('~ rule order changed (order breaks ties between rules with the same action)');
  for (const e of d.exceptionsAdded) lines.push(`+ exception ${describeException(e)}`);
  for (const e of d.exceptionsRemoved) lines.push(`- exception ${describeException(e)}`);
  return lines.length === 0 ? 'no differences' : lines.join('\n');
}
