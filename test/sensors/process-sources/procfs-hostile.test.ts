/**
 * The procfs source against a fake /proc tree full of hostile entries: malformed stat, files
 * missing (a process that exited mid-scan), a directory where a file should be (unreadable),
 * enormous and binary command lines, zombies, kernel threads. Each is skipped and counted or read
 * partially and counted; nothing throws. Also: only new pids are read, pid reuse and exec are
 * noticed, and the loadavg shortcut skips listing when no pid was allocated.
 */
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { CMDLINE_MAX_BYTES } from '../../../src/sensors/process-sources/proc-files.js';
import {
  ProcfsSource,
  SWEEP_MS,
  YOUNG_RECHECK_MS,
} from '../../../src/sensors/process-sources/procfs-source.js';
import { tempDir } from '../../helpers/tmp.js';

/** A stat line: pid (comm) state ppid pgrp session tty_nr tpgid flags … starttime(22) … */
function stat(
  pid: number,
  comm: string,
  o: { state?: string; ppid?: number; tty?: number; flags?: number; start?: number } = {},
): string {
  const f = [o.state ?? 'S', o.ppid ?? 1, pid, pid, o.tty ?? 0, -1, o.flags ?? 4194304];
  // fields 10..21: minflt … itrealvalue (12 values), then starttime (22), vsize …
  const middle = Array.from({ length: 12 }, () => 0);
  return `${pid} (${comm}) ${[...f, ...middle, o.start ?? 1000 + pid, 123456, 789].join(' ')}\n`;
}

function proc(root: string, pid: number, files: Record<string, string | Buffer | null>, exe?: string): void {
  const d = join(root, String(pid));
  mkdirSync(d, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    if (content === null) mkdirSync(join(d, name), { recursive: true });
    else writeFileSync(join(d, name), content);
  }
  if (exe) symlinkSync(exe, join(d, 'exe'));
  symlinkSync('/tmp', join(d, 'cwd'));
}

const status = (uid: number): string =>
  `Name:\tx\nUmask:\t0022\nState:\tS\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\nGid:\t0\t0\t0\t0\n`;

