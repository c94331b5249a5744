/**
 * Content markers of the files an interpreter was told to run (src/sensors/script-markers.ts):
 * which command-line arguments are files (table-driven), and the scan of real files as the
 * process's user — relative paths against the working directory, links followed, a FIFO or a
 * file that user may not read never scanned, at most MAX_SCRIPT_FILES files.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { markerAutomaton, markerKey, parseMarker } from '../../../src/policy/content-markers.js';
import { ContentMarkerScanner } from '../../../src/sensors/content-markers.js';
import {
  MAX_SCRIPT_FILES,
  type ScriptProcess,
  scanScriptFiles,
} from '../../../src/sensors/script-markers.js';
import { loadedFileArguments, ScriptPackageResolver } from '../../../src/sensors/script-package.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';

describe('loadedFileArguments', () => {
  const table: [string, string[], string[]][] = [
    ['/usr/bin/node', ['node', 'cli.js', '--require', '/x.js'], ['cli.js']],
    ['/usr/bin/node', ['node', '--require', '/a/b.js', '-e', 'code'], ['/a/b.js']],
    ['/usr/bin/node', ['node', '-r', './b.js', 'main.js'], ['./b.js', 'main.js']],
    ['/usr/bin/node', ['node', '--import=../c.mjs', '-p', '1'], ['../c.mjs']],
    ['/usr/bin/node', ['node', '--import', 'file:///tmp/d.mjs', '-e', '1'], ['/tmp/d.mjs']],
    [
      '/usr/bin/node',
      ['node', '--loader', '/l.mjs', '--experimental-loader=./m.mjs', 's.js'],
      ['/l.mjs', './m.mjs', 's.js'],
    ],
    // Node keeps reading its options after -e: the preload still runs.
    ['/usr/bin/node', ['node', '-e', 'code', '-r', '/late.js'], ['/late.js']],
    // A bare specifier is a package in node_modules, a data: URL is no file.
    [
      '/usr/bin/node',
      ['node', '-r', 'dotenv/config', '--import', 'data:text/javascript,1', 'x.js'],
      ['x.js'],
    ],
    // After `--` or the script, everything is the script's.
    ['/usr/bin/node', ['node', '--', 'x.js', '-r', '/y.js'], ['x.js']],
    ['/usr/bin/node', ['node', '-e', 'code'], []],
    ['/usr/bin/node', ['node', '-'], []],
    ['/usr/bin/python3', ['python3', '-u', 'tool.py'], ['tool.py']],
    ['/usr/bin/python3', ['python3', '-c', 'code'], []],
    [
      '/usr/bin/node',
      ['node', '-r', '/1.js', '-r', '/2.js', '-r', '/3.js', '-r', '/4.js', '-r', '/5.js', 's.js'],
      ['/1.js', '/2.js', '/3.js', '/4.js'],
    ],
  ];
  it.each(table)('%s %j → %j', (exe, argv, want) => {
    expect(loadedFileArguments(exe, argv, MAX_SCRIPT_FILES)).toEqual(want);
  });
});

describe('scanScriptFiles on real files', () => {
  const dir = tempDir('tgsc-sm-');
  // Searchable by everyone, so only the file's own mode (or a closed directory below) keeps a user out.
  chmodSync(dir, 0o755);
  const run = Date.now().toString(36);
  const marks = [1, 2, 3, 4, 5, 6].map((i) => `tgsc-unit-marker-${i}-${run}`);
  const automaton = markerAutomaton(marks.map((m) => parseMarker(m) as Buffer));
  const key = (i: number) => markerKey(Buffer.from(marks[i - 1] as string));
  const file = (name: string, ...nums: number[]): string => {
    const p = join(dir, name);
    writeFileSync(p, `${nums.map((n) => `// ${marks[n - 1]}`).join('\n')}\n`);
    return p;
  };
  const proc = (argv: string[], over: Partial<ScriptProcess> = {}): ScriptProcess => ({
    exe: '/usr/bin/node',
    name: 'node',
    argv,
    uid: 0,
    cwd: () => dir,
    groups: () => [0],
    ...over,
  });
  const scan = (p: ScriptProcess) =>
    scanScriptFiles('/usr/bin/node', p, new ScriptPackageResolver(), new ContentMarkerScanner(), automaton);

  it('unites the markers of the preloads and of the relative script (against the cwd)', async () => {
    const pre = file('pre.js', 1);
    file('main.js', 2);
    const r = await scan(proc(['node', '--require', pre, './main.js']));
    expect(r.files).toBe(2);
    expect([...(r.found ?? [])].sort()).toEqual([key(1), key(2)].sort());
  });

  it('follows a link to the script like the kernel (the link is not what node runs)', async () => {
    const target = file('target.js', 3);
    const link = join(dir, 'link.js');
    symlinkSync(target, link);
    const r = await scan(proc(['node', link]));
    expect(r.found).toEqual([key(3)]);
  });

  it('never reads a FIFO named as the script (answers at once, nothing found)', async () => {
    const fifo = join(dir, 'fifo.js');
    execFileSync('mkfifo', [fifo]);
    const r = await scan(proc(['node', fifo]));
    expect(r).toEqual({ found: null, files: 0, stalled: false });
  });

  it.runIf(process.getuid?.() === 0)('does not scan a file the process user may not read', async () => {
    const secret = file('secret.js', 4);
    chmodSync(secret, 0o600);
    const r = await scan(proc(['node', secret], { uid: 65534, groups: () => [65534] }));
    expect(r).toEqual({ found: null, files: 1, stalled: false });
    // The same file, for root: found.
    expect((await scan(proc(['node', secret]))).found).toEqual([key(4)]);
  });

  it.runIf(process.getuid?.() === 0)(
    'does not look behind a directory the process user may not search',
    async () => {
      const closed = join(dir, 'closed');
      mkdirSync(closed, { mode: 0o700 });
      const inner = join(closed, 'x.js');
      writeFileSync(inner, `// ${marks[5]}\n`, { mode: 0o644 });
      const r = await scan(proc(['node', inner], { uid: 65534, groups: () => [65534] }));
      expect(r).toEqual({ found: null, files: 0, stalled: false });
    },
  );

  it("never follows /dev/fd/N or /proc/self/… (they would be guardd's own descriptors)", async () => {
    // A marked file open in this process (which plays guardd here): reached only through its own fd.
    const fd = openSync(file('mine.js', 5), 'r');
    try {
      const r = await scan(proc(['node', '--require', `/proc/self/fd/${fd}`, `/dev/fd/${fd}`]));
      expect(r).toEqual({ found: null, files: 0, stalled: false });
    } finally {
      closeSync(fd);
    }
  });

  it(`scans at most ${MAX_SCRIPT_FILES} files per process`, async () => {
    const pre = [1, 2, 3, 4, 5].map((n) => file(`p${n}.js`, n));
    const argv = ['node', ...pre.flatMap((p) => ['-r', p]), file('s.js', 6)];
    const r = await scan(proc(argv));
    expect(r.files).toBe(MAX_SCRIPT_FILES);
    expect([...(r.found ?? [])].sort()).toEqual([1, 2, 3, 4].map(key).sort());
  });
});

describe('scanScriptFiles: what root reaches that the user does not', () => {
  const dir = tempDir('tgr2-sm-');
  chmodSync(dir, 0o755);
  const run = `${Date.now().toString(36)}${process.pid}`;
  const marks = [1, 2].map((i) => `tgr2-review-marker-${i}-${run}`);
  const automaton = markerAutomaton(marks.map((m) => parseMarker(m) as Buffer));
  const nobody = { uid: 65534, groups: [65534] };

  it.runIf(process.getuid?.() === 0)(
    "never scans /proc reached through the user's own link (another user's process maps, guardd's own files)",
    async () => {
      // A root process whose memory map names a marked path: /proc/<pid>/maps is 0444, yet the
      // kernel lets only a ptrace-capable reader open it; root's open must not answer for the user.
      const prog = join(dir, `${marks[0]}-sleep`);
      copyFileSync('/bin/sleep', prog);
      chmodSync(prog, 0o755);
      const child = spawn(prog, ['60'], { stdio: 'ignore' });
      try {
        const maps = `/proc/${child.pid}/maps`;
        await waitFor(
          () => readFileSync(maps, 'utf8').includes(marks[0] as string),
          'the child mapped its program',
        );
        const link = join(dir, 'peek.js');
        symlinkSync(maps, link);
        const proc: ScriptProcess = {
          exe: '/usr/bin/node',
          name: 'node',
          argv: ['node', link],
          uid: nobody.uid,
          cwd: () => dir,
          groups: () => nobody.groups,
        };
        const r = await scanScriptFiles(
          '/usr/bin/node',
          proc,
          new ScriptPackageResolver(),
          new ContentMarkerScanner(),
          automaton,
        );
        expect(r).toEqual({ found: null, files: 0, stalled: false });
      } finally {
        child.kill('SIGKILL');
      }
    },
  );

  it.runIf(process.getuid?.() === 0 && process.platform === 'linux')(
    'asUser: a path whose directory became a link after it was located is not read (the swap race)',
    async () => {
      // What the user cannot reach: a world-readable marked file in a closed directory.
      const closed = join(dir, 'closed');
      mkdirSync(closed, { mode: 0o700 });
      writeFileSync(join(closed, 'x.js'), `// ${marks[1]}\n`, { mode: 0o644 });
      // The located path was <dir>/mine/x.js (a real directory then); the user swapped `mine` for
      // a link to the closed directory before root opened it.
      symlinkSync(closed, join(dir, 'mine'));
      const r = await new ContentMarkerScanner().scan(
        join(dir, 'mine', 'x.js'),
        automaton,
        65534,
        undefined,
        nobody,
      );
      expect(r.found).toBeNull();
      expect(r.outcome).toBe('unreadable');
    },
  );
});
