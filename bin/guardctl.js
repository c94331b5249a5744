#!/usr/bin/env node
// Thin launcher: the program lives in dist/ (built by `npm run build`).
import { main } from '../dist/cli/guardctl-main.js';
import { exitAfterGrace } from '../dist/common/quick-exit.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // A file call stuck in a user's FUSE mount (the user list's home stats) must not hold the exit.
  exitAfterGrace(code, 2000);
});
