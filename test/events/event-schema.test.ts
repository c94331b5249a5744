import { describe, expect, test } from 'vitest';
import {
  COMMON_FIELDS,
  EVENT_FIELDS,
  EVENT_SCHEMA,
  fieldPathsOf,
  validateEvent,
} from '../../src/events/event-schema.js';
import { EVENT_TYPES, type EventType } from '../../src/events/event-types.js';
import { sampleEvent } from './samples.js';

const known = new Set(EVENT_FIELDS.map((f) => f.path));

describe('event schema v1', () => {
  test.each(EVENT_TYPES)('a complete %s event is valid', (type) => {
    expect(validateEvent(sampleEvent(type))).toEqual({ ok: true });
  });

  test('every property and every field definition has a description (explain prints them)', () => {
    const missing: string[] = [];
    const walk = (node: unknown, at: string): void => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      for (const [k, v] of Object.entries((n.properties as Record<string, Record<string, unknown>>) ?? {})) {
        if (!v.$ref && typeof v.description !== 'string') missing.push(`${at}.${k}`);
        walk(v, `${at}.${k}`);
      }
    };
    const defs = EVENT_SCHEMA.$defs as Record<string, Record<string, unknown>>;
    for (const [k, d] of Object.entries(defs)) {
      const isShape = 'seq' in ((d.properties as object) ?? {});
      if (!isShape && typeof d.description !== 'string') missing.push(`$defs.${k}`);
      walk(d, `$defs.${k}`);
    }
    expect(missing).toEqual([]);
    for (const f of EVENT_FIELDS) expect(f.description.length, f.path).toBeGreaterThan(5);
  });

  test('common fields are carried by every type', () => {
    expect(COMMON_FIELDS).toEqual(['id', 'time', 'seq', 'device_id', 'hostname', 'type', 'agent_version']);
  });

  test('every field of every sample event is in the catalogue explain prints', () => {
    for (const type of EVENT_TYPES) {
      for (const p of fieldPathsOf(sampleEvent(type))) expect(known.has(p), `${type}: ${p}`).toBe(true);
    }
  });

  test('the catalogue names which types carry a field, and marks personal data', () => {
    const argv = EVENT_FIELDS.find((f) => f.path === 'argv');
    expect(argv?.eventTypes).toEqual([
      'process.blocked',
      'process.warned',
      'process.audited',
      'process.denied',
      // a shadow match describes its process subject as the enforced event would
      'policy.shadow_match',
    ]);
    expect(argv?.personal).toBe(true);
    const reasons = EVENT_FIELDS.filter((f) => f.path === 'reason');
    // the same name means different things per family; each meaning is listed with its types
    expect(reasons.length).toBeGreaterThanOrEqual(4);
    expect(EVENT_FIELDS.find((f) => f.path === 'sensors.*')?.type).toBe('boolean');
  });

  // Table of rejected inputs: each names the offending path.
  const cases: [string, EventType, (e: Record<string, unknown>) => void, RegExp][] = [
    [
      'an undocumented top-level field',
      'agent.stopped',
      (e) => (e.env = { HOME: '/x' }),
      /must NOT have additional properties \(env\)/,
    ],
    [
      'an undocumented nested field',
      'process.blocked',
      (e) => ((e.outcome as Record<string, unknown>).stdout = 'x'),
      /\/outcome: must NOT have additional properties \(stdout\)/,
    ],
    ['a field of another type', 'agent.stopped', (e) => (e.argv = ['x']), /additional properties \(argv\)/],
    ['a missing required field', 'process.blocked', (e) => delete e.pid, /required property 'pid'/],
    ['a wrong type', 'process.blocked', (e) => (e.pid = '42'), /\/pid: must be integer/],
    [
      'a bad enum value',
      'process.warned',
      (e) => (e.reason = 'vibes'),
      /\/reason: must be equal to one of the allowed values/,
    ],
    [
      'a bad action_taken',
      'process.blocked',
      (e) => ((e.outcome as Record<string, unknown>).action_taken = 'nuked'),
      /\/outcome\/action_taken/,
    ],
    [
      'a non-v7 id',
      'agent.stopped',
      (e) => (e.id = '6f9619ff-8b86-d011-b42d-00c04fc964ff'),
      /\/id: must match pattern/,
    ],
    ['a bad time', 'agent.stopped', (e) => (e.time = 'yesterday'), /\/time: must match format "date-time"/],
    ['seq 0', 'agent.stopped', (e) => (e.seq = 0), /\/seq: must be >= 1/],
    [
      'an unknown type',
      'agent.stopped',
      (e) => (e.type = 'agent.exploded'),
      /\/type: must be equal to one of/,
    ],
    [
      'a non-GUARD_POLICY rejection reason',
      'policy.rejected',
      (e) => (e.reason = 'nope'),
      /\/reason: must match pattern/,
    ],
    ['a dropped count of 0', 'events.dropped', (e) => (e.count = 0), /\/count: must be >= 1/],
    [
      'a sensor map value that is not boolean',
      'agent.heartbeat',
      (e) => ((e.sensors as Record<string, unknown>).process = 'yes'),
      /\/sensors\/process: must be boolean/,
    ],
    [
      'a huge argv element',
      'process.audited',
      (e) => ((e.argv as string[])[0] = 'x'.repeat(9000)),
      /\/argv\/0: must NOT have more than 8192 characters/,
    ],
  ];
  test.each(cases)('rejects %s', (_what, type, mutate, expected) => {
    const e = sampleEvent(type) as Record<string, unknown>;
    mutate(e);
    const v = validateEvent(e);
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.errors.join('\n')).toMatch(expected);
  });

  test('never throws on hostile input, and caps the number of errors', () => {
    for (const x of [
      null,
      undefined,
      42,
      'str',
      [],
      [1, 2],
      { type: null },
      { __proto__: { type: 'agent.stopped' } },
    ]) {
      const v = validateEvent(x);
      expect(v.ok).toBe(false);
    }
    const many = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`f${i}`, i]));
    const v = validateEvent({ ...sampleEvent('agent.stopped'), ...many });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.errors.length).toBeLessThanOrEqual(10);
  });
});
