#!/usr/bin/env node
// Builds the browser console (console/ → dist/console/) as part of `npm run build`: one minified
// ES module (app.js: Preact, htm, uPlot and the pages) and one stylesheet (app.css, uPlot's
// included), plus index.html and manifest.json (the file list the collector serves; it serves
// nothing else). Offline and from the lockfile: esbuild and the libraries come from node_modules.
// Prints the sizes (raw and gzip) so a growing bundle is seen.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'console');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { app: join(root, 'console', 'src', 'app.js') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  outdir: out,
  logLevel: 'warning',
  legalComments: 'none',
});
await build({
  entryPoints: { app: join(root, 'console', 'src', 'style.css') },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: 'warning',
});
copyFileSync(join(root, 'console', 'index.html'), join(out, 'index.html'));
const files = ['index.html', 'app.js', 'app.css'];
writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(files)}\n`);

const sizes = files.map((f) => {
  const b = readFileSync(join(out, f));
  return { file: f, bytes: b.length, gzip: gzipSync(b, { level: 9 }).length };
});
for (const s of sizes) console.log(`console: ${s.file} ${s.bytes} bytes (${s.gzip} gzip)`);
