#!/usr/bin/env node
// The browser console's bundle (issue 15): what `npm run build` ships in dist/console/, raw and
// gzip (what a browser downloads from a collector that compresses; the collector itself sends
// it uncompressed), and how much of app.js each part is (esbuild's metafile of the same build),
// against the budget the console keeps: 150 KiB of JavaScript, 60 KiB gzip.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'console');
const BUDGET_JS = 150 * 1024;
const BUDGET_JS_GZIP = 60 * 1024;

const files = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
console.log('file          bytes    gzip');
let js = 0;
let jsGzip = 0;
for (const f of files) {
  const b = readFileSync(join(out, f));
  const gz = gzipSync(b, { level: 9 }).length;
  if (f.endsWith('.js')) {
    js += b.length;
    jsGzip += gz;
  }
  console.log(`${f.padEnd(12)} ${String(b.length).padStart(7)} ${String(gz).padStart(7)}`);
}
console.log(
  `JavaScript: ${js} bytes (budget ${BUDGET_JS}: ${js <= BUDGET_JS ? 'within' : 'OVER'}), ${jsGzip} gzip (budget ${BUDGET_JS_GZIP}: ${jsGzip <= BUDGET_JS_GZIP ? 'within' : 'OVER'})`,
);

// the same bundle again, in memory, to attribute its bytes
const r = await build({
  entryPoints: [join(root, 'console', 'src', 'app.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  write: false,
  metafile: true,
  legalComments: 'none',
  outdir: out,
});
const output = Object.values(r.metafile.outputs)[0];
const parts = new Map();
for (const [path, { bytesInOutput }] of Object.entries(output.inputs)) {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  const part = m ? m[1] : 'console pages (console/src)';
  parts.set(part, (parts.get(part) ?? 0) + bytesInOutput);
}
console.log('\npart of app.js                 bytes (minified)');
for (const [part, bytes] of [...parts].sort((a, b) => b[1] - a[1]))
  console.log(`${part.padEnd(30)} ${String(bytes).padStart(7)}`);
if (js > BUDGET_JS || jsGzip > BUDGET_JS_GZIP) process.exitCode = 1;
