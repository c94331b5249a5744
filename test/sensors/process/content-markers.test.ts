/**
 * Content markers (src/policy/content-markers.ts, src/sensors/content-markers.ts) on real files:
 * found at the start, middle, end and across a read-chunk boundary; the documented scan bound on a
 * 400 MB sparse file (what lies outside the regions is not found, what is inside is, and the scan
 * reads at most MAX_SCAN_BYTES); the cache per file identity; hostile files; both search engines
 * agree with a naive search (property test); the policy schema's rules for markers.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  openSync,
  renameSync,
  symlinkSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { writeElfWithBunSection } from '../../../bench/lib/synthetic-elf.js';
import type { GuardError } from '../../../src/common/errors.js';
import {
  MarkerAutomaton,
  markerAutomaton,
  markerKey,
  NATIVE_SEARCH_MAX_PATTERNS,
  parseMarker,
} from '../../../src/policy/content-markers.js';
import { planRegionsSync } from '../../../src/policy/marker-regions.js';
import { compileMatcher } from '../../../src/policy/matcher.js';
import { lintPolicy } from '../../../src/policy/policy-lint.js';
import { assertValidPolicyBody } from '../../../src/policy/policy-schema.js';
import type { PolicyRule } from '../../../src/policy/policy-types.js';
import { ruleSafetyIssues } from '../../../src/policy/rule-safety.js';
import {
  ContentMarkerScanner,
  HEAD_BYTES,
  MAX_SCAN_BYTES,
  TAIL_BYTES,
} from '../../../src/sensors/content-markers.js';
import type { ProcessObservation } from '../../../src/sensors/observation.js';
import { ReadGate } from '../../../src/sensors/safe-read.js';
import { policyBody } from '../../helpers/daemon.js';
import { waitSettled } from '../../helpers/settled.js';
import { tempDir } from '../../helpers/tmp.js';

const dir = tempDir('tgct-cm-');
afterAll(() => execFileSync('rm', ['-rf', dir]));

const M1 = 'tgct-marker-one/alpha-0001';
const M2 = 'hex:00ff10ef7f454c46deadbeef99';
const M3 = 'tgct-marker-three: a URL https://example.invalid/x';
const key = (m: string): string => markerKey(parseMarker(m) as Buffer);
const automaton = markerAutomaton([M1, M2, M3].map((m) => parseMarker(m) as Buffer));

function fileWith(name: string, size: number, parts: readonly { at: number; marker: string }[]): string {
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  try {
    if (size > 0) writeSync(fd, Buffer.alloc(1), 0, 1, size - 1);
    for (const p of parts) {
      const b = parseMarker(p.marker) as Buffer;
      writeSync(fd, b, 0, b.length, p.at);
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

describe('content-marker scanner on real files', () => {
  const MiB = 1024 * 1024;

  it.each([
    ['at the start', 0],
    ['in the middle', 3 * MiB + 12345],
    ['at the end', 6 * MiB - 64],
    ['across a 1 MiB read-chunk boundary', 2 * MiB - 7],
  ])('finds a marker %s', async (_what, at) => {
    const path = fileWith(`m-${at}`, 6 * MiB, [{ at, marker: M1 }]);
    const r = await new ContentMarkerScanner().scan(path, automaton);
    expect(r.outcome).toBe('scanned');
    expect(r.found).toEqual([key(M1)]);
  });

  it('finds binary (hex) markers and every marker of a set', async () => {
    const path = fileWith('all', 3 * MiB, [
      { at: 10, marker: M2 },
      { at: MiB - 3, marker: M3 },
      { at: 2 * MiB + 5, marker: M1 },
    ]);
    const r = await new ContentMarkerScanner().scan(path, automaton);
    expect(new Set(r.found)).toEqual(new Set([key(M1), key(M2), key(M3)]));
  });

  it('a 400 MB sparse file: head and tail windows found, the middle is outside the bound, scan capped', async () => {
    const size = 400 * 1000 * 1000;
    const path = fileWith('huge', size, [
      { at: HEAD_BYTES - 100, marker: M1 },
      { at: 200 * 1000 * 1000, marker: M2 }, // outside every region: documented as not found
      { at: size - TAIL_BYTES + 10, marker: M3 },
    ]);
    const t0 = performance.now();
    const r = await new ContentMarkerScanner().scan(path, automaton);
    const ms = performance.now() - t0;
    expect(r.outcome).toBe('scanned');
    expect(new Set(r.found)).toEqual(new Set([key(M1), key(M3)]));
    expect(r.scannedBytes).toBeLessThanOrEqual(MAX_SCAN_BYTES);
    expect(r.scannedBytes).toBe(HEAD_BYTES + TAIL_BYTES);
    // Generous sanity bound (reading 16 MiB of holes): the scan does not walk 400 MB.
    expect(ms).toBeLessThan(5000);
  });

  it('an ELF with a .bun section deep in the file: markers at the section start are found, bytes appended move nothing', async () => {
    const size = 300 * 1000 * 1000;
    const bunAt = 150 * 1000 * 1000;
    const path = join(dir, 'elf-bun');
    writeElfWithBunSection(path, size, bunAt, 120 * 1000 * 1000, {
      at: bunAt + 1_300_000,
      bytes: parseMarker(M1) as Buffer,
    });
    const scanner = new ContentMarkerScanner();
    expect((await scanner.scan(path, automaton)).found).toEqual([key(M1)]);
    appendFileSync(path, Buffer.alloc(20 * 1024 * 1024, 0x41));
    const r = await scanner.scan(path, automaton);
    expect(r.outcome).toBe('scanned');
    expect(r.found).toEqual([key(M1)]);
  });

  it('a Bun payload appended at the end (trailer + offsets table): its start is scanned, deep in the file', async () => {
    const size = 100 * 1000 * 1000;
    const payloadAt = 50 * 1000 * 1000;
    const trailer = Buffer.from('\n---- Bun! ----\n', 'latin1');
    const offsets = Buffer.alloc(32);
    offsets.writeBigUInt64LE(BigInt(size - trailer.length - offsets.length - payloadAt), 0);
    const path = fileWith('appended-bun', size, [{ at: payloadAt + 1000, marker: M3 }]);
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.concat([offsets, trailer]), 0, 48, size - 48);
    closeSync(fd);
    const r = await new ContentMarkerScanner().scan(path, automaton);
    expect(r.found).toEqual([key(M3)]);
    // Without the trailer the same bytes lie outside every region (the documented bound).
    const plain = fileWith('no-trailer', size, [{ at: payloadAt + 1000, marker: M3 }]);
    expect((await new ContentMarkerScanner().scan(plain, automaton)).found).toEqual([]);
  });

  it('caches per identity: a second scan is a hit, a modified file is scanned again', async () => {
    const path = fileWith('cache', MiB, [{ at: 100, marker: M1 }]);
    const scanner = new ContentMarkerScanner();
    // A file changed in the last seconds is scanned each time (file-facts.ts `settled`).
    expect((await scanner.scan(path, automaton)).outcome).toBe('scanned');
    expect((await scanner.scan(path, automaton)).outcome).toBe('scanned');
    await waitSettled(path);
    expect((await scanner.scan(path, automaton)).outcome).toBe('scanned');
    const hit = await scanner.scan(path, automaton);
    expect(hit.outcome).toBe('cached');
    expect(hit.found).toEqual([key(M1)]);
    const b = parseMarker(M3) as Buffer;
    const fd = openSync(path, 'r+');
    writeSync(fd, b, 0, b.length, 5000);
    closeSync(fd);
    const again = await scanner.scan(path, automaton);
    expect(again.outcome).toBe('scanned');
    expect(new Set(again.found)).toEqual(new Set([key(M1), key(M3)]));
    // Another marker generation never reuses the entry.
    const other = markerAutomaton([parseMarker(M1) as Buffer]);
    expect((await scanner.scan(path, other)).outcome).toBe('scanned');
  });

  it('an identity the caller expected but the descriptor contradicts answers `changed` without reading', async () => {
    const path = fileWith('changed', 4096, [{ at: 0, marker: M1 }]);
    const scanner = new ContentMarkerScanner();
    const first = await scanner.scan(path, automaton);
    const id = first.identity;
    if (!id) throw new Error('no identity');
    appendFileSync(path, 'x');
    const r = await scanner.scan(path, automaton, -1, id);
    expect(r.outcome).toBe('changed');
    expect(r.found).toBeNull();
  });

  it('a FIFO is not waited on; a symlink swapped in at the path is not followed unless kernel-made', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const scanner = new ContentMarkerScanner({ timeoutMs: 2000 });
    const r = await scanner.scan(fifo, automaton);
    expect(r.outcome).toBe('unreadable');
    // /proc/self/fd/N (what the pre-exec path passes) is followed to the very file held open.
    const real = fileWith('held', 4096, [{ at: 0, marker: M3 }]);
    const fd = openSync(real, 'r');
    try {
      renameSync(real, `${real}.moved`);
      symlinkSync('/dev/zero', real);
      const viaFd = await scanner.scan(`/proc/self/fd/${fd}`, automaton);
      expect(viaFd.found).toEqual([key(M3)]);
    } finally {
      closeSync(fd);
    }
  });

  it('a file that keeps growing while scanned: the scan ends within its bound', async () => {
    const path = fileWith('grow', 2 * MiB, []);
    const writer = spawn('sh', ['-c', `while :; do head -c 1048576 /dev/zero >> '${path}'; done`], {
      stdio: 'ignore',
    });
    try {
      const r = await new ContentMarkerScanner({ timeoutMs: 10_000 }).scan(path, automaton);
      expect(['scanned', 'changed']).toContain(r.outcome);
      expect(r.scannedBytes).toBeLessThanOrEqual(MAX_SCAN_BYTES);
    } finally {
      writer.kill('SIGKILL');
    }
  });

  it('a scan that cannot get a slot answers busy (bounded admission)', async () => {
    const gate = new ReadGate('tgct-test', 0, 0);
    const r = await new ContentMarkerScanner({ gate, timeoutMs: 50 }).scan(
      fileWith('busy', 10, []),
      automaton,
    );
    expect(r.outcome).toBe('busy');
  });

  it('a truncated-to-empty file scans to nothing', async () => {
    const path = fileWith('empty', 10, []);
    truncateSync(path, 0);
    const r = await new ContentMarkerScanner().scan(path, automaton);
    expect(r).toMatchObject({ outcome: 'scanned', found: [] });
  });
});

describe('region plan on hostile headers (property)', () => {
  it('never throws, stays inside the file and within MAX_SCAN_BYTES', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 4096 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (bytes, elf, bunTrailer, size) => {
          const file = Buffer.from(bytes);
          if (elf && file.length >= 6) {
            file.writeUInt32BE(0x7f454c46, 0);
            file[4] = 2;
            file[5] = 1;
          }
          if (bunTrailer && file.length >= 16) Buffer.from('\n---- Bun! ----\n').copy(file, file.length - 16);
          // The file is `size` bytes of which the first and last bytes are `file` (repeated view).
          const read = (pos: number, len: number): Buffer => {
            const out = Buffer.alloc(Math.max(0, Math.min(len, size - pos, 1 << 20)));
            for (let i = 0; i < out.length; i++) {
              const at = pos + i;
              const fromEnd = size - at;
              out[i] =
                (fromEnd <= file.length
                  ? file[file.length - fromEnd]
                  : file[at % Math.max(1, file.length)]) ?? 0;
            }
            return out;
          };
          const regions = planRegionsSync(read, size);
          let total = 0;
          let prevEnd = -1;
          for (const r of regions) {
            expect(r.start).toBeGreaterThan(prevEnd);
            expect(r.end).toBeGreaterThan(r.start);
            expect(r.end).toBeLessThanOrEqual(size);
            total += r.end - r.start;
            prevEnd = r.end;
          }
          expect(total).toBeLessThanOrEqual(MAX_SCAN_BYTES);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('marker search engines agree with a naive search (property)', () => {
  const patternArb = fc.uint8Array({ minLength: 1, maxLength: 20 }).map((a) => Buffer.from(a));
  it('native and automaton report the same markers as Buffer#includes, chunked anywhere', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(patternArb, { minLength: 1, maxLength: 8, selector: (b) => b.toString('hex') }),
        fc.uint8Array({ maxLength: 400 }),
        fc.array(fc.nat(400), { maxLength: 5 }),
        fc.nat(7),
        (patterns, hay, cuts, embed) => {
          // Embed one pattern so hits happen, not only misses.
          const p = patterns[embed % patterns.length] as Buffer;
          const at = hay.length > 0 ? (cuts[0] ?? 0) % hay.length : 0;
          const text = Buffer.concat([Buffer.from(hay.subarray(0, at)), p, Buffer.from(hay.subarray(at))]);
          const expected = patterns.filter((q) => text.includes(q)).map((q) => q.toString('hex'));
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
          for (const engine of ['native', 'automaton'] as const) {
            const a = new MarkerAutomaton(patterns, engine);
            const st = a.newState();
            let prev = 0;
            for (const c of [...points, text.length]) {
              a.feed(st, text.subarray(prev, c));
              prev = c;
            }
            expect(new Set(a.foundKeys(st))).toEqual(new Set(expected));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it(`more than ${NATIVE_SEARCH_MAX_PATTERNS} markers use the automaton, whose table stays small`, () => {
    const many = Array.from({ length: 100 }, (_, i) => Buffer.from(`tgct-marker-number-${i}-xyz`));
    const a = markerAutomaton(many);
    expect(a.tableBytes).toBeGreaterThan(0);
    expect(a.tableBytes).toBeLessThan(1024 * 1024);
    const st = a.newState();
    a.feed(st, Buffer.from('..tgct-marker-number-42-xyz..tgct-marker-number-7-xyz'));
    expect(a.foundKeys(st).sort()).toEqual([many[42], many[7]].map((b) => markerKey(b as Buffer)).sort());
  });
});

describe('markers in the policy', () => {
  const rule = (markers: string[][], action: PolicyRule['action'] = 'block'): PolicyRule => ({
    id: 'r',
    name: 'R',
    action,
    message: 'm',
    process: { markers },
  });
  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (err) {
      return (err as GuardError).code;
    }
    return 'none';
  };

  it.each([
    ['a marker shorter than 12 bytes', [['short']]],
    ['odd hex', [['hex:abcdef0123456789abcdef0']]],
    ['non-hex digits', [['hex:zz0123456789abcdef0123']]],
    ['a marker over 256 bytes', [['x'.repeat(257)]]],
    ['an empty set', [[]]],
    ['only the Bun trailer, on a block rule', [['\n---- Bun! ----\n']]],
    ['only /$bunfs/root/, on a block rule', [['/$bunfs/root/']]],
  ])('refuses %s (GUARD_POLICY_SCHEMA)', (_what, markers) => {
    expect(code(() => assertValidPolicyBody(policyBody([rule(markers)])))).toBe('GUARD_POLICY_SCHEMA');
  });

  it('a Bun-generic set is accepted on an audit rule; lint names the marker path', () => {
    expect(code(() => assertValidPolicyBody(policyBody([rule([['/$bunfs/root/']], 'audit')])))).toBe('none');
    const findings = lintPolicy(policyBody([rule([['/$bunfs/root/']], 'warn')]), {
      safety: { probeMachine: false },
    });
    expect(findings).toContainEqual(
      expect.objectContaining({ kind: 'markers', path: '$.rules[0].process.markers[0]', severity: 'error' }),
    );
  });

  it('refuses a policy whose distinct markers exceed the budget', () => {
    const rules = Array.from({ length: 5 }, (_, i) =>
      rule(
        Array.from({ length: 16 }, (_, j) => Array.from({ length: 1 }, () => `${i}-${j}-${'m'.repeat(240)}`)),
      ),
    ).map((r, i) => ({ ...r, id: `r${i}` }));
    expect(code(() => assertValidPolicyBody(policyBody(rules)))).toBe('GUARD_POLICY_SCHEMA');
  });

  it('matches when ALL markers of ANY set were found (reason content)', () => {
    const body = assertValidPolicyBody(policyBody([rule([[M1, M3], [M2]])]));
    const m = compileMatcher(body, { platform: 'linux', homes: [] });
    expect(m.needs.markers).toBe(true);
    const obs = (found: string[] | null): ProcessObservation => ({
      kind: 'process',
      pid: 1,
      ppid: 0,
      startTime: 1,
      name: 'innocent',
      exe: '/tmp/innocent',
      argv: ['innocent'],
      owner: { uid: 0, user: 'root', groups: [], home: '/root' },
      tty: null,
      contentMarkers: found,
    });
    const ctx = { now: Date.parse(body.issued_at), hostname: 'h', deviceTags: [] };
    expect(m.match(obs([key(M1)]), ctx)).toBeNull();
    expect(m.match(obs(null), ctx)).toBeNull();
    expect(m.match(obs([key(M1), key(M3)]), ctx)).toMatchObject({ reason: 'content' });
    expect(m.match(obs([key(M2)]), ctx)?.detail).toBe(JSON.stringify(M2));
    const auto = m.markers();
    expect(auto?.keys.length).toBe(3);
  });

  it('a block rule whose markers occur in the node binary is refused by the safety check (probe scanned)', async () => {
    const { openSync: o, readSync: r, closeSync: c } = await import('node:fs');
    // Two printable runs naming node from node's own head region: markers the real binary carries.
    const fd = o(process.execPath, 'r');
    const head = Buffer.alloc(HEAD_BYTES);
    r(fd, head, 0, head.length, 0);
    c(fd);
    const runs = [...head.toString('latin1').matchAll(/[A-Za-z0-9_:. -]*node[A-Za-z0-9_:. -]*/g)]
      .map((m) => m[0])
      .filter((x) => x.length >= 16)
      .map((x) => x.slice(0, 64));
    expect(runs.length).toBeGreaterThan(1);
    const set = [runs[0] as string, runs[runs.length - 1] as string];
    const hits = ruleSafetyIssues(policyBody([rule([set])]), { probeMachine: true });
    expect(hits).toContainEqual(
      expect.objectContaining({ severity: 'error', path: '$.rules[0].process.markers[0]' }),
    );
    const audit = ruleSafetyIssues(policyBody([rule([set], 'audit')]), { probeMachine: true });
    expect(audit.find((i) => i.path === '$.rules[0].process.markers[0]')?.severity).toBe('warning');
    // The example policy's markers occur in no critical program of this machine.
    const { readFileSync } = await import('node:fs');
    const example = JSON.parse(
      readFileSync(new URL('../../../policy/example-policy.json', import.meta.url), 'utf8'),
    );
    expect(ruleSafetyIssues(example).filter((i) => i.path.includes('.markers'))).toEqual([]);
  });

  it('the example policy validates and its marker sets are specific (no Bun-generic set)', async () => {
    const { readFileSync } = await import('node:fs');
    const body = JSON.parse(
      readFileSync(new URL('../../../policy/example-policy.json', import.meta.url), 'utf8'),
    );
    expect(code(() => assertValidPolicyBody(body))).toBe('none');
    const m = compileMatcher(body, { platform: 'linux', homes: [] });
    expect(m.needs.markers).toBe(true);
  });
});
