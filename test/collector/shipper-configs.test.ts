/**
 * The log-shipper configs in docs/shippers/ (Vector, Fluent Bit, Filebeat) against the NDJSON
 * sink's real output. The shippers themselves cannot be installed here (not in Debian 12, not on
 * npm), so what each config assumes is checked instead: the longest line it accepts is at least
 * the longest line the sink writes, its time format parses the sink's real timestamps to the same
 * instant, its path pattern matches the live file and the rotation names the sink produces, and it
 * persists its read offsets.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { StoredEventRow } from '../../src/collector/collector-store.js';
import { NDJSON_MAX_LINE_BYTES, NdjsonFileSink } from '../../src/collector/forwarders/ndjson-file-sink.js';
import { EVENT_TYPES } from '../../src/events/event-types.js';
import { sampleEvent, sampleVariants } from '../events/samples.js';
import { collectorTempDir } from '../helpers/collector.js';

const SHIPPERS = join(import.meta.dirname, '..', '..', 'docs', 'shippers');
/** The path the configs are written for (docs/collector.md uses it too). */
const DOC_DIR = '/var/log/toolguard';
const read = (f: string): string => readFileSync(join(SHIPPERS, f), 'utf8');

/** `64k` / `1M` / `131072` (Fluent Bit size units) in bytes. */
function sizeBytes(v: string): number {
  const m = /^(\d+)\s*([kKmM]?)$/.exec(v.trim());
  if (!m) throw new Error(`not a size: ${v}`);
  const unit = (m[2] ?? '').toLowerCase();
  return Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 * 1024 : 1);
}

