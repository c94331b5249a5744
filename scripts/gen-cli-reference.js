#!/usr/bin/env node
// Writes guardctl's man page and bash/zsh/fish completions under docs/ from the command
// definitions (through the built dist/). Run by `npm run docs` after the build; `--check` exits 1
// when a committed file differs from what the definitions generate (used by tests).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cliReferenceFiles } from '../dist/cli/cli-reference.js';

const check = process.argv.includes('--check');
let stale = 0;
for (const [path, text] of cliReferenceFiles()) {
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
    mkdirSync(dirname(url.pathname), { recursive: true });
    writeFileSync(url, text);
    process.stdout.write(`wrote ${path}\n`);
  }
}
process.exitCode = stale ? 1 : 0;
