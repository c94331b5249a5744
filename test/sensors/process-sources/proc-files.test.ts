/** Parsing /proc/<pid>/stat (hostile comm), decoding tty_nr, and the real /proc readers. */
import { describe, expect, it } from 'vitest';
import {
  parseStat,
  readChildren,
  readCmdline,
  readLastPid,
  readLink,
  readStat,
  readUid,
  ttyPath,
} from '../../../src/sensors/process-sources/proc-files.js';

const noImage = '0:0:0:0';
const tail = 'S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10 18446744073709551615';

describe('parseStat', () => {
  const table: [string, string, ReturnType<typeof parseStat>][] = [
    [
      'plain',
      `42 (bash) ${tail}`,
      {
        pid: 42,
        comm: 'bash',
        state: 'S',
        ppid: 1,
        ttyNr: 0,
        flags: 4194560,
        startTime: 98765,
        image: noImage,
      },
    ],
    [
      'spaces and parens in comm',
      `42 (a) b (c) ${tail}`,
      {
        pid: 42,
        comm: 'a) b (c',
        state: 'S',
        ppid: 1,
        ttyNr: 0,
        flags: 4194560,
        startTime: 98765,
        image: noImage,
      },
    ],
    [
      'empty comm',
      `42 () ${tail}`,
      { pid: 42, comm: '', state: 'S', ppid: 1, ttyNr: 0, flags: 4194560, startTime: 98765, image: noImage },
    ],
    [
      'program image fields (start_code, end_code, start_stack, arg_start)',
      `42 (node) ${tail} 94000000000000 94000000100000 140720000000000 ${'0 '.repeat(19)}140720000001000 140720000001100 1 2 0`,
      {
        pid: 42,
        comm: 'node',
        state: 'S',
        ppid: 1,
        ttyNr: 0,
        flags: 4194560,
        startTime: 98765,
        image: '94000000000000:94000000100000:140720000000000:140720000001000',
      },
    ],
    [
      'a newline ends the line, an odd image field reads as 0',
      `42 (node) ${tail} 94000000000000 x-1 140720000000000 ${'0 '.repeat(19)}140720000001000\n`,
      {
        pid: 42,
        comm: 'node',
        state: 'S',
        ppid: 1,
        ttyNr: 0,
        flags: 4194560,
        startTime: 98765,
        image: '94000000000000:0:140720000000000:140720000001000',
      },
    ],
    [
      'exactly the 20 fields up to start time',
      `42 (bash) ${tail.split(' ').slice(0, 20).join(' ')}\n`,
      {
        pid: 42,
        comm: 'bash',
        state: 'S',
        ppid: 1,
        ttyNr: 0,
        flags: 4194560,
        startTime: 98765,
        image: noImage,
      },
    ],
    ['19 fields', `42 (bash) ${tail.split(' ').slice(0, 19).join(' ')}`, null],
    ['no parens', `42 bash ${tail}`, null],
    ['too few fields', '42 (bash) S 1 42', null],
    ['non-numeric start time', `42 (bash) ${tail.replace('98765', 'x')}`, null],
    ['negative pid', `-4 (bash) ${tail}`, null],
    ['empty', '', null],
  ];
  for (const [name, text, expected] of table) {
    it(name, () => expect(parseStat(text)).toEqual(expected));
  }
});

describe('ttyPath', () => {
  const table: [number, string | null][] = [
    [0, null],
    [34816, '/dev/pts/0'], // major 136, minor 0
    [34819, '/dev/pts/3'],
    [(137 << 8) | 5, '/dev/pts/261'], // second pts major
    [(136 << 8) | (1 << 20), '/dev/pts/256'], // minor's high bits (minor 256 is stored as 1 << 20)
    [(4 << 8) | 1, '/dev/tty1'],
    [(4 << 8) | 65, '/dev/ttyS1'],
    [(5 << 8) | 0, null], // /dev/tty (unknown driver) is not a target
    [-1, null],
  ];
  for (const [nr, expected] of table) it(`${nr} → ${expected}`, () => expect(ttyPath(nr)).toBe(expected));
});

describe.runIf(process.platform === 'linux')('real /proc readers', () => {
  it('read this process', () => {
    const st = readStat('/proc', process.pid);
    expect(st?.pid).toBe(process.pid);
    expect(st?.ppid).toBe(process.ppid);
    expect(readUid('/proc', process.pid)).toBe(process.getuid?.());
    expect(readCmdline('/proc', process.pid)?.argv[0]).toContain('node');
    expect(readLink('/proc', process.pid, 'exe')).toBe(process.execPath);
    expect(readLink('/proc', process.pid, 'cwd')).toBe(process.cwd());
    expect(readLastPid('/proc')).toBeGreaterThan(0);
    expect(Array.isArray(readChildren('/proc', process.pid))).toBe(true);
  });

  it('return null for a pid that does not exist', () => {
    expect(readStat('/proc', 2 ** 30)).toBeNull();
    expect(readCmdline('/proc', 2 ** 30)).toBeNull();
    expect(readLink('/proc', 2 ** 30, 'exe')).toBeNull();
    expect(readChildren('/proc', 2 ** 30)).toBeNull();
  });
});
