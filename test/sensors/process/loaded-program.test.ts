/**
 * loaded-program.ts: which mapping of a process running the dynamic loader directly is the program
 * (pure parts, on maps texts shaped like the kernel's). The loader's names and argument parsing:
 * dynamic-loader.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { executableMappings, pickProgram } from '../../../src/sensors/process-sources/loaded-program.js';

const LD = '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2';
const maps = (extra: string[]): string =>
  [
    `55d0c0000000-55d0c0001000 r--p 00000000 fd:00 1001 /home/u/tool`,
    `55d0c0001000-55d0c0005000 r-xp 00001000 fd:00 1001 /home/u/tool`,
    ...extra,
    `7f0000000000-7f0000020000 r-xp 00002000 fd:00 2002 /usr/lib/x86_64-linux-gnu/libc.so.6`,
    `7f1000000000-7f1000020000 r-xp 00001000 fd:00 3003 ${LD}`,
    `7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]`,
    `7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0 [vdso]`,
    '',
  ].join('\n');

describe('dynamic loader run directly', () => {
  it('lists executable file mappings once per file, not anonymous ones', () => {
    expect(executableMappings(maps([])).map((m) => m.path)).toEqual([
      '/home/u/tool',
      '/usr/lib/x86_64-linux-gnu/libc.so.6',
      LD,
    ]);
    expect(executableMappings(maps([]))[0]?.range).toBe('55d0c0001000-55d0c0005000');
  });

  it('picks the argument resolved against cwd when it is mapped', () => {
    expect(pickProgram(executableMappings(maps([])), LD, [LD, './tool'], '/home/u')?.path).toBe(
      '/home/u/tool',
    );
    expect(pickProgram(executableMappings(maps([])), LD, [LD, '/home/u/x/../tool'], null)?.path).toBe(
      '/home/u/tool',
    );
  });

  it('falls back to the one non-library mapping (a symlink argument), and to nothing when two compete', () => {
    const m = executableMappings(maps([]));
    expect(pickProgram(m, LD, [LD, './link-to-tool'], '/home/u')?.path).toBe('/home/u/tool');
    const two = executableMappings(
      maps([`7e0000000000-7e0000001000 r-xp 00000000 fd:00 4004 /home/u/pre.so`]),
    );
    expect(pickProgram(two, LD, [LD, './link-to-tool'], '/home/u')).toBeNull();
    expect(pickProgram(two, LD, [LD, './tool'], '/home/u')?.path).toBe('/home/u/tool');
  });

  it('leaves ldd alone (--list, --verify map the tool without running it)', () => {
    const m = executableMappings(maps([]));
    expect(pickProgram(m, LD, [LD, '--list', './tool'], '/home/u')).toBeNull();
    expect(pickProgram(m, LD, [LD, '--verify', './tool'], '/home/u')).toBeNull();
  });
});
