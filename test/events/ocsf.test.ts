/**
 * The OCSF mapping against the released OCSF 1.8.0 schema: every event type and edge variant
 * validates with no error and no warning (test/helpers/ocsf-validator.ts compiles the schema as
 * the official compiler does), and each type lands in the class, activity and outcome the docs
 * promise.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { EVENT_TYPES } from '../../src/events/event-types.js';
import { OCSF_MAPPING, OCSF_VERSION, ocsfMappingTable, toOcsf } from '../../src/events/ocsf.js';
import { ocsf180 } from '../helpers/ocsf-validator.js';
import { sampleEvent, sampleVariants } from './samples.js';

// biome-ignore lint/suspicious/noExplicitAny: OCSF events are deep untyped JSON the tests read by path
type O = Record<string, any>;

const schema = ocsf180();
const variants = sampleVariants();
/** One event of every type the mapping knows, including types announced but not yet in EVENT_TYPES. */
function eventOf(type: string): O {
  if ((EVENT_TYPES as readonly string[]).includes(type))
    return sampleEvent(type as (typeof EVENT_TYPES)[number]);
  const v = variants[type];
  if (!v) throw new Error(`no sample for ${type}`);
  return v;
}
const all: [string, O][] = [
  ...EVENT_TYPES.map((t): [string, O] => [t, sampleEvent(t)]),
  ...Object.entries(variants),
];

describe('OCSF 1.8.0 output validates against the released schema', () => {
  test('the fixture is the 1.8.0 release and the mapping claims it', () => {
    expect(schema.version).toBe('1.8.0');
    expect(OCSF_VERSION).toBe('1.8.0');
  });

  test.each(all)('%s: no errors, no warnings', (_name, event) => {
    const o: O = toOcsf(event);
    const r = schema.validate(JSON.parse(JSON.stringify(o)));
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(o.metadata).toMatchObject({ version: '1.8.0', uid: event.id, original_event_uid: event.id });
    expect(o.device.uid).toBe(event.device_id);
  });

  test('odd shapes degrade without throwing and still name a class', () => {
    for (const x of [{}, { type: 'process.blocked', argv: 'x', outcome: 5 }, { type: 'zzz', time: 'bad' }]) {
      const o = toOcsf(x);
      expect(typeof o.class_uid).toBe('number');
      expect(schema.validate(o).errors.map((e) => e.code)).not.toContain('class_uid_unknown');
    }
  });
});

