/**
 * Fuzzing package.json reading (src/sensors/package-reader.ts, through src/sensors/safe-read.ts):
 * any user can put a package.json in their global npm tree or beside a script, so its bytes and its
 * file type are hostile. Random bytes, BOMs, huge and deeply nested JSON, `__proto__`/`constructor`
 * keys, odd `name`/`version`/`bin` shapes, written to real files in a temp dir, plus links, FIFOs,
 * directories and sparse giants: every read (sync and async) is a typed result or a skip with a
 * known reason, never a throw or a hang, and nothing leaks into Object.prototype.
 * Seed and replay: test/fuzz/fuzz-params.ts.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import {
  MAX_PACKAGE_JSON_BYTES,
  type PackageReadResult,
  parseManifest,
  readPackageJson,
  readPackageJsonAsync,
} from '../../src/sensors/package-reader.js';
import { ReadGate } from '../../src/sensors/safe-read.js';
import { tempDir } from '../helpers/tmp.js';
import { fuzzParams, testTimeout } from './fuzz-params.js';

const root = tempDir('tgfz-pkg-');
/** A gate of this test's own, so its reads never wait on another source's slots. */
const gate = new ReadGate('fuzz_package_json', 2, 2);
let n = 0;

const REASONS = new Set([
  'missing',
  'not_file',
  'too_large',
  'unreadable',
  'permission_denied',
  'not_json',
  'not_object',
  'no_name',
]);

const hostileKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'valueOf',
  '',
  '.',
  '..',
  'a/b',
  'x',
);

/** A JSON value that may carry hostile keys at any level. */
const hostileValue = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.jsonValue({ maxDepth: 1 }),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.array(fc.tuple(fc.oneof(hostileKey, fc.string({ maxLength: 8 })), tie('v')), { maxLength: 4 }),
  ),
})).v;

/** JSON text of an object with hostile keys (written as text: `{"__proto__": …}` stays an own key). */
function objectText(entries: readonly (readonly [string, unknown])[]): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${toText(v)}`).join(',')}}`;
}

function toText(v: unknown): string {
  if (Array.isArray(v) && v.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string'))
    return objectText(v as [string, unknown][]);
  if (Array.isArray(v)) return `[${v.map(toText).join(',')}]`;
  return JSON.stringify(v) ?? 'null';
}

const name = fc.oneof(
  fc.constantFrom('@anthropic-ai/claude-code', 'claude', '__proto__', 'constructor', '', 'a'.repeat(215)),
  fc.string({ maxLength: 30 }),
  fc.jsonValue({ maxDepth: 1 }),
);
const version = fc.oneof(
  fc.constantFrom(
    '1.0.0',
    'v1.2.3',
    '1.0.0-beta.1+build',
    '99999999999999999999.0.0',
    'latest',
    '9'.repeat(300),
  ),
  fc.string({ maxLength: 12 }),
  fc.jsonValue({ maxDepth: 1 }),
);
const bin = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.array(
    fc.tuple(
      fc.oneof(hostileKey, fc.string({ maxLength: 10 })),
      fc.oneof(fc.string({ maxLength: 10 }), hostileValue),
    ),
    {
      maxLength: 80,
    },
  ),
  hostileValue,
);

/** package.json text: manifest-shaped, hostile-keyed, nested, or plain garbage. */
const manifestText: fc.Arbitrary<string | Buffer> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({
        name,
        version,
        bin,
        extra: fc.array(fc.tuple(hostileKey, hostileValue), { maxLength: 3 }),
        bom: fc.boolean(),
      })
      .map(({ name, version, bin, extra, bom }) => {
        const entries: [string, unknown][] = [...extra, ['name', name], ['version', version], ['bin', bin]];
        return (bom ? '\ufeff' : '') + objectText(entries);
      }),
  },
  { weight: 1, arbitrary: hostileValue.map(toText) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('[', '{"a":'), fc.integer({ min: 1000, max: 200_000 }))
      .map(([open, depth]) => {
        const close = open === '[' ? ']' : '}';
        return `{"name":"deep","x":${open.repeat(depth)}1${close.repeat(depth)}}`;
      }),
  },
);

function expectTyped(r: PackageReadResult): void {
  if (!r.ok) {
    expect(REASONS.has(r.reason)).toBe(true);
    return;
  }
  const { info } = r;
  expect(typeof info.name).toBe('string');
  expect(info.name.length).toBeGreaterThan(0);
  expect(info.name.length).toBeLessThanOrEqual(214);
  if (info.version !== null) expect(semver.valid(info.version)).toBe(info.version);
  const keys = Object.keys(info.bin);
  expect(keys.length).toBeLessThanOrEqual(64);
  for (const k of keys) {
    expect(k).not.toMatch(/[\\/]|^\.\.?$|^$/);
    expect(typeof info.bin[k]).toBe('string');
  }
  expect(r.size).toBeLessThanOrEqual(MAX_PACKAGE_JSON_BYTES);
}

