/**
 * The ECS mapping against the field definitions of the `@elastic/ecs` package: every event type
 * and edge variant maps to fields ECS defines, with values of their types and allowed values;
 * the validator itself catches seeded defects; each type lands where the docs table says; every
 * format carries the same event id.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { fitLine } from '../../src/collector/forwarders/line-fit.js';
import { NDJSON_MAX_LINE_BYTES } from '../../src/collector/forwarders/ndjson-file-sink.js';
import { ECS_MAPPING, ECS_VERSION, ecsMappingTable, toEcs } from '../../src/events/ecs.js';
import { EVENT_TYPES } from '../../src/events/event-types.js';
import { toOcsf } from '../../src/events/ocsf.js';
import { ecsVersion, validateEcs } from '../helpers/ecs-validator.js';
import { sampleEvent, sampleVariants } from './samples.js';

// biome-ignore lint/suspicious/noExplicitAny: ECS documents are deep untyped JSON the tests read by path
type O = Record<string, any>;

const all: [string, O][] = [
  ...EVENT_TYPES.map((t): [string, O] => [t, sampleEvent(t)]),
  ...Object.entries(sampleVariants()),
];

describe('ECS output validates against the @elastic/ecs field definitions', () => {
  test('the mapping claims the release the package describes', () => {
    expect(ECS_VERSION).toBe(ecsVersion);
  });

  test.each(all)('%s: only ECS fields, right types, allowed values', (_name, event) => {
    const doc: O = toEcs(event);
    expect(validateEcs(JSON.parse(JSON.stringify(doc)))).toEqual([]);
    expect(doc.event.id).toBe(event.id);
    expect(doc.host.id).toBe(event.device_id);
    expect(doc['@timestamp']).toBe(event.time);
  });

  test('a long command line cut to the line limit still validates, and says it was cut', () => {
    const long = sampleVariants()['process.warned long command line'] as O;
    const doc = toEcs(long);
    expect(JSON.stringify(doc).length).toBeGreaterThan(NDJSON_MAX_LINE_BYTES);
    const line = fitLine(doc, NDJSON_MAX_LINE_BYTES);
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(NDJSON_MAX_LINE_BYTES);
    const cut = JSON.parse(line) as O;
    expect(validateEcs(cut)).toEqual([]);
    expect(cut.process.args_count).toBe(long.argv.length);
    expect(cut.process.args.at(-1)).toMatch(/^\[\+\d+ more arguments\]$/);
    expect(cut.process.command_line).toBe(cut.process.args.join(' '));
    expect(cut.toolguard.untruncated_size).toBe(Buffer.byteLength(JSON.stringify(doc)));
    // deterministic: a re-sent copy is the same line
    expect(fitLine(toEcs(long), NDJSON_MAX_LINE_BYTES)).toBe(line);
  });

  test('odd shapes degrade without throwing and still validate', () => {
    for (const x of [{}, { type: 'process.blocked', argv: 'x', outcome: 5 }, { type: 'zzz', time: 'bad' }])
      expect(validateEcs(toEcs(x))).toEqual([]);
  });
});

describe('the ECS validator catches defects (seeded)', () => {
  const good = (): O => toEcs(sampleEvent('process.blocked'));
  const codes = (doc: O): string[] => validateEcs(doc).map((i) => `${i.code} ${i.field}`);

  test('an unknown field', () => {
    const doc = good();
    doc.process.cmdline = 'x';
    doc.verdict = 'blocked';
    expect(codes(doc)).toEqual(['unknown_field process.cmdline', 'unknown_field verdict']);
  });

  test('a value outside the allowed ones (kind, category, type, outcome)', () => {
    const doc = good();
    doc.event.kind = 'detection';
    doc.event.category = ['process', 'intrusion_detection', 'endpoint'];
    doc.event.outcome = 'blocked';
    expect(codes(doc)).toEqual([
      'value_not_allowed event.kind',
      'value_not_allowed event.category',
      'value_not_allowed event.outcome',
    ]);
  });

  test('an event.type no category of the event expects', () => {
    const doc = good();
    doc.event.category = ['process'];
    doc.event.type = ['end', 'denied'];
    expect(codes(doc)).toEqual(['type_not_expected_for_category event.type']);
  });

  test('wrong types: a number as keyword, a string as long, a bad date, a scalar for an array field', () => {
    const doc = good();
    doc.user.id = 1000;
    doc.process.pid = '4242';
    doc['@timestamp'] = '24 Nov 2026';
    doc.event.type = 'end';
    doc.process.name = ['claude'];
    expect(codes(doc).sort()).toEqual(
      [
        'wrong_type user.id',
        'wrong_type process.pid',
        'wrong_type @timestamp',
        'array_expected event.type',
        'not_array_field process.name',
      ].sort(),
    );
  });

  test('a missing required field', () => {
    const doc = good();
    delete doc.ecs;
    expect(codes(doc)).toEqual(['missing_required ecs.version']);
  });
});

describe('ECS mapping: kinds, categories, types', () => {
  test('the documented table agrees with toEcs for every row, and covers every event type once', () => {
    const covered = ECS_MAPPING.flatMap((m) => m.types);
    expect(new Set(covered).size).toBe(covered.length);
    for (const t of EVENT_TYPES) expect(covered, t).toContain(t);
    for (const m of ECS_MAPPING)
      for (const t of m.types) {
        const doc = toEcs(sampleEvent(t as (typeof EVENT_TYPES)[number])) as O;
        expect(doc.event.kind, t).toBe(m.kind);
        expect(doc.event.category, t).toEqual(m.category);
        if (t !== 'agent.stopped') expect(doc.event.type, t).toEqual(m.type);
      }
    expect(toEcs(sampleEvent('agent.stopped')).event).toMatchObject({ type: ['end'] });
  });

  test('docs/collector.md shows the mapping table as the code has it', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'collector.md'), 'utf8');
    expect(doc).toContain(ecsMappingTable().join('\n'));
  });

  test('a kill: alert, process ended and denied, success, with the process and the rule', () => {
    const e = sampleEvent('process.blocked');
    expect(toEcs(e)).toMatchObject({
      event: {
        kind: 'alert',
        category: ['process', 'intrusion_detection'],
        type: ['end', 'denied'],
        outcome: 'success',
        action: 'process.blocked',
      },
      process: {
        pid: 4242,
        name: 'claude',
        executable: e.exe,
        args: e.argv,
        args_count: 4,
        command_line: (e.argv as string[]).join(' '),
        parent: { pid: 4000 },
        hash: { sha256: 'a'.repeat(64) },
        user: { id: '1000', name: 'alice' },
        interactive: true,
      },
      rule: { id: 'claude-code', name: 'Claude Code', version: '12' },
      toolguard: { mode: 'enforce', action_taken: 'killed', killed_pids: [4242, 4243], since_exec_ms: 1.27 },
    });
  });

  test('a denied exec and a refused open of a marked package file say which in toolguard.refused', () => {
    expect(toEcs(sampleEvent('process.denied')).toolguard).toMatchObject({ refused: 'exec' });
    const open = toEcs(sampleVariants()['process.denied open of a marked file'] as O);
    expect(open.toolguard).toMatchObject({ refused: 'open', action_taken: 'denied' });
    expect(open.event).toMatchObject({ action: 'process.denied', outcome: 'success' });
  });

  test('a folded burst of identical refusals says how many it stands for in toolguard.repeats', () => {
    expect(toEcs(sampleVariants()['process.denied folded burst'] as O).toolguard).toMatchObject({
      repeats: 40,
    });
    expect(toEcs(sampleEvent('process.denied')).toolguard).not.toHaveProperty('repeats');
  });

  test('a kill that failed or was skipped is no longer an ended process: info, failure/unknown', () => {
    const v = sampleVariants();
    expect(toEcs(v['process.blocked failed'] as O).event).toMatchObject({
      type: ['info'],
      outcome: 'failure',
    });
    expect(toEcs(v['process.blocked skipped (exited)'] as O).event).toMatchObject({
      type: ['info'],
      outcome: 'unknown',
    });
  });

  test('a quarantined package: package and its directory, deletion denied; a rejected policy: failure with the code', () => {
    expect(toEcs(sampleEvent('package.quarantined'))).toMatchObject({
      event: { kind: 'alert', type: ['deletion', 'denied'], outcome: 'success' },
      package: { name: '@anthropic-ai/claude-code', version: '1.0.0', type: 'npm' },
      file: { type: 'dir', name: 'claude-code', owner: 'alice', uid: '1000' },
    });
    expect(toEcs(sampleEvent('policy.rejected'))).toMatchObject({
      event: { category: ['configuration'], outcome: 'failure' },
      error: { code: 'GUARD_POLICY_ROLLBACK' },
    });
  });

  test('agent.started: host.os from the platform (ECS os types), guardd as the process', () => {
    const v = sampleVariants();
    expect(toEcs(sampleEvent('agent.started'))).toMatchObject({
      host: { os: { type: 'linux', platform: 'linux', kernel: '6.8.0' } },
      process: { pid: 99, name: 'guardd' },
      event: { type: ['start'], outcome: 'success' },
    });
    expect((toEcs(v['agent.started darwin, recovered store'] as O) as O).host.os.type).toBe('macos');
    expect((toEcs(v['agent.started unknown platform, no recovery'] as O) as O).host.os).toEqual({
      platform: 'aix',
      type: 'unix',
      kernel: '6.8.0',
    });
  });

  test('every format carries the same event id (the de-duplication key with the device)', () => {
    for (const [, e] of all) {
      expect(toEcs(e).event).toMatchObject({ id: e.id });
      expect(toOcsf(e).metadata).toMatchObject({ uid: e.id });
    }
  });
});