describe('ProcfsSource on a hostile fake /proc', () => {
  let root: string;
  let now: number;
  let source: ProcfsSource;

  beforeEach(() => {
    root = join(tempDir('tg-proc-'), 'proc');
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 1/100 500\n');
    mkdirSync(join(root, 'self'));
    mkdirSync(join(root, 'sys'));
    now = 0;
    source = new ProcfsSource({ procRoot: root, now: () => now });
  });

  it('reads good entries, counts every hostile one, never throws', async () => {
    // 34819 = major 136, minor 3 → /dev/pts/3
    proc(
      root,
      100,
      { stat: stat(100, 'a) b (c', { tty: 34819 }), status: status(1000), cmdline: 'tool\0--flag\0x y\0' },
      '/usr/bin/sleep',
    );
    proc(root, 101, { stat: 'garbage without parens', status: status(0), cmdline: '' });
    proc(root, 102, { stat: stat(102, 'gone') }); // status/cmdline vanished: exited mid-scan
    proc(
      root,
      103,
      { stat: stat(103, 'huge'), status: status(0), cmdline: Buffer.alloc(CMDLINE_MAX_BYTES * 3, 0x41) },
      '/bin/true',
    );
    proc(
      root,
      104,
      {
        stat: stat(104, 'bin'),
        status: status(0),
        cmdline: Buffer.from([0x01, 0xff, 0xfe, 0x00, 0x41, 0x00]),
      },
      '/bin/true',
    );
    proc(root, 105, { stat: null }); // a directory where the file should be: unreadable
    proc(root, 106, {}); // empty: exited before anything was read
    proc(root, 107, { stat: stat(107, 'zomb', { state: 'Z' }), status: status(0), cmdline: '' });
    proc(root, 108, {
      stat: stat(108, 'kworker/0:1', { flags: 0x00200000, ppid: 2 }),
      status: status(0),
      cmdline: '',
    });
    proc(root, 109, { stat: stat(999, 'liar'), status: status(0), cmdline: 'x\0' });
    proc(root, 110, { stat: '110 (short) S 1\n', status: status(0), cmdline: 'x\0' });
    proc(root, 111, { stat: stat(111, 'nouid'), status: 'Name:\tx\n', cmdline: 'x\0' });
    // exe is not a readable link (EINVAL here, EACCES for another user's process): read without exe.
    proc(root, 112, { stat: stat(112, 'noexe'), status: status(5), cmdline: 'noexe\0', exe: 'not a link' });

    const out = await source.poll();
    const byPid = new Map(out.map((r) => [r.pid, r]));
    expect([...byPid.keys()].sort()).toEqual([100, 103, 104, 112]);
    expect(byPid.get(100)).toEqual({
      pid: 100,
      ppid: 1,
      startTime: 1100,
      name: 'a) b (c',
      exe: '/usr/bin/sleep',
      argv: ['tool', '--flag', 'x y'],
      uid: 1000,
      tty: '/dev/pts/3',
      image: expect.any(String),
    });
    expect(byPid.get(103)?.argv.join('').length).toBe(CMDLINE_MAX_BYTES);
    expect(byPid.get(104)?.argv.length).toBe(2);
    expect(byPid.get(112)?.exe).toBeNull();
    expect(source.skipped).toEqual({
      malformed: 4, // 101 garbage, 109 pid mismatch, 110 short, 111 no Uid
      exited: 3, // 102 status gone, 106 empty, 107 zombie
      unreadable: 1, // 105
      cmdline_truncated: 1,
      cmdline_binary: 1,
      exe_unreadable: 1,
    });
  });

  it('reads only new pids; forgets dead ones; notices pid reuse at the sweep and exec while young', async () => {
    proc(root, 200, { stat: stat(200, 'old'), status: status(0), cmdline: 'old\0' }, '/bin/true');
    expect((await source.poll()).map((r) => r.pid)).toEqual([200]);

    // A known pid is not read again: changing its cmdline reports nothing.
    writeFileSync(join(root, '200', 'cmdline'), 'changed\0');
    writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 1/100 501\n');
    now += 10;
    expect(await source.poll()).toEqual([]);

    // No pid allocated (loadavg unchanged): /proc is not even listed, so a new entry waits.
    proc(root, 201, { stat: stat(201, 'sh'), status: status(0), cmdline: 'sh\0-c\0x\0' }, '/bin/sh');
    now += 10;
    expect(await source.poll()).toEqual([]);
    expect(source.details().shortcuts).toBe(1);

    writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 1/100 502\n');
    now += 10;
    expect((await source.poll()).map((r) => r.name)).toEqual(['sh']);

    // Young 201 exec's another program (comm changes): reported again as the new program.
    writeFileSync(join(root, '201', 'stat'), stat(201, 'tgbanned'));
    writeFileSync(join(root, '201', 'cmdline'), 'tgbanned\0');
    now += 10;
    const exec = await source.poll();
    expect(exec.map((r) => [r.pid, r.name, r.argv[0]])).toEqual([[201, 'tgbanned', 'tgbanned']]);

    // Old (not young) 200's pid is reused by a different process: seen at the next sweep.
    writeFileSync(join(root, '200', 'stat'), stat(200, 'reused', { start: 99999 }));
    now += YOUNG_RECHECK_MS + SWEEP_MS;
    const swept = await source.poll();
    expect(swept.map((r) => [r.pid, r.name, r.startTime])).toEqual([[200, 'reused', 99999]]);

    // Dead pids are forgotten: a later process with that pid is new.
    rmSync(join(root, '201'), { recursive: true });
    writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 1/100 503\n');
    now += 10;
    expect(await source.poll()).toEqual([]);
    expect(source.details().known).toBe(1);
    proc(
      root,
      201,
      { stat: stat(201, 'again', { start: 5 }), status: status(0), cmdline: 'again\0' },
      '/bin/true',
    );
    writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 1/100 504\n');
    now += 10;
    expect((await source.poll()).map((r) => r.name)).toEqual(['again']);

    // reset(): everything is reported again (a new policy may ban what already runs).
    source.reset();
    expect((await source.poll()).map((r) => r.pid).sort()).toEqual([200, 201]);
  });

  it('notices an exec that keeps comm (program image moved), not a zombie, at the sweep too', async () => {
    // Fields 23..25 (vsize, rss, rsslim), then 26 start_code, 27 end_code, 28 start_stack,
    // 29..47, 48 arg_start: what changes at every exec.
    const withImage = (pid: number, state: string, code: number, argStart: number): string =>
      `${stat(pid, 'node', { state }).trimEnd()} 0 ${code} ${code + 4096} ${argStart - 512} ${'0 '.repeat(19)}${argStart} ${argStart + 64} 0 0 0\n`;
    proc(
      root,
      300,
      { stat: withImage(300, 'S', 1000, 9000), status: status(0), cmdline: 'node\0a.js\0' },
      '/bin/true',
    );
    expect((await source.poll()).map((r) => r.argv)).toEqual([['node', 'a.js']]);
    now += 10;
    expect(await source.poll()).toEqual([]);
    // Same comm, new image: the young re-check reports it again.
    writeFileSync(join(root, '300', 'stat'), withImage(300, 'S', 2000, 7000));
    writeFileSync(join(root, '300', 'cmdline'), 'node\0banned.js\0');
    now += 10;
    expect((await source.poll()).map((r) => r.argv)).toEqual([['node', 'banned.js']]);
    // An exiting process's image reads as zeros: that is not an exec.
    writeFileSync(join(root, '300', 'stat'), withImage(300, 'Z', 0, 0));
    now += 10;
    expect(await source.poll()).toEqual([]);
    // No longer young: the sweep notices a late exec with the same comm.
    writeFileSync(join(root, '300', 'stat'), withImage(300, 'S', 3000, 5000));
    writeFileSync(join(root, '300', 'cmdline'), 'node\0late.js\0');
    now += YOUNG_RECHECK_MS + SWEEP_MS;
    expect((await source.poll()).map((r) => r.argv)).toEqual([['node', 'late.js']]);
  });

  it('forgets a dead pid even when another vanished mid-read in the same listing', async () => {
    proc(root, 400, { stat: stat(400, 'old'), status: status(0), cmdline: 'old\0' }, '/bin/true');
    expect((await source.poll()).map((r) => r.pid)).toEqual([400]);
    // The clock stands still, so no sweep slice runs and only the listing can forget 400.
    // 400 dies; 401 is listed but gone before its stat could be read: the counts balance out.
    rmSync(join(root, '400'), { recursive: true });
    mkdirSync(join(root, '401'));
    writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 1/100 501\n');
    expect(await source.poll()).toEqual([]);
    // A new process gets pid 400: it is new at once, not hidden behind a stale entry.
    rmSync(join(root, '401'), { recursive: true });
    proc(
      root,
      400,
      { stat: stat(400, 'tgbanned', { start: 7777 }), status: status(0), cmdline: 'x\0' },
      '/bin/true',
    );
    writeFileSync(join(root, 'loadavg'), '0.00 0.00 0.00 1/100 502\n');
    expect((await source.poll()).map((r) => [r.pid, r.name])).toEqual([[400, 'tgbanned']]);
  });

  it('survives a /proc that cannot be listed at all', async () => {
    const missing = new ProcfsSource({ procRoot: join(root, 'nope') });
    expect(await missing.poll()).toEqual([]);
    expect(missing.cwd(1)).toBeNull();
  });
});
