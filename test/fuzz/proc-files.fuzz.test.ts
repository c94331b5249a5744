/**
 * Fuzzing the /proc parsers (src/sensors/process-sources/proc-files.ts): a process chooses its own
 * `comm` (prctl) and rewrites its argv area with any bytes, so stat, status and cmdline are hostile
 * input. Through the real readers on files of a fake /proc root in a temp dir: random bytes, `)`
 * and spaces and newlines in comm, NULs, huge lines. Each read parses or is a skip with a reason
 * (null + `lastFailure`, which the procfs source counts); none throws.
 * Seed and replay: test/fuzz/fuzz-params.ts.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as proc from '../../src/sensors/process-sources/proc-files.js';
import { tempDir } from '../helpers/tmp.js';
import { fuzzParams, testTimeout } from './fuzz-params.js';

const root = tempDir('tgfz-proc-');
let nextPid = 1000;

/** A fresh fake process directory under the fake /proc root, with the given files. */
function fakeProcess(files: Record<string, Uint8Array | string>): number {
  const pid = nextPid++;
  const dir = join(root, String(pid));
  mkdirSync(dir, { recursive: true });
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  return pid;
}

/** Any bytes, biased towards the characters that matter to the parsers. */
const hostileBytes = (maxLength: number) =>
  fc.oneof(
    fc.uint8Array({ maxLength }),
    fc
      .array(
        fc.constantFrom(0x00, 0x0a, 0x20, 0x28, 0x29, 0x2d, 0x30, 0x31, 0x39, 0x3a, 0x53, 0xff, 0xc3, 0x09),
        {
          maxLength,
        },
      )
      .map((a) => Uint8Array.from(a)),
  );

/** A comm as a process can set it, and worse: any text, parentheses, spaces, newlines, NULs. */
const comm = fc.oneof(
  fc.string({ maxLength: 15 }),
  fc.string({ unit: fc.constantFrom('(', ')', ' ', '\n', '\0', 'a', ') S 1 ', '9'), maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 64 }),
);

const u32 = fc.integer({ min: 0, max: 0xffffffff });

/** A stat line shaped like the kernel's (52 fields), with a hostile comm. */
const statLine = fc
  .record({
    pid: fc.integer({ min: 1, max: 4_194_304 }),
    comm,
    state: fc.constantFrom('R', 'S', 'D', 'Z', 'T', 'X', 'I'),
    ppid: fc.integer({ min: 0, max: 4_194_304 }),
    ttyNr: u32,
    flags: u32,
    startTime: fc.maxSafeNat(),
    image: fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 4, maxLength: 4 }),
  })
  .map((s) => {
    const rest: string[] = Array.from({ length: 50 }, (_, i) => String(i));
    rest[0] = s.state;
    rest[1] = String(s.ppid);
    rest[4] = String(s.ttyNr);
    rest[6] = String(s.flags);
    rest[19] = String(s.startTime);
    rest[23] = String(s.image[0]);
    rest[24] = String(s.image[1]);
    rest[25] = String(s.image[2]);
    rest[45] = String(s.image[3]);
    return { ...s, text: `${s.pid} (${s.comm}) ${rest.join(' ')}\n` };
  });

function expectWellFormed(st: proc.ProcStat): void {
  expect(Number.isInteger(st.pid) && st.pid > 0).toBe(true);
  expect(st.state).toHaveLength(1);
  expect(Number.isInteger(st.ppid) && st.ppid >= 0).toBe(true);
  expect(Number.isInteger(st.startTime) && st.startTime >= 0).toBe(true);
  // the program image: four fields in the kernel's digits (0 for a missing or odd one)
  expect(st.image).toMatch(/^[0-9]{1,20}:[0-9]{1,20}:[0-9]{1,20}:[0-9]{1,20}$/);
}

