// Content-marker scan benchmark (src/sensors/content-markers.ts), through the real scanner on real
// files:
//   1. a generated 400 MB-class sparse ELF-less file with the example policy's markers in its last
//      bytes: cold scan (first scan of that file identity; page cache as it is) and cached scan;
//   2. the same size as an ELF whose `.bun` section starts 160 MB in, markers 1.3 MB into it (the
//      layout of Claude Code's native binary);
// Columns: disk_ms = first scan with the file evicted from the page cache; cold_ms = first scan of
// that identity (bytes in page cache); cached_ms = the same identity again (one open + fstat).
//   3. every file named in TOOLGUARD_MARKER_FILES (colon-separated paths, e.g. the real binaries
//      unpacked from `npm pack`): which example-policy rules' marker sets it matches, and the time.
// Prints measured numbers only. Usage: npm run bench -- content-markers
//   TOOLGUARD_MARKER_FILES=/tmp/x/claude:/tmp/x/bun node bench/content-markers.bench.js
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markerKey, parseMarker } from '../dist/policy/content-markers.js';
import { compileMatcher } from '../dist/policy/matcher.js';
import { ContentMarkerScanner } from '../dist/sensors/content-markers.js';
import { writeElfWithBunSection } from './lib/synthetic-elf.js';

const SIZE = 402 * 1000 * 1000;
const policy = JSON.parse(
  readFileSync(fileURLToPath(new URL('../policy/example-policy.json', import.meta.url)), 'utf8'),
);
const matcher = compileMatcher(policy, { platform: 'linux', homes: [] });
const automaton = matcher.markers();
if (!automaton) throw new Error('the example policy has no content markers');
const sets = policy.rules.flatMap((r) =>
  (r.process?.markers ?? []).map((set) => ({ rule: r.id, keys: set.map((m) => markerKey(parseMarker(m))) })),
);
const firstSet = policy.rules.find((r) => r.process?.markers)?.process.markers[0] ?? [];

function rulesMatched(found) {
  const have = new Set(found ?? []);
  return [...new Set(sets.filter((s) => s.keys.every((k) => have.has(k))).map((s) => s.rule))];
}

async function timeScan(scanner, path) {
  const t0 = performance.now();
  const r = await scanner.scan(path, automaton, 0);
  return { ms: performance.now() - t0, r };
}

const dir = mkdtempSync(join(tmpdir(), 'tgct-bench-'));
try {
  const payload = Buffer.from(`${firstSet.join('\u0000filler\u0000')}\u0000`, 'utf8');
  const rows = [];

  const tailFile = join(dir, 'tail-400mb');
  const fd = openSync(tailFile, 'w');
  writeSync(fd, payload, 0, payload.length, SIZE - payload.length);
  closeSync(fd);
  const elfFile = join(dir, 'elf-bun-400mb');
  writeElfWithBunSection(elfFile, SIZE, 160_000_000, 235_000_000, {
    at: 160_000_000 + 1_300_000,
    bytes: payload,
  });

  for (const [label, path] of [
    ['sparse 402 MB, markers in the last bytes', tailFile],
    ['sparse 402 MB ELF, .bun at 160 MB, markers 1.3 MB in', elfFile],
  ]) {
    const scanner = new ContentMarkerScanner();
    const cold = await timeScan(scanner, path);
    const warm = await timeScan(scanner, path);
    rows.push({
      file: label,
      rules: rulesMatched(cold.r.found).join(',') || '-',
      scanned_mb: (cold.r.scannedBytes / 1e6).toFixed(1),
      disk_ms: '-',
      cold_ms: cold.ms.toFixed(1),
      cached_ms: warm.ms.toFixed(2),
      outcome: `${cold.r.outcome}/${warm.r.outcome}`,
    });
  }
  for (const path of (process.env.TOOLGUARD_MARKER_FILES ?? '').split(':').filter(Boolean)) {
    // Evict the file from the page cache (GNU dd: posix_fadvise DONTNEED on the whole file), so
    // the first scan reads from the disk.
    const evicted = spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']).status === 0;
    const disk = await timeScan(new ContentMarkerScanner({ timeoutMs: 30_000 }), path);
    const scanner = new ContentMarkerScanner({ timeoutMs: 30_000 });
    const cold = await timeScan(scanner, path);
    const warm = await timeScan(scanner, path);
    rows.push({
      file: path,
      rules: rulesMatched(cold.r.found).join(',') || '-',
      scanned_mb: (cold.r.scannedBytes / 1e6).toFixed(1),
      disk_ms: evicted ? disk.ms.toFixed(1) : '?',
      cold_ms: cold.ms.toFixed(1),
      cached_ms: warm.ms.toFixed(2),
      outcome: `${cold.r.outcome}/${warm.r.outcome}`,
    });
  }
  console.log(`content markers: ${automaton.keys.length} distinct markers in the example policy`);
  console.table(rows);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