describe('OCSF mapping: classes, activities, outcomes', () => {
  test('the documented table agrees with toOcsf for every row, and covers every event type once', () => {
    const covered = OCSF_MAPPING.flatMap((m) => m.types);
    expect(new Set(covered).size).toBe(covered.length);
    for (const t of EVENT_TYPES) expect(covered, t).toContain(t);
    for (const m of OCSF_MAPPING)
      for (const t of m.types) {
        const o = toOcsf(eventOf(t));
        expect(o.class_uid, t).toBe(m.class_uid);
        expect(o.class_name, t).toBe(m.class_name);
        if (o.activity_id === 99) expect(m.activity, t).toContain(`Other (99): ${o.activity_name as string}`);
        else expect(m.activity, t).toContain(`${o.activity_name as string} (${String(o.activity_id)})`);
      }
  });

  test('docs/collector.md shows the mapping table as the code has it', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'collector.md'), 'utf8');
    expect(doc).toContain(ocsfMappingTable().join('\n'));
  });

  test('a blocked process is Process Remediation Activity (7003) Evict: killed, blocked, with the process details', () => {
    const e = sampleEvent('process.blocked');
    const o = toOcsf(e);
    expect(o).toMatchObject({
      class_uid: 7003,
      category_uid: 7,
      activity_id: 2,
      activity_name: 'Evict',
      type_uid: 700302,
      action_id: 2,
      disposition_id: 2,
      disposition: 'Blocked',
      status_id: 1,
      command_uid: e.id,
      time: Date.parse('2026-11-24T10:00:00.000Z'),
      metadata: { uid: e.id, event_code: 'process.blocked', profiles: ['host', 'security_control'] },
      device: { uid: 'dev-1', hostname: 'laptop-7' },
      policy: { uid: 'claude-code', name: 'Claude Code', version: '12' },
    });
    expect(o.process).toMatchObject({
      pid: 4242,
      uid: '4242:123456',
      name: 'claude',
      parent_process: { pid: 4000 },
      user: { uid: '1000', name: 'alice' },
      session: { terminal: '/dev/pts/3' },
      cmd_line: 'node /home/alice/.npm-global/bin/claude --api-key [REDACTED]',
      file: { path: e.exe, name: 'cli.js', hashes: [{ algorithm_id: 3, value: 'a'.repeat(64) }] },
    });
    expect(o.unmapped).toMatchObject({ toolguard: { killed_count: 2, since_exec_ms: 1.27 } });
    expect(o.observables).toContainEqual({
      name: 'process.file.hashes.value',
      type_id: 8,
      type: 'Hash',
      value: 'a'.repeat(64),
    });
  });

  test('a failed or skipped kill is not reported as blocked', () => {
    expect(toOcsf(variants['process.blocked failed']!)).toMatchObject({
      class_uid: 7003,
      status_id: 2,
      status_detail: 'kill_failed',
      action_id: 3,
      disposition_id: 27,
      severity_id: 4,
    });
    expect(toOcsf(variants['process.blocked skipped (exited)']!)).toMatchObject({
      status_id: 3,
      disposition_id: 16,
    });
    expect(toOcsf(variants['process.blocked skipped (protected)']!)).toMatchObject({ status_id: 5 });
  });

  test('a denied exec is Process Activity Launch that failed: Denied / Blocked', () => {
    expect(toOcsf(sampleEvent('process.denied'))).toMatchObject({
      class_uid: 1007,
      activity_id: 1,
      action_id: 2,
      disposition_id: 2,
      status_id: 2,
      metadata: { event_code: 'process.denied' },
    });
  });

  test('a refused open of a marked package file is Denied / Blocked, and the launch itself went ahead', () => {
    expect(toOcsf(variants['process.denied open of a marked file']!)).toMatchObject({
      class_uid: 1007,
      activity_id: 1,
      action_id: 2,
      disposition_id: 2,
      status_id: 1,
      unmapped: { toolguard: { refused: 'open', action_taken: 'denied' } },
    });
  });

  test("a folded burst of identical refusals carries OCSF's aggregation count", () => {
    expect(toOcsf(variants['process.denied folded burst']!)).toMatchObject({ class_uid: 1007, count: 40 });
    expect(toOcsf(sampleEvent('process.denied'))).not.toHaveProperty('count');
  });

  test('warned is Allowed / Alert (also would-block in monitor mode), audited is Observed / Logged', () => {
    expect(toOcsf(sampleEvent('process.warned'))).toMatchObject({
      class_uid: 1007,
      action_id: 1,
      disposition_id: 19,
    });
    expect(toOcsf(variants['process.warned monitor (would_block)']!)).toMatchObject({
      action_id: 1,
      disposition_id: 19,
      unmapped: { toolguard: { mode: 'monitor', action_taken: 'would_block' } },
    });
    expect(toOcsf(sampleEvent('process.audited'))).toMatchObject({ action_id: 3, disposition_id: 17 });
  });

  test('quarantine is File Remediation Activity (7002) Isolate, keyed by the quarantine id', () => {
    const o = toOcsf(sampleEvent('package.quarantined'));
    expect(o).toMatchObject({
      class_uid: 7002,
      activity_id: 1,
      activity_name: 'Isolate',
      command_uid: 'q-1',
      status_id: 1,
      disposition_id: 3,
      file: {
        path: '/home/alice/.npm-global/lib/node_modules/@anthropic-ai/claude-code',
        name: 'claude-code',
        type_id: 2,
      },
      unmapped: { toolguard: { package: { name: '@anthropic-ai/claude-code', version: '1.0.0' } } },
    });
    expect(toOcsf(sampleEvent('path.quarantined'))).toMatchObject({ class_uid: 7002, command_uid: 'q-2' });
    expect(toOcsf(variants['package.quarantined failed']!)).toMatchObject({
      status_id: 2,
      disposition_id: 27,
    });
  });

  test('an install the package manager reverted is blocked, not isolated: Denied / Blocked; logged in monitor mode', () => {
    expect(toOcsf(variants['package.quarantined install_reverted']!)).toMatchObject({
      class_uid: 7002,
      action_id: 2,
      disposition_id: 2,
      status_id: 1,
    });
    expect(toOcsf(variants['package.warned install_reverted (monitor)']!)).toMatchObject({
      class_uid: 5020,
      action_id: 3,
      disposition_id: 17,
    });
  });

  test('an installed package is Software Inventory Info with its package; a missing version is "unknown"', () => {
    expect(toOcsf(sampleEvent('package.warned'))).toMatchObject({
      class_uid: 5020,
      sbom: {
        package: {
          name: '@anthropic-ai/claude-code',
          version: '1.0.0',
          purl: 'pkg:npm/%40anthropic-ai/claude-code@1.0.0',
          package_manager: 'npm',
        },
      },
    });
    const o: O = toOcsf(variants['package.warned without version']!);
    expect(o.sbom.package.version).toBe('unknown');
    expect(o.sbom.package.purl).toBeUndefined();
  });

  test('policy.uid is always a rule id: policy events describe the ban list without one', () => {
    for (const [name, e] of all) {
      const p = toOcsf(e).policy as O | undefined;
      if (p?.uid !== undefined) expect(p.uid, name).toBe(e.rule.id);
    }
    expect(toOcsf(sampleEvent('policy.rejected'))).toMatchObject({
      class_uid: 5019,
      status_id: 2,
      status_code: 'GUARD_POLICY_ROLLBACK',
      policy: { version: '10', is_applied: false, data: { sha256: 'c'.repeat(64) } },
    });
    expect(toOcsf(sampleEvent('policy.stale'))).toMatchObject({ status_id: 99, status: 'Stale' });
  });

  test('events.dropped is Event Log Activity "Drop" over the dropped period; the count is not OCSF count', () => {
    const o = toOcsf(sampleEvent('events.dropped'));
    expect(o).toMatchObject({
      class_uid: 1008,
      activity_id: 99,
      activity_name: 'Drop',
      start_time: Date.parse('2026-11-24T09:00:00.000Z'),
      end_time: Date.parse('2026-11-24T09:01:00.000Z'),
      unmapped: { toolguard: { dropped_count: 3, first_seq: 5, last_seq: 7 } },
    });
    expect(o.count).toBeUndefined();
  });

  test('unmapped keeps only what OCSF has no home for: never the original event, and small', () => {
    for (const [name, e] of all) {
      const u = (toOcsf(e).unmapped as O | undefined)?.toolguard as O | undefined;
      if (!u) continue;
      for (const k of ['id', 'argv', 'exe', 'hostname', 'device_id', 'rule', 'outcome'])
        expect(Object.keys(u), `${name}: ${k}`).not.toContain(k);
      expect(JSON.stringify(u).length, name).toBeLessThan(1024);
    }
  });
});