describe('fuzz: /proc parsers', () => {
  it(
    'parseStat: any text is a well-formed stat or null, never a throw',
    () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.string({ maxLength: 600 }),
            hostileBytes(600).map((b) => Buffer.from(b).toString('utf8')),
            statLine.map((s) => s.text),
            // a real line cut or spliced at a random point
            fc
              .tuple(statLine, fc.nat(), fc.string({ maxLength: 20 }))
              .map(([s, at, junk]) => s.text.slice(0, at % (s.text.length + 1)) + junk),
          ),
          (text) => {
            const st = proc.parseStat(text);
            if (st !== null) expectWellFormed(st);
          },
        ),
        fuzzParams(3000, 3_000),
      );
    },
    testTimeout(3_000),
  );

  it(
    'parseStat: a kernel-shaped line parses back to its fields whatever the comm holds (`)`, spaces, newlines, NULs)',
    () => {
      fc.assert(
        fc.property(statLine, (s) => {
          const st = proc.parseStat(s.text);
          expect(st).not.toBeNull();
          const got = st as proc.ProcStat;
          expect(got.pid).toBe(s.pid);
          expect(got.comm).toBe(s.comm);
          expect(got.state).toBe(s.state);
          expect(got.ppid).toBe(s.ppid);
          expect(got.ttyNr).toBe(s.ttyNr);
          expect(got.startTime).toBe(s.startTime);
          // the image fields as the kernel printed them, every digit kept (2^64 − 1 included)
          expect(got.image).toBe(s.image.join(':'));
        }),
        fuzzParams(2000, 3_000),
      );
    },
    testTimeout(3_000),
  );

  it(
    'readStat / readUid / readCmdline / readChildren on random files: a value or null with a reason',
    () => {
      fc.assert(
        fc.property(
          fc.record({
            stat: fc.oneof(
              hostileBytes(5000),
              statLine.map((s) => s.text),
            ),
            status: fc.oneof(
              hostileBytes(9000),
              fc
                .tuple(fc.string({ maxLength: 200 }), fc.string({ maxLength: 80 }))
                .map(([a, b]) => `Name:\tx\n${a}\nUid:${b}\nGid:\t0\n`),
            ),
            cmdline: fc.oneof(
              hostileBytes(2000),
              fc
                .array(fc.string({ unit: 'binary', maxLength: 50 }), { maxLength: 20 })
                .map((a) => `${a.join('\0')}\0`),
              // past the cap: truncated, never unbounded
              fc.nat({ max: 3 }).map((n) => Buffer.alloc(proc.CMDLINE_MAX_BYTES + n * 7000, 0x61)),
            ),
            children: hostileBytes(300),
          }),
          (files) => {
            const pid = fakeProcess(files);
            mkdirSync(join(root, String(pid), 'task', String(pid)), { recursive: true });
            writeFileSync(join(root, String(pid), 'task', String(pid), 'children'), files.children);

            const st = proc.readStat(root, pid);
            if (st === null) expect(proc.lastFailure).toBe('malformed');
            else {
              expectWellFormed(st);
              expect(st.pid).toBe(pid);
            }

            const uid = proc.readUid(root, pid);
            if (uid === null) expect(proc.lastFailure).toBe('malformed');
            else expect(Number.isSafeInteger(uid) && uid >= 0).toBe(true);

            const cmd = proc.readCmdline(root, pid);
            expect(cmd).not.toBeNull();
            const c = cmd as proc.Cmdline;
            const bytes = Buffer.from(files.cmdline);
            expect(c.truncated).toBe(bytes.length > proc.CMDLINE_MAX_BYTES);
            expect(c.argv.reduce((n, a) => n + a.length, 0)).toBeLessThanOrEqual(proc.CMDLINE_MAX_BYTES);
            for (const a of c.argv) expect(typeof a).toBe('string');
            if (bytes.length > 0 && bytes.length <= proc.CMDLINE_MAX_BYTES) {
              const held = bytes[bytes.length - 1] === 0 ? bytes.subarray(0, -1) : bytes;
              expect(c.argv.length).toBe(held.filter((b) => b === 0).length + 1);
            }

            const kids = proc.readChildren(root, pid);
            expect(kids).not.toBeNull();
            for (const k of kids as number[]) expect(Number.isInteger(k) && k > 0).toBe(true);
          },
        ),
        fuzzParams(400, 5_000),
      );
    },
    testTimeout(5_000),
  );

  it('readStat of a missing process is null with reason exited (the counted skip for a race)', () => {
    expect(proc.readStat(root, 999_999_999)).toBeNull();
    expect(proc.lastFailure).toBe('exited');
  });
});
