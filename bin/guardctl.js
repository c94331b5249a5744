#!/usr/bin/env node
// Thin launcher: the program lives in dist/ (built by `npm run build`).
import { main } from '../dist/cli/guardctl-main.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
