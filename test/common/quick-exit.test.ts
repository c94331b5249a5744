/**
 * A process whose work is done ends even with a libuv pool thread stuck in a file system call
 * (src/common/quick-exit.ts, native/quickexit): libuv joins its pool threads at exit, so
 * process.exit() waited for the stuck call for ever — guardd's stop, and guardctl's exit after a
 * user list read whose home stat hung. And it never cuts the output a slow reader has not taken.
 *
 * Real parts: a real node child running the built module (dist/), whose pool thread is really
 * stuck: a read of a FIFO nobody writes (blocking in the kernel exactly like a call into a FUSE
 * mount whose daemon never answers, without needing one), and a real pipe read late by this test.
 */
import { execFileSync, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const dir = tempDir('tg-qexit-');
const fifo = join(dir, 'fifo');
execFileSync('mkfifo', [fifo]);

/** The child: a pool thread stuck reading the FIFO, `out` bytes to stdout, then `how` ends it with code 3. */
function child(how: 'exitAfterGrace' | 'process.exit', out: number) {
  const src = `
    import { openSync, read } from 'node:fs';
    const { exitAfterGrace } = await import(${JSON.stringify(join(ROOT, 'dist', 'common', 'quick-exit.js'))});
    const fd = openSync(${JSON.stringify(fifo)}, 'r+'); // no writer ever writes: read() waits in the kernel
    read(fd, Buffer.alloc(1), 0, 1, null, () => {});
    process.stdout.write('x'.repeat(${out}));
    ${how === 'exitAfterGrace' ? 'exitAfterGrace(3, 300);' : 'setTimeout(() => process.exit(3), 300).unref();'}
  `;
  return spawn(process.execPath, ['--input-type=module', '-e', src], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

/** How `p` ended within `ms` ('still running' then, killed), and the bytes it wrote. */
async function ended(
  p: ReturnType<typeof child>,
  ms: number,
  readAfterMs = 0,
): Promise<{ code: number | string; bytes: number }> {
  let bytes = 0;
  p.stdout?.pause();
  setTimeout(() => {
    p.stdout?.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    p.stdout?.resume();
  }, readAfterMs);
  const code = await new Promise<number | string>((res) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      res('still running');
    }, ms);
    p.once('exit', (c) => {
      clearTimeout(t);
      res(c ?? 'signal');
    });
  });
  // what the pipe still holds once it ended
  await new Promise((r) => (p.stdout?.readableEnded ? r(null) : p.stdout?.once('close', r)));
  return { code, bytes };
}

it('a pool thread stuck in a read that never returns: exitAfterGrace ends the process; process.exit() did not', async () => {
  expect(await ended(child('exitAfterGrace', 10), 15_000)).toEqual({ code: 3, bytes: 10 });
  // what guardd did before: never returned (killed by this test after 5 s)
  expect((await ended(child('process.exit', 10), 5_000)).code).toBe('still running');
});

it('the output a slow reader has not taken yet is written before the process ends', async () => {
  // 4 MiB to a pipe (64 KiB of buffer) whose reader starts 1.5 s after the grace of 0.3 s ran out
  const size = 4 * 1024 * 1024;
  expect(await ended(child('exitAfterGrace', size), 20_000, 1_500)).toEqual({ code: 3, bytes: size });
});
