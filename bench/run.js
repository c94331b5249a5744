#!/usr/bin/env node
// Runs every benchmark in bench/*.bench.js in turn, each as its own process so one bench's
// processes, timers and memory never colour another's numbers. Each prints its own tables of
// measured numbers (never hard-coded) with the comparison in the same run.
// Usage: npm run bench [-- name-filter]
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const filter = process.argv[2] ?? '';
const benches = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js') && f.includes(filter))
  .sort();

let failed = 0;
for (const file of benches) {
  process.stdout.write(`\n=== ${file} ===\n`);
  const started = Date.now();
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, file)], {
    stdio: 'inherit',
    timeout: 10 * 60_000,
  });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (r.status !== 0) {
    failed++;
    process.stdout.write(`--- ${file} FAILED (exit ${r.status ?? r.signal}) after ${secs} s\n`);
  } else {
    process.stdout.write(`--- ${file} done in ${secs} s\n`);
  }
}
process.stdout.write(`\n${benches.length} benchmarks, ${failed} failed\n`);
process.exitCode = failed > 0 ? 1 : 0;
