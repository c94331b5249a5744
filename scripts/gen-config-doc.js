#!/usr/bin/env node
// Writes docs/config.md from the settings table (run through `npm run docs`, after the build).
import { writeFileSync } from 'node:fs';
import { renderConfigDoc } from '../dist/config/config-doc.js';

writeFileSync(new URL('../docs/config.md', import.meta.url), renderConfigDoc());
process.stdout.write('wrote docs/config.md\n');