/** Every usable bin entry of the object form (the first 64) is kept, `__proto__` and `constructor` included. */
function expectEveryBin(text: string, got: Readonly<Record<string, string>>): void {
  const raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text) as { bin?: unknown };
  const bin = raw.bin;
  if (typeof bin !== 'object' || bin === null || Array.isArray(bin)) return;
  for (const [k, v] of Object.entries(bin).slice(0, 64)) {
    if (typeof v !== 'string' || !k || /[\\/]|^\.\.?$/.test(k)) continue;
    expect(Object.getOwnPropertyDescriptor(got, k)?.value).toBe(v);
  }
}

function expectNoPollution(): void {
  const probe = {} as Record<string, unknown>;
  expect(Object.keys(Object.prototype)).toEqual([]);
  for (const k of ['polluted', 'x', 'name', 'bin', 'version', 'a']) expect(probe[k]).toBeUndefined();
  expect(typeof Object.prototype.toString).toBe('function');
}

function packageDir(): string {
  const dir = join(root, String(n++));
  mkdirSync(dir);
  return dir;
}

describe('fuzz: package.json reading', () => {
  it(
    'random package.json contents: sync and async readers give the same typed result, no throw, no pollution',
    async () => {
      await fc.assert(
        fc.asyncProperty(manifestText, async (content) => {
          const dir = packageDir();
          writeFileSync(join(dir, 'package.json'), content);
          const sync = readPackageJson(dir);
          const async = await readPackageJsonAsync(dir, 'fuzz', gate);
          expectTyped(sync);
          expectTyped(async);
          expect(async.ok ? { ok: true, info: async.info } : { ok: false, reason: async.reason }).toEqual(
            sync.ok ? { ok: true, info: sync.info } : { ok: false, reason: sync.reason },
          );
          // what the reader answers is what parsing the text answers
          const text = Buffer.isBuffer(content) ? content.toString('utf8') : content;
          if (Buffer.byteLength(text) > MAX_PACKAGE_JSON_BYTES)
            expect(sync).toMatchObject({ reason: 'too_large' });
          else {
            const parsed = parseManifest(text);
            expect(parsed.ok ? parsed.info : parsed.reason).toEqual(sync.ok ? sync.info : sync.reason);
            if (sync.ok) expectEveryBin(text, sync.info.bin);
          }
          expectNoPollution();
        }),
        fuzzParams(300, 6_000, 5_000),
      );
    },
    testTimeout(6_000),
  );

  it(
    'hostile file types and sizes: a skip with the right reason, never a wait or a throw',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(
            'symlink',
            'dangling',
            'fifo',
            'directory',
            'huge',
            'sparse',
            'missing',
            'dev_zero',
          ),
          async (kind) => {
            const dir = packageDir();
            const file = join(dir, 'package.json');
            const expected: Record<string, string> = {
              symlink: 'not_file',
              dangling: 'not_file',
              fifo: 'not_file',
              directory: 'not_file',
              huge: 'too_large',
              sparse: 'too_large',
              missing: 'missing',
              dev_zero: 'not_file',
            };
            switch (kind) {
              case 'symlink':
                writeFileSync(join(dir, 'real.json'), '{"name":"secret-root-only"}');
                symlinkSync(join(dir, 'real.json'), file);
                break;
              case 'dangling':
                symlinkSync(join(dir, 'nowhere'), file);
                break;
              case 'fifo':
                execFileSync('mkfifo', [file]);
                break;
              case 'directory':
                mkdirSync(file);
                break;
              case 'huge':
                writeFileSync(file, `{"name":"x","pad":"${'a'.repeat(MAX_PACKAGE_JSON_BYTES)}"}`);
                break;
              case 'sparse':
                writeFileSync(file, '{"name":"x"}');
                truncateSync(file, 8 * 1024 ** 3);
                break;
              case 'dev_zero':
                symlinkSync('/dev/zero', file);
                break;
            }
            const sync = readPackageJson(dir);
            const async = await readPackageJsonAsync(dir, 'fuzz', gate);
            expect(sync).toMatchObject({ ok: false, reason: expected[kind] });
            expect(async).toMatchObject({ ok: false, reason: expected[kind] });
            expectNoPollution();
          },
        ),
        fuzzParams(40, 5_000, 5_000),
      );
    },
    testTimeout(5_000),
  );
});
