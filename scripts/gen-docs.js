#!/usr/bin/env node
// Writes docs/events.md and docs/data-collected.md from the event schema (through the built dist/,
// the same functions `guardctl explain` uses). Run by `npm run docs` after the build;
// `--check` exits 1 when a committed doc differs from what the schema generates (used by tests).
import { readFileSync, writeFileSync } from 'node:fs';
import { renderDataCollectedDoc, renderEventsDoc } from '../dist/cli/commands/explain.js';

const docs = [
  ['docs/events.md', renderEventsDoc()],
  ['docs/data-collected.md', renderDataCollectedDoc()],
];
const check = process.argv.includes('--check');
let stale = 0;
for (const [path, text] of docs) {
  const url = new URL(`../${path}`, import.meta.url);
  if (check) {
    let current = '';
    try {
      current = readFileSync(url, 'utf8');
    } catch {}
    if (current !== text) {
      stale++;
      process.stderr.write(`${path} is out of date: run npm run docs\n`);
    }
  } else {
    writeFileSync(url, text);
    process.stdout.write(`wrote ${path}\n`);
  }
}
process.exitCode = stale ? 1 : 0;
