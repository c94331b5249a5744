/**
 * Lines a log shipper accepts: an event longer than the NDJSON line limit has its command line cut
 * (raw: argv summarised, still a valid event v1; OCSF: cmd_line cut and marked truncated, still
 * valid OCSF 1.8.0), deterministically; shorter events are written byte for byte.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StoredEventRow } from '../../src/collector/collector-store.js';
import { fitLine } from '../../src/collector/forwarders/line-fit.js';
import { NDJSON_MAX_LINE_BYTES, NdjsonFileSink } from '../../src/collector/forwarders/ndjson-file-sink.js';
import { toEcs } from '../../src/events/ecs.js';
import { validateEvent } from '../../src/events/event-schema.js';
import { toOcsf } from '../../src/events/ocsf.js';
import { sampleEvent } from '../events/samples.js';
import { collectorTempDir } from '../helpers/collector.js';
import { ocsf180 } from '../helpers/ocsf-validator.js';

/** A process.blocked event as large as the agent lets one get: 255 arguments of 1 KiB (~256 KiB). */
function longEvent(char = 'x'): Record<string, unknown> {
  return {
    ...sampleEvent('process.blocked'),
    argv: ['node', ...Array.from({ length: 255 }, (_, i) => `--a${i}=${char.repeat(1000)}`)],
  };
}

describe('fitLine', () => {
  it('leaves a line within the limit as JSON.stringify writes it', () => {
    const e = sampleEvent('process.blocked');
    expect(fitLine(e, NDJSON_MAX_LINE_BYTES)).toBe(JSON.stringify(e));
  });

  it('raw: cuts argv from the end with the agent’s summary; the event stays valid', () => {
    const e = longEvent();
    const line = fitLine(e, NDJSON_MAX_LINE_BYTES);
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(NDJSON_MAX_LINE_BYTES);
    const out = JSON.parse(line) as { argv: string[] };
    const kept = out.argv.length - 1;
    expect(out.argv.slice(0, kept)).toEqual((e.argv as string[]).slice(0, kept));
    expect(out.argv[kept]).toBe(`[+${256 - kept} more arguments]`);
    expect(validateEvent(out)).toEqual({ ok: true });
    expect(fitLine(e, NDJSON_MAX_LINE_BYTES)).toBe(line); // deterministic: a re-sent copy is identical
  });

  it('raw: an argv already summarised by the agent is summed up, not counted as one', () => {
    const e = longEvent();
    (e.argv as string[]).push('[+40 more arguments]');
    const out = JSON.parse(fitLine(e, NDJSON_MAX_LINE_BYTES)) as { argv: string[] };
    const kept = out.argv.length - 1;
    expect(out.argv[kept]).toBe(`[+${256 - kept + 40} more arguments]`);
  });

  it.each([
    ['ASCII', 'x'],
    ['multi-byte', 'ä'],
    ['JSON-escaped', '"'],
    ['astral (surrogate pairs)', '😀'],
  ])('OCSF (%s): cmd_line and its observable cut, marked truncated, still valid OCSF 1.8.0', (_n, char) => {
    const o = toOcsf(longEvent(char));
    const full = JSON.stringify(o);
    const line = fitLine(o, NDJSON_MAX_LINE_BYTES);
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(NDJSON_MAX_LINE_BYTES);
    const out = JSON.parse(line) as {
      metadata: { is_truncated: boolean; untruncated_size: number };
      process: { cmd_line: string };
      observables: { name: string; value: string }[];
    };
    expect(out.metadata).toMatchObject({ is_truncated: true, untruncated_size: Buffer.byteLength(full) });
    expect(out.process.cmd_line).toMatch(/^node --a0=.* \[\+\d+ bytes cut\]$/);
    expect(out.process.cmd_line).not.toContain('\uFFFD'); // cut on a character boundary
    expect(Buffer.byteLength(line)).toBeGreaterThan(NDJSON_MAX_LINE_BYTES - 1024); // cut no more than needed
    expect(out.observables.find((x) => x.name === 'process.cmd_line')?.value).toBe(out.process.cmd_line);
    const r = ocsf180().validate(out);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
  });
});

describe('fitLine: events long in other fields than the command line', () => {
  // Text fields may hold thousands of control characters, which JSON writes 6 bytes each.
  const ctl = '\u0001'.repeat(8000);
  const wide = (): Record<string, unknown> => {
    const e = sampleEvent('process.blocked') as unknown as Record<string, unknown> & {
      outcome: Record<string, unknown>;
    };
    return { ...e, exe: `/tmp/${ctl}`, name: ctl, outcome: { ...e.outcome, error: ctl } };
  };

  it.each([
    ['raw', (e: Record<string, unknown>) => e],
    ['ocsf', (e: Record<string, unknown>) => toOcsf(e)],
    ['ecs', (e: Record<string, unknown>) => toEcs(e)],
  ])(
    '%s: the longest strings are cut, with a note, until the line fits; same id, same line every time',
    (_f, map) => {
      const e = wide();
      const doc = map(e) as Record<string, unknown>;
      expect(Buffer.byteLength(JSON.stringify(doc))).toBeGreaterThan(NDJSON_MAX_LINE_BYTES);
      const line = fitLine(doc, NDJSON_MAX_LINE_BYTES);
      expect(Buffer.byteLength(line)).toBeLessThanOrEqual(NDJSON_MAX_LINE_BYTES);
      expect(line).toMatch(/ \[…\d+ bytes cut\]/);
      expect(JSON.stringify(JSON.parse(line))).toBe(line);
      expect(line).toContain(e.id as string);
      expect(fitLine(map(wide()), NDJSON_MAX_LINE_BYTES)).toBe(line);
    },
  );

  it('a line that cannot be cut to fit (thousands of short elements) becomes a stub with the id', () => {
    const e = { ...sampleEvent('process.blocked'), pids: Array.from({ length: 20_000 }, (_, i) => i) };
    const line = fitLine(e, NDJSON_MAX_LINE_BYTES);
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(NDJSON_MAX_LINE_BYTES);
    expect(JSON.parse(line)).toEqual({
      oversize: true,
      id: e.id,
      type: 'process.blocked',
      device_id: e.device_id,
      time: e.time,
      untruncated_size: Buffer.byteLength(JSON.stringify(e)),
    });
  });
});

describe('NDJSON sink line limit', () => {
  it('writes every line within NDJSON_MAX_LINE_BYTES, short events byte for byte', async () => {
    const file = join(collectorTempDir('tg-ndj-fit-'), 'events.ndjson');
    const short = sampleEvent('process.warned');
    const rows = [short, longEvent()].map((e) => ({ body: JSON.stringify(e) }) as unknown as StoredEventRow);
    for (const transform of [undefined, toOcsf]) {
      const sink = new NdjsonFileSink({ file, maxBytes: 1024 * 1024 * 1024, keep: 1, transform });
      await sink.deliver(rows);
      await sink.close();
    }
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    expect(lines).toHaveLength(4);
    for (const l of lines) expect(Buffer.byteLength(l)).toBeLessThanOrEqual(NDJSON_MAX_LINE_BYTES);
    expect(lines[0]).toBe(JSON.stringify(short));
    expect(JSON.parse(lines[3] as string).metadata.is_truncated).toBe(true);
  });
});