describe('the validator rejects seeded defects (so a passing run means something)', () => {
  const good = (): O => JSON.parse(JSON.stringify(toOcsf(sampleEvent('process.blocked'))));
  const codes = (o: O) => schema.validate(o).errors.map((e) => `${e.code} ${e.path}`);

  test('the unseeded event is clean', () => {
    expect(codes(good())).toEqual([]);
  });

  test('an attribute the class does not define', () => {
    const o = good();
    o.process.tty = '/dev/pts/3';
    expect(codes(o)).toEqual(['attribute_unknown process.tty']);
    const p = good();
    p.package = { name: 'x', version: '1' };
    expect(codes(p)).toEqual(['attribute_unknown package']);
  });

  test('a profile attribute without the profile declared in metadata.profiles', () => {
    const o = good();
    o.metadata.profiles = ['host'];
    expect(codes(o).sort()).toEqual(
      [
        'attribute_unknown action',
        'attribute_unknown action_id',
        'attribute_unknown disposition',
        'attribute_unknown disposition_id',
        'attribute_unknown is_alert',
        'attribute_unknown policy',
      ].sort(),
    );
    // in a remediation class device comes from the host profile too; in Process Activity it is core
    const d = good();
    d.metadata.profiles = ['security_control'];
    expect(codes(d)).toEqual([
      'attribute_unknown device',
      'observable_name_invalid_reference observables[0].name', // device.hostname
    ]);
    const launch = JSON.parse(JSON.stringify(toOcsf(sampleEvent('process.warned'))));
    expect(launch.metadata.profiles).toEqual(['security_control']);
    expect(codes(launch)).toEqual([]);
    const unknown = good();
    unknown.metadata.profiles.push('made_up');
    expect(codes(unknown)).toEqual(['profile_unknown metadata.profiles[2]']);
  });

  test('a missing required attribute, also nested and when null', () => {
    const o = good();
    delete o.process.file.name;
    o.command_uid = null;
    expect(codes(o).sort()).toEqual([
      'attribute_required_missing command_uid',
      'attribute_required_missing process.file.name',
    ]);
    const m = good();
    delete m.metadata.version;
    expect(codes(m)).toEqual(['attribute_required_missing metadata.version']);
  });

  test('a bad enum value, and activity 99 (Other) without its name', () => {
    const o = good();
    o.disposition_id = 42;
    expect(codes(o)).toEqual(['attribute_enum_value_unknown disposition_id']);
    const a = good();
    a.activity_id = 7; // Process Remediation knows 0-5 and 99
    a.type_uid = 700307;
    delete a.activity_name;
    expect(codes(a)).toEqual([
      'attribute_enum_value_unknown activity_id',
      'attribute_enum_value_unknown type_uid',
    ]);
    const other = good();
    other.activity_id = 99;
    other.type_uid = 700399;
    delete other.activity_name;
    expect(codes(other)).toEqual(['attribute_enum_sibling_missing_for_other activity_name']);
    const wrongName = good();
    wrongName.disposition = 'Quarantined';
    expect(schema.validate(wrongName).warnings.map((w) => w.code)).toEqual([
      'attribute_enum_sibling_incorrect',
    ]);
  });

  test('a string longer than its type allows (1.8.0 sets max_len on ip_t, mac_t, subnet_t)', () => {
    const o = good();
    o.device.mac = '00:11:22:33:44:55'.repeat(2);
    o.device.ip = `10.0.0.1${' '.repeat(40)}`;
    expect(codes(o)).toEqual([
      'attribute_value_exceeds_max_len device.ip',
      'attribute_value_exceeds_max_len device.mac',
    ]);
  });

  test('wrong types, integer range, type_uid, class, constraints, observables', () => {
    const o = good();
    o.process.pid = '4242';
    o.severity_id = 2.5;
    o.time = 1.5;
    o.is_alert = 'yes';
    expect(codes(o).sort()).toEqual(
      [
        'attribute_wrong_type is_alert',
        'attribute_wrong_type process.pid',
        'attribute_wrong_type severity_id',
        'attribute_enum_value_unknown severity_id',
        'attribute_wrong_type time',
      ].sort(),
    );
    const t = good();
    t.type_uid = 100701;
    expect(codes(t)).toEqual(['attribute_enum_value_unknown type_uid', 'type_uid_incorrect type_uid']);
    expect(codes({ ...good(), class_uid: 9999 })).toEqual(['class_uid_unknown class_uid']);
    expect(codes({ ...good(), category_uid: 1 })).toEqual(['attribute_enum_value_unknown category_uid']);
    const c = good();
    c.process = { file: c.process.file };
    expect(codes(c)).toContain('constraint_failed process');
    const obs = good();
    obs.observables.push({ name: 'process.tty', type_id: 99, type: 'tty', value: 'x' });
    obs.observables[0].value = 'other-host';
    obs.observables[1].type_id = 1;
    expect(codes(obs)).toEqual([
      'observable_value_mismatch observables[0].value',
      'observable_type_id_mismatch observables[1].type_id',
      `observable_name_invalid_reference observables[${String(obs.observables.length - 1)}].name`,
    ]);
  });

  test('unmapped is open-ended; a version newer than the schema is refused', () => {
    const o = good();
    o.unmapped = { anything: { nested: [1, 'x'] } };
    expect(codes(o)).toEqual([]);
    o.metadata.version = '1.9.0';
    expect(codes(o)).toEqual(['version_incompatible metadata.version']);
    o.metadata.version = '1.3.0';
    expect(schema.validate(o).warnings.map((w) => w.code)).toEqual(['version_incorrect']);
  });
});
