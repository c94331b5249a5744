/**
 * Reading a file the user controls (safe-read.ts): every hostile file type is refused without
 * waiting, and a real stalled FUSE mount costs the caller a timeout while the event loop keeps
 * running and other keys keep reading; stuck calls pin a bounded share of the thread pool.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExeHasher } from '../../src/sensors/exe-hash.js';
import {
  ReadGate,
  readUserFile,
  realpathUserPath,
  USER_IO_MAX_PINNED,
  USER_IO_MAX_PINNED_PER_KEY,
} from '../../src/sensors/safe-read.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { mountStalled, type StalledMount } from './hostile-fs.js';

const linux = process.platform === 'linux';

describe('readUserFile refuses hostile file types at once', () => {
  const dir = tempDir('tg-sr-');
  const gate = new ReadGate('test', 2, 1);
  const read = (path: string, maxBytes = 1024) =>
    readUserFile(path, { maxBytes, gate, key: 0, timeoutMs: 60_000 });

  it('reads a regular file with the facts of the descriptor it read', async () => {
    const f = join(dir, 'ok.json');
    writeFileSync(f, '{"name":"x"}');
    chmodSync(f, 0o640);
    const r = await read(f);
    expect(r).toMatchObject({ ok: true, facts: { uid: 0, size: 12 } });
    if (r.ok) {
      expect(r.data.toString()).toBe('{"name":"x"}');
      expect(r.facts.mode & 0o777).toBe(0o640);
    }
  });

  it.runIf(linux)('FIFO, device, directory, symlink, missing, too large: each a stable reason', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const link = join(dir, 'link');
    symlinkSync(join(dir, 'ok.json'), link);
    const big = join(dir, 'big');
    writeFileSync(big, Buffer.alloc(2048, 0x20));
    mkdirSync(join(dir, 'adir'));
    // No writer ever opens the FIFO: a blocking open would wait forever (the 60 s deadline above).
    expect(await read(fifo)).toMatchObject({ ok: false, reason: 'not_file' });
    expect(await read('/dev/zero')).toMatchObject({ ok: false, reason: 'not_file' });
    expect(await read('/dev/tty')).toMatchObject({ ok: false });
    expect(await read(join(dir, 'adir'))).toMatchObject({ ok: false, reason: 'not_file' });
    expect(await read(link)).toMatchObject({ ok: false, reason: 'symlink' });
    expect(await read(join(dir, 'missing'))).toMatchObject({ ok: false, reason: 'missing' });
    expect(await read(big)).toMatchObject({ ok: false, reason: 'too_large' });
    expect(gate.counts).toEqual({ busy: 0, timeout: 0, stuck: 0 });
    expect(gate.pending).toBe(0);
  });
});

describe.runIf(linux)('a stalled FUSE mount', () => {
  const dir = tempDir('tg-srs-');
  let mnt: StalledMount;

  beforeAll(async () => {
    mnt = await mountStalled(dir);
  });

  afterAll(async () => {
    await mnt?.release();
  });

  it('times out, keeps the loop running, pins at most its share, and other keys keep reading', async () => {
    const gate = new ReadGate('stall-test', 2, 1);
    const file = join(mnt.path, 'package.json');
    const normal = join(dir, 'normal.json');
    writeFileSync(normal, '{}');
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    try {
      const stuck = await readUserFile(file, { maxBytes: 1024, gate, key: 1000, timeoutMs: 300 });
      expect(stuck).toEqual({ ok: false, reason: 'timeout' });
      // The loop ran while the read was stuck in the kernel.
      expect(ticks).toBeGreaterThan(0);
      // The call is still stuck in its pool thread and keeps its slot: user 1000 has no other.
      expect(gate.pending).toBe(1);
      const second = await readUserFile(normal, { maxBytes: 1024, gate, key: 1000, timeoutMs: 200 });
      expect(second).toEqual({ ok: false, reason: 'busy' });
      // Another user is not affected.
      const other = await readUserFile(normal, { maxBytes: 1024, gate, key: 1001, timeoutMs: 5000 });
      expect(other).toMatchObject({ ok: true });

      // Many users stalling at once: never more than USER_IO_MAX_PINNED pool threads, and one
      // key never more than its share, across gates.
      const wide = new ReadGate('stall-wide', 100, 100);
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          realpathUserPath(join(mnt.path, `d${i}`), wide, i % 2 === 0 ? 'a' : `k${i}`, 300),
        ),
      );
      expect(results.every((r) => !r.ok && (r.reason === 'timeout' || r.reason === 'busy'))).toBe(true);
      expect(ReadGate.pendingAll).toBeLessThanOrEqual(USER_IO_MAX_PINNED);
      expect(wide.pending + gate.pending).toBe(ReadGate.pendingAll);
      expect(USER_IO_MAX_PINNED_PER_KEY).toBeLessThan(USER_IO_MAX_PINNED);

      // The hasher survives the same mount: null in time, counted.
      const h = new ExeHasher({ timeoutMs: 300 });
      expect(await h.hash(join(mnt.path, 'exe'), 2000)).toBeNull();
      expect(h.counts.timeout + h.counts.busy).toBe(1);
    } finally {
      clearInterval(ticker);
      await mnt.release();
    }
    // Released: the stuck calls fail and every slot comes back.
    await waitFor(() => ReadGate.pendingAll === 0, 'every pinned slot released');
    expect(gate.pending).toBe(0);
  });
});

describe('ReadGate admission', () => {
  /** A call that settles only when the test says so (the gate's own logic, no file involved). */
  function controlled(): { call: () => Promise<string>; settle: () => void } {
    let settle: () => void = () => undefined;
    const done = new Promise<string>((resolve) => {
      settle = () => resolve('done');
    });
    return { call: () => done, settle };
  }

  it('queues a caller until a slot frees, lets other keys pass a key at its limit, refuses at the deadline', async () => {
    const gate = new ReadGate('admission', 2, 1);
    const a1 = controlled();
    const first = gate.run('a', 60_000, a1.call);
    expect(gate.pending).toBe(1);
    // Same key, at its limit: waits in line.
    const a2 = controlled();
    const second = gate.run('a', 60_000, a2.call);
    expect(gate.queued).toBe(1);
    // Another key passes it.
    const b = await gate.run('b', 60_000, async () => 'b');
    expect(b).toEqual({ admitted: true, timedOut: false, value: 'b' });
    // A caller whose deadline passes in line is refused without running.
    let ran = false;
    const late = await gate.run('a', 20, async () => {
      ran = true;
      return 'x';
    });
    expect(late).toEqual({ admitted: false });
    expect(ran).toBe(false);
    expect(gate.counts.busy).toBe(1);
    // The first call settles: the waiting caller gets the slot, in order.
    a1.settle();
    expect(await first).toEqual({ admitted: true, timedOut: false, value: 'done' });
    await waitFor(() => gate.pending === 1 && gate.queued === 0, 'the waiting caller admitted');
    a2.settle();
    expect(await second).toEqual({ admitted: true, timedOut: false, value: 'done' });
    expect(gate.pending).toBe(0);
  });

  it('a call past its deadline keeps its slot until it settles', async () => {
    const gate = new ReadGate('deadline', 1, 1);
    const c = controlled();
    expect(await gate.run('k', 20, c.call)).toEqual({ admitted: true, timedOut: true });
    expect(gate.counts.timeout).toBe(1);
    expect(gate.pending).toBe(1);
    expect(await gate.run('other', 20, async () => 1)).toEqual({ admitted: false });
    c.settle();
    await waitFor(() => gate.pending === 0, 'the slot back');
    expect(await gate.run('other', 1000, async () => 1)).toEqual({
      admitted: true,
      timedOut: false,
      value: 1,
    });
  });

  it('failFast: refused at once while its key is held by a call past its deadline; waits as usual otherwise', async () => {
    const gate = new ReadGate('fail-fast', 2, 1);
    const held = controlled();
    const inLine = gate.run('k', 60_000, held.call);
    // held, not overdue: a failFast caller waits in line as any other (and gets the slot)
    const waiting = gate.run('k', 60_000, async () => 'second', { failFast: true });
    expect(gate.queued).toBe(1);
    held.settle();
    await inLine;
    expect(await waiting).toMatchObject({ admitted: true, value: 'second' });
    // overdue: refused at once, however long its own deadline, and counted
    const stuck = controlled();
    expect(await gate.run('k', 20, stuck.call)).toEqual({ admitted: true, timedOut: true });
    const t0 = performance.now();
    expect(await gate.run('k', 60_000, async () => 1, { failFast: true })).toEqual({ admitted: false });
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(gate.counts).toMatchObject({ stuck: 1, timeout: 1 });
    // another key is not held back by it
    expect(await gate.run('other', 1000, async () => 2, { failFast: true })).toMatchObject({ value: 2 });
    // once the stuck call returned, the key is admitted again
    stuck.settle();
    await waitFor(() => gate.pending === 0, 'the slot back');
    expect(await gate.run('k', 1000, async () => 3, { failFast: true })).toMatchObject({ value: 3 });
  });
});
