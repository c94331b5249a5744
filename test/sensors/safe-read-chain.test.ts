/**
 * The steps of a path walk in one gated job (safe-read.ts `lstatUserChain`, native/pathwalk): the
 * answers are those of lstat/readlink one call after another, stopping where a walk cannot go on
 * as given (a symlink, an error, a non-directory), and a stalled FUSE mount costs a timeout, never
 * the event loop.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHAIN_MAX_PATHS,
  chainIsNative,
  lstatChainSequential,
  lstatUserChain,
  ReadGate,
} from '../../src/sensors/safe-read.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { walkPrefixes } from '../helpers/walk.js';
import { mountStalled, type StalledMount } from './hostile-fs.js';

const linux = process.platform === 'linux';

describe('lstatUserChain', () => {
  const dir = tempDir('tg-chain-');
  const gate = new ReadGate('chain-test', 2, 1);
  const file = join(dir, 'a', 'b', 'cli.js');
  mkdirSync(join(dir, 'a', 'b'), { recursive: true });
  writeFileSync(file, 'x');
  symlinkSync('a/b', join(dir, 'rel'));
  symlinkSync(join(dir, 'a'), join(dir, 'abs'));
  symlinkSync('nowhere', join(dir, 'dangling'));
  symlinkSync('loop2', join(dir, 'loop1'));
  symlinkSync('loop1', join(dir, 'loop2'));

  it.runIf(linux)('runs natively on Linux (native/pathwalk is built by npm run build)', () => {
    expect(chainIsNative).toBe(true);
  });

  it('answers a link-free path in one call, with the type, owner and mode of every step', async () => {
    const paths = walkPrefixes(file);
    const r = await lstatUserChain(paths, gate, 0, 10_000);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value).toHaveLength(paths.length);
    expect(r.value.every((a) => a.ok)).toBe(true);
    const last = r.value.at(-1);
    expect(last?.ok && (last.step.mode & 0o170000) === 0o100000 && last.step.link === null).toBe(true);
    const first = r.value[0];
    expect(first?.ok && (first.step.mode & 0o170000) === 0o040000 && first.step.uid === 0).toBe(true);
  });

  it('stops after a symlink with its target, after an error, and after a non-directory', async () => {
    const viaRel = [...walkPrefixes(join(dir, 'rel')), join(dir, 'rel', 'cli.js')];
    const rel = await lstatUserChain(viaRel, gate, 0, 10_000);
    expect(rel.ok && rel.value.length).toBe(viaRel.length - 1);
    expect(rel.ok && rel.value.at(-1)).toMatchObject({ ok: true, step: { link: 'a/b' } });

    const abs = await lstatUserChain([join(dir, 'abs'), join(dir, 'abs', 'b')], gate, 0, 10_000);
    expect(abs.ok && abs.value).toEqual([
      { ok: true, step: expect.objectContaining({ link: join(dir, 'a') }) },
    ]);

    const missing = await lstatUserChain([join(dir, 'no'), join(dir, 'no', 'x')], gate, 0, 10_000);
    expect(missing.ok && missing.value).toEqual([{ ok: false, code: 'ENOENT' }]);

    const throughFile = await lstatUserChain([file, join(file, 'x')], gate, 0, 10_000);
    expect(throughFile.ok && throughFile.value.length).toBe(1);
    const notDir = await lstatUserChain([join(file, 'x')], gate, 0, 10_000);
    expect(notDir.ok && notDir.value).toEqual([{ ok: false, code: 'ENOTDIR' }]);
  });

  it('gives the same answers as lstat and readlink one call after another', async () => {
    const cases = [
      walkPrefixes(file),
      [...walkPrefixes(join(dir, 'rel')), join(dir, 'rel', 'cli.js')],
      [join(dir, 'abs'), join(dir, 'abs', 'b')],
      [join(dir, 'dangling'), join(dir, 'dangling', 'x')],
      [join(dir, 'loop1'), join(dir, 'loop1', 'x')],
      [join(dir, 'no'), join(dir, 'no', 'x')],
      [file, join(file, 'x')],
      [join(file, 'x')],
      ['/proc/self', '/proc/self/exe'],
    ];
    for (const paths of cases) {
      const r = await lstatUserChain(paths, gate, 0, 10_000);
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.value, paths.join(' ')).toEqual(await lstatChainSequential(paths));
    }
  });

  it('refuses what the job cannot take as a value, never throwing', async () => {
    const tooMany = Array.from({ length: CHAIN_MAX_PATHS + 5 }, () => '/');
    const r = await lstatUserChain(tooMany, gate, 0, 10_000);
    // Cut to the bound: the walk asks again for what it still needs.
    expect(r.ok && r.value.length).toBe(CHAIN_MAX_PATHS);
    for (const bad of [[], ['/tmp/a\u0000b'], ['relative/x'], [`/${'x'.repeat(4096)}`]]) {
      expect(await lstatUserChain(bad, gate, 0, 10_000)).toEqual({ ok: false, reason: 'unreadable' });
    }
  });
});

describe.runIf(linux)('lstatUserChain on a stalled FUSE mount', () => {
  const dir = tempDir('tg-chains-');
  let mnt: StalledMount;

  beforeAll(async () => {
    mnt = await mountStalled(dir);
  });

  afterAll(async () => {
    await mnt?.release();
  });

  it('times out, keeps the loop running, and holds its one slot until the kernel answers', async () => {
    const gate = new ReadGate('chain-stall', 2, 1);
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    try {
      const paths = [dir, mnt.path, join(mnt.path, 'pkg'), join(mnt.path, 'pkg', 'cli.js')];
      const stuck = await lstatUserChain(paths, gate, 1000, 300);
      expect(stuck).toEqual({ ok: false, reason: 'timeout' });
      expect(ticks).toBeGreaterThan(0);
      // One job for the whole chain: one slot pinned, and the user's next call finds none.
      expect(gate.pending).toBe(1);
      expect(await lstatUserChain([dir], gate, 1000, 200)).toEqual({ ok: false, reason: 'busy' });
      // Another user still walks.
      expect((await lstatUserChain([dir], gate, 1001, 5000)).ok).toBe(true);
    } finally {
      clearInterval(ticker);
      await mnt.release();
    }
    await waitFor(() => gate.pending === 0, 'the pinned slot released');
  });
});