/** The value of `key` in a Fluent Bit classic config section (`Key value` lines). */
function fluentValue(conf: string, section: string, key: string): string | undefined {
  const body = conf.split(/^\[/m).find((s) => s.startsWith(`${section}]`)) ?? '';
  const line = body.split('\n').find((l) => new RegExp(`^\\s*${key.replace('.', '\\.')}\\s+`, 'i').test(l));
  return line?.trim().split(/\s+/).slice(1).join(' ');
}

type Part = 'Y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'f';
interface TimeParser {
  readonly re: RegExp;
  readonly parts: Part[];
}

/** A strftime format as chrono (Vector) and Fluent Bit read it: %Y %m %d %H %M %S, %.3f / %.f / %L fractions, other text literal. */
function strftime(format: string): TimeParser {
  const parts: Part[] = [];
  let re = '';
  for (let i = 0; i < format.length; ) {
    const rest = format.slice(i);
    const tok = /^(%Y|%m|%d|%H|%M|%S|%\.3f|%\.f|%L)/.exec(rest)?.[1];
    if (tok) {
      if (tok === '%Y') re += '(\\d{4})';
      else if (tok === '%.3f') re += '\\.(\\d{3})';
      else if (tok === '%.f') re += '\\.(\\d+)';
      else if (tok === '%L') re += '(\\d+)';
      else re += '(\\d{2})';
      parts.push(tok.startsWith('%.') || tok === '%L' ? 'f' : (tok[1] as Part));
      i += tok.length;
    } else {
      if (rest[0] === '%') throw new Error(`specifier not understood by this test: ${rest.slice(0, 3)}`);
      re += (rest[0] as string).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      i++;
    }
  }
  return { re: new RegExp(`^${re}$`), parts };
}

/** A Go time layout as Filebeat reads it: 2006 01 02 15 04 05 and .000, other text literal (a lone Z is a literal). */
function goLayout(layout: string): TimeParser {
  const tokens: [string, Part, string][] = [
    ['2006', 'Y', '(\\d{4})'],
    ['.000', 'f', '\\.(\\d{3})'],
    ['01', 'm', '(\\d{2})'],
    ['02', 'd', '(\\d{2})'],
    ['15', 'H', '(\\d{2})'],
    ['04', 'M', '(\\d{2})'],
    ['05', 'S', '(\\d{2})'],
  ];
  const parts: Part[] = [];
  let re = '';
  for (let i = 0; i < layout.length; ) {
    const t = tokens.find(([tok]) => layout.startsWith(tok, i));
    if (t) {
      re += t[2];
      parts.push(t[1]);
      i += t[0].length;
    } else {
      if (/^Z0|^-07|^MST/.test(layout.slice(i)))
        throw new Error('zone layouts are not understood by this test');
      re += (layout[i] as string).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      i++;
    }
  }
  return { re: new RegExp(`^${re}$`), parts };
}

/** Epoch ms of `value` read with `p` as UTC (every config parses our times as UTC), or undefined when it does not match. */
function parseWith(p: TimeParser, value: string): number | undefined {
  const m = p.re.exec(value);
  if (!m) return undefined;
  const v: Partial<Record<Part, string>> = {};
  p.parts.forEach((part, i) => {
    v[part] = m[i + 1];
  });
  const ms = v.f ? Math.round(Number(`0.${v.f}`) * 1000) : 0;
  return Date.UTC(Number(v.Y), Number(v.m) - 1, Number(v.d), Number(v.H), Number(v.M), Number(v.S), ms);
}

/** A shell glob (`*` within one path segment) as a RegExp. */
function glob(pattern: string): RegExp {
  return new RegExp(
    `^${pattern
      .split('*')
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('[^/]*')}$`,
  );
}

describe('log-shipper configs (docs/shippers) fit the NDJSON sink output', () => {
  const dir = collectorTempDir('tg-ship-');
  const live = join(dir, 'events.ndjson');
  let files: string[] = [];
  let lines: string[] = [];

  beforeAll(async () => {
    // every event type, its edge variants, and the long command line (cut to the 64 KiB limit) a
    // few times so the sink rotates
    const variants = Object.values(sampleVariants());
    const long = sampleVariants()['process.warned long command line'] as Record<string, unknown>;
    const events = [
      ...EVENT_TYPES.map((t) => sampleEvent(t)),
      ...variants,
      ...[1, 2, 3, 4, 5].map((i) => ({
        ...long,
        id: `0192f5e0-0000-7000-8000-${String(900 + i).padStart(12, '0')}`,
      })),
    ];
    const sink = new NdjsonFileSink({ file: live, maxBytes: 150 * 1024, keep: 10 });
    const rows = events.map(
      (e, i) =>
        ({
          rid: i + 1,
          device_id: 'dev-1',
          enrollment: 1,
          received_at: '',
          body: JSON.stringify(e),
        }) as StoredEventRow,
    );
    for (let i = 0; i < rows.length; i += 7) await sink.deliver(rows.slice(i, i + 7));
    await sink.close();
    files = readdirSync(dir).map((f) => join(dir, f));
    lines = files.flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean));
    expect(lines.length).toBe(events.length);
  });

  it('the sink output under test: lines up to the 64 KiB limit, and rotated files', () => {
    const longest = Math.max(...lines.map((l) => Buffer.byteLength(l)));
    expect(longest).toBeGreaterThan(60 * 1024);
    expect(longest).toBeLessThanOrEqual(NDJSON_MAX_LINE_BYTES);
    expect(existsSync(`${live}.2`)).toBe(true);
  });

  it('Vector: max_line_bytes, time format, include pattern, data_dir', () => {
    const conf = read('vector.toml');
    const maxLine = Number(/^max_line_bytes\s*=\s*(\d+)/m.exec(conf)?.[1]);
    // Vector counts the line without its newline
    expect(maxLine).toBeGreaterThanOrEqual(NDJSON_MAX_LINE_BYTES);
    const include = [...(/^include\s*=\s*\[(.*)\]/m.exec(conf)?.[1] ?? '').matchAll(/"([^"]+)"/g)].map(
      (m) => m[1] as string,
    );
    expect(include.length).toBeGreaterThan(0);
    for (const f of files)
      expect(
        include.some((p) => glob(p.replace(DOC_DIR, dir)).test(f)),
        f,
      ).toBe(true);
    expect(conf).toMatch(/^data_dir\s*=\s*"\/var\/lib\/vector"/m);
    const format = /parse_timestamp\(\.time, format: "([^"]+)", timezone: "UTC"\)/.exec(conf)?.[1];
    expect(format).toBeDefined();
    const p = strftime(format as string);
    for (const l of lines) {
      const t = (JSON.parse(l) as { time: string }).time;
      expect(parseWith(p, t), t).toBe(Date.parse(t));
    }
  });

  it('Fluent Bit: Buffer_Max_Size, Skip_Long_Lines, parser time format, Path, DB', () => {
    const conf = read('fluent-bit.conf');
    const parsers = read('parsers-toolguard.conf');
    // Fluent Bit needs the whole line and its newline in the buffer
    expect(sizeBytes(fluentValue(conf, 'INPUT', 'Buffer_Max_Size') ?? '0')).toBeGreaterThanOrEqual(
      NDJSON_MAX_LINE_BYTES + 1,
    );
    expect(sizeBytes(fluentValue(conf, 'INPUT', 'Buffer_Chunk_Size') ?? '0')).toBeLessThanOrEqual(
      sizeBytes(fluentValue(conf, 'INPUT', 'Buffer_Max_Size') ?? '0'),
    );
    expect(fluentValue(conf, 'INPUT', 'Skip_Long_Lines')).toBe('On');
    expect(fluentValue(conf, 'SERVICE', 'Parsers_File')).toBe('parsers-toolguard.conf');
    expect(fluentValue(conf, 'INPUT', 'Parser')).toBe(fluentValue(parsers, 'PARSER', 'Name'));
    expect(glob((fluentValue(conf, 'INPUT', 'Path') ?? '').replace(DOC_DIR, dir)).test(live)).toBe(true);
    expect(Number(fluentValue(conf, 'INPUT', 'Rotate_Wait'))).toBeGreaterThan(0);
    expect(fluentValue(conf, 'INPUT', 'DB')).toMatch(/^\/var\/lib\/fluent-bit\/.+\.db$/);
    expect(fluentValue(parsers, 'PARSER', 'Format')).toBe('json');
    const key = fluentValue(parsers, 'PARSER', 'Time_Key') as string;
    const p = strftime(fluentValue(parsers, 'PARSER', 'Time_Format') as string);
    for (const l of lines) {
      const t = (JSON.parse(l) as Record<string, string>)[key] as string;
      expect(parseWith(p, t), t).toBe(Date.parse(t));
    }
  });

  it('Filebeat: message_max_bytes, timestamp layout, paths, registry', () => {
    const conf = read('filebeat.yml');
    expect(Number(/^\s*message_max_bytes:\s*(\d+)/m.exec(conf)?.[1])).toBeGreaterThanOrEqual(
      NDJSON_MAX_LINE_BYTES + 1,
    );
    const paths = [
      ...(/^\s*paths:\s*\n((?:\s*-\s*\S+\s*\n)+)/m.exec(conf)?.[1] ?? '').matchAll(/-\s*(\S+)/g),
    ].map((m) => m[1] as string);
    expect(paths.length).toBeGreaterThan(0);
    for (const f of files)
      expect(
        paths.some((p) => glob(p.replace(DOC_DIR, dir)).test(f)),
        f,
      ).toBe(true);
    expect(conf).toMatch(/^filebeat\.registry\.path:\s*\/var\/lib\/filebeat\/registry/m);
    const target = /target:\s*"([^"]*)"/.exec(conf)?.[1];
    const field = /field:\s*(\S+)/.exec(conf)?.[1];
    expect(field).toBe(`${target}.time`);
    const layout = /layouts:\s*\n\s*-\s*'([^']+)'/.exec(conf)?.[1] as string;
    const example = /test:\s*\n\s*-\s*'([^']+)'/.exec(conf)?.[1] as string;
    const p = goLayout(layout);
    expect(parseWith(p, example)).toBe(Date.parse(example));
    for (const l of lines) {
      const t = (JSON.parse(l) as { time: string }).time;
      expect(parseWith(p, t), t).toBe(Date.parse(t));
    }
  });

  it('the format readers refuse what they should (the checks above can fail)', () => {
    expect(parseWith(strftime('%Y-%m-%dT%H:%M:%S%.3fZ'), '2026-11-24T10:00:00Z')).toBeUndefined();
    expect(parseWith(strftime('%Y-%m-%dT%H:%M:%S.%LZ'), '2026-11-24T10:00:00.250+01:00')).toBeUndefined();
    expect(parseWith(goLayout('2006-01-02T15:04:05.000Z'), '2026-11-24 10:00:00.000Z')).toBeUndefined();
    expect(parseWith(goLayout('2006-01-02T15:04:05.000Z'), '2026-11-24T10:00:00.250Z')).toBe(
      Date.parse('2026-11-24T10:00:00.250Z'),
    );
    expect(glob('/x/events.ndjson').test('/x/events.ndjson.1')).toBe(false);
    expect(sizeBytes('32k')).toBeLessThan(NDJSON_MAX_LINE_BYTES + 1);
  });
});
