/**
 * The eslogger and Windows start-trace parsers against streams built from the documented formats
 * (bench/lib/exec-stream-fixtures.js): every field read, unknown fields ignored, the version gate, unknown
 * events and shapes counted, truncated lines, huge argv, non-UTF-8 paths (decoded as the source
 * decodes its stdout), Windows command-line splitting, and the shipped PowerShell program.
 */
import { describe, expect, it } from 'vitest';
import {
  esloggerExecLine,
  esloggerExitLine,
  esloggerForkLine,
  type FixtureExec,
  filetime,
  windowsCommandLine,
  windowsStartLine,
} from '../../../bench/lib/exec-stream-fixtures.js';
import {
  ARGV_MAX_CHARS,
  ARGV_MAX_ITEMS,
  parseEsloggerLine,
  startTimeMs,
} from '../../../src/sensors/process-sources/eslogger-parser.js';
import type { StreamItem } from '../../../src/sensors/process-sources/exec-stream-source.js';
import {
  filetimeMs,
  parseWindowsStartLine,
  splitWindowsCommandLine,
} from '../../../src/sensors/process-sources/windows-start-parser.js';
import {
  powershellPath,
  WINDOWS_START_SCRIPT,
  windowsStartArgs,
} from '../../../src/sensors/process-sources/windows-start-source.js';

const START = Date.parse('2026-12-04T10:00:07.000Z');
const TEAM = 'ABCDE12345';
const exec: FixtureExec = {
  pid: 4242,
  ppid: 4200,
  uid: 501,
  exe: '/Users/bob/.local/share/tool/versions/2.0.1',
  argv: ['tool', '--print', 'hello world'],
  startMs: START,
  teamId: TEAM,
  signingId: 'com.vendor.tool',
  cdhash: 'A1B2C3D4E5F60718293A4B5C6D7E8F9012345678',
};

/** The rendered eslogger message, as a test may edit it. */
type EsMessage = Parameters<NonNullable<Parameters<typeof esloggerExecLine>[1]>>[0];

/** How ExecStreamSource decodes a line's bytes before parsing. */
const decode = (b: Buffer) => new TextDecoder('utf-8', { fatal: false }).decode(b);

/** `text`'s bytes with every `marker` replaced by raw `bytes` (invalid UTF-8 on purpose). */
function withBytes(text: string, marker: string, bytes: number[]): Buffer {
  const parts = text.split(marker).map((p) => Buffer.from(p));
  const out: Buffer[] = [];
  parts.forEach((p, i) => {
    if (i > 0) out.push(Buffer.from(bytes));
    out.push(p);
  });
  return Buffer.concat(out);
}

function execOf(item: StreamItem) {
  if (item.kind !== 'exec') throw new Error(`not an exec: ${JSON.stringify(item)}`);
  return item;
}

describe('eslogger parser', () => {
  it('reads every fact of an exec (es_process_t of the target, args of es_event_exec_t)', () => {
    const item = execOf(parseEsloggerLine(esloggerExecLine(exec)));
    expect(item.notes).toBeUndefined();
    expect(item.raw).toEqual({
      pid: 4242,
      ppid: 4200,
      // start_time has sub-second digits; the identity ps reports (lstart) has whole seconds.
      startTime: START,
      name: '2.0.1',
      exe: exec.exe,
      argv: exec.argv,
      uid: 501,
      tty: '/dev/ttys003',
      signing: {
        teamId: TEAM,
        signingId: 'com.vendor.tool',
        cdhash: 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678',
        platformBinary: false,
      },
    });
  });

  it('reads fork and exit, and ignores fields and events it does not know', () => {
    expect(parseEsloggerLine(esloggerForkLine(exec))).toEqual({ kind: 'fork', pid: 4242 });
    expect(parseEsloggerLine(esloggerExitLine(exec))).toEqual({ kind: 'exit', pid: 4242 });
    const extra = esloggerExecLine(exec, (m) => {
      m.future_top = { a: [1, 2] };
      m.event.exec.future_field = 'x';
      m.event.exec.target.future_process_field = { nested: true };
      m.event.exec.target.audit_token.future = 1;
    });
    expect(execOf(parseEsloggerLine(extra)).raw.exe).toBe(exec.exe);
    const open = esloggerExecLine(exec, (m) => {
      m.event = { open: { file: { path: '/etc/hosts' } } };
      m.event_type = 10;
    });
    expect(parseEsloggerLine(open)).toEqual({ kind: 'skip', reason: 'unknown_event', lost: false });
  });

  it('is version-gated on schema_version', () => {
    for (const v of [2, 0, '1', null]) {
      const line = esloggerExecLine(exec, (m) => {
        m.schema_version = v;
      });
      expect(parseEsloggerLine(line)).toMatchObject({ kind: 'unsupported' });
    }
    const missing = esloggerExecLine(exec, (m) => {
      delete m.schema_version;
    });
    expect(parseEsloggerLine(missing)).toEqual({ kind: 'unsupported', version: 'null' });
  });

  it('counts shapes it cannot read as lost (the source sweeps), never guesses', () => {
    const cases: [string, (m: EsMessage) => void][] = [
      ['no target', (m) => delete m.event.exec.target],
      ['no pid', (m) => delete m.event.exec.target.audit_token.pid],
      ['pid 0', (m) => (m.event.exec.target.audit_token.pid = 0)],
      ['pid as a string', (m) => (m.event.exec.target.audit_token.pid = '4242')],
      ['no executable path', (m) => delete m.event.exec.target.executable.path],
      ['event_type of another event', (m) => (m.event_type = 15)],
      ['exec not an object', (m) => (m.event.exec = [1])],
    ];
    for (const [what, mutate] of cases) {
      expect(parseEsloggerLine(esloggerExecLine(exec, mutate)), what).toEqual({
        kind: 'skip',
        reason: 'unknown_shape',
        lost: true,
      });
    }
    expect(parseEsloggerLine('[1,2]')).toEqual({ kind: 'skip', reason: 'unknown_shape', lost: true });
    expect(parseEsloggerLine('eslogger: something odd')).toEqual({
      kind: 'skip',
      reason: 'not_json',
      lost: true,
    });
  });

  it('reports a line cut short as truncated, at every cut point', () => {
    const line = esloggerExecLine(exec);
    for (let cut = 1; cut < line.length; cut += 97) {
      const item = parseEsloggerLine(line.slice(0, cut));
      expect(item.kind === 'skip' && item.lost, `cut at ${cut}`).toBe(true);
    }
    expect(parseEsloggerLine(line.slice(0, line.length - 1))).toEqual({
      kind: 'skip',
      reason: 'truncated',
      lost: true,
    });
  });

  it('caps a huge argv (count and characters) and says so', () => {
    const many = execOf(parseEsloggerLine(esloggerExecLine({ ...exec, argv: Array(100_000).fill('') })));
    expect(many.raw.argv.length).toBe(ARGV_MAX_ITEMS);
    expect(many.notes).toContain('cmdline_truncated');
    const long = execOf(
      parseEsloggerLine(esloggerExecLine({ ...exec, argv: ['tool', 'x'.repeat(1024 * 1024)] })),
    );
    expect(long.raw.argv[0]).toBe('tool');
    expect(long.raw.argv.join(' ').length).toBeLessThanOrEqual(ARGV_MAX_CHARS);
    expect(long.notes).toContain('cmdline_truncated');
    const odd = execOf(
      parseEsloggerLine(
        esloggerExecLine(exec, (m) => {
          m.event.exec.args = ['tool', 5, null, '--x'];
        }),
      ),
    );
    expect(odd.raw.argv).toEqual(['tool', '--x']);
    expect(odd.notes).toContain('args_not_strings');
  });

  it('keeps a non-UTF-8 or truncated path (replacement characters) and notes it', () => {
    // The path's bytes as they would reach the pipe: invalid UTF-8 (a Latin-1 é, a lone continuation byte).
    const marker = 'PATHBYTES';
    const text = esloggerExecLine({ ...exec, exe: `/Users/bob/${marker}/tool` });
    const item = execOf(parseEsloggerLine(decode(withBytes(text, marker, [0x63, 0x61, 0x66, 0xe9, 0x80]))));
    expect(item.raw.exe).toMatch(/^\/Users\/bob\/caf\uFFFD+\/tool$/);
    expect(item.raw.name).toBe('tool');
    expect(item.notes).toContain('path_not_utf8');
    const cut = execOf(
      parseEsloggerLine(
        esloggerExecLine(exec, (m) => {
          m.event.exec.target.executable.path_truncated = true;
        }),
      ),
    );
    expect(cut.notes).toEqual(['path_truncated']);
  });

  it('fills what is missing safely: no args → argv [path]; unsigned, zero cdhash, no start time', () => {
    const item = execOf(
      parseEsloggerLine(
        esloggerExecLine({ ...exec, teamId: null, signingId: null, cdhash: null }, (m) => {
          delete m.event.exec.args;
          delete m.event.exec.target.start_time;
          delete m.event.exec.target.ppid;
          m.event.exec.target.tty = null;
        }),
      ),
    );
    expect(item.raw).toMatchObject({
      argv: [exec.exe],
      startTime: 0,
      ppid: 4200, // from parent_audit_token
      tty: null,
      signing: { teamId: null, signingId: null, cdhash: null, platformBinary: false },
    });
    expect(item.notes).toEqual(['args_missing']);
    expect(startTimeMs('not a date')).toBe(0);
    expect(startTimeMs('2026-12-04T10:00:07.999999Z')).toBe(START);
  });
});

describe('Windows start-trace parser', () => {
  const win: FixtureExec = {
    ...exec,
    exe: 'C:\\Users\\bob\\AppData\\Local\\Programs\\Tool\\tool.exe',
    argv: ['C:\\Users\\bob\\AppData\\Local\\Programs\\Tool\\tool.exe', '--print', 'hello world'],
    startMs: START + 123,
  };

  it('reads a start line: pid, ppid, image name, FILETIME start, exe, command line split as Windows does', () => {
    const item = execOf(parseWindowsStartLine(windowsStartLine(win)));
    expect(item.notes).toBeUndefined();
    expect(item.raw).toEqual({
      pid: 4242,
      ppid: 4200,
      startTime: START + 123,
      name: 'tool.exe',
      exe: win.exe,
      argv: win.argv,
      uid: null,
      tty: null,
    });
    expect(filetimeMs(filetime(START))).toBe(START);
    expect(filetimeMs('99999999999999999999999')).toBe(0);
    expect(filetimeMs(-1)).toBe(0);
  });

  it.each([
    ['tool.exe a b', ['tool.exe', 'a', 'b']],
    ['"C:\\Program Files\\T\\t.exe" "two words"', ['C:\\Program Files\\T\\t.exe', 'two words']],
    ['t.exe a\\\\b "c\\"d" e\\\\\\"f', ['t.exe', 'a\\\\b', 'c"d', 'e\\"f']],
    ['t.exe "a\\\\" b', ['t.exe', 'a\\', 'b']],
    ['t.exe "say ""hi"""', ['t.exe', 'say "hi"']],
    ['t.exe  \t x   ', ['t.exe', 'x']],
    ['t.exe ""', ['t.exe', '']],
  ])('splits %j', (cmd, argv) => {
    expect(splitWindowsCommandLine(cmd)).toEqual(argv);
  });

  it('splits back what the fixtures quote (spaces, quotes, trailing backslashes)', () => {
    const argv = ['C:\\a b\\t.exe', 'x y', 'q"uote', 'dir\\', 'dir with space\\', '', 'a\\\\"b'];
    expect(splitWindowsCommandLine(windowsCommandLine(argv))).toEqual(argv);
  });

  it('keeps the image name when the process exited before its path and command line were read', () => {
    const item = execOf(parseWindowsStartLine(windowsStartLine(win, { exe: null, cmd: null })));
    expect(item.raw).toMatchObject({ name: 'tool.exe', exe: null, argv: [] });
    expect(item.notes).toEqual(['exe_unread', 'cmdline_unread']);
  });

  it('reads ready and error lines, gates the version, counts the rest', () => {
    expect(parseWindowsStartLine('{"v":1,"type":"ready","pid":77}')).toEqual({ kind: 'ready' });
    expect(
      parseWindowsStartLine('{"v":1,"type":"error","code":"access_denied","message":"Access denied"}'),
    ).toMatchObject({ kind: 'fatal', code: 'GUARD_EXEC_STREAM_NOT_PERMITTED' });
    expect(parseWindowsStartLine('{"v":1,"type":"error","code":"register_failed"}')).toMatchObject({
      kind: 'fatal',
      code: 'GUARD_EXEC_STREAM_EXITED',
    });
    expect(parseWindowsStartLine('{"v":2,"type":"start"}')).toEqual({ kind: 'unsupported', version: '2' });
    expect(parseWindowsStartLine('{"v":1,"type":"stop","pid":1}')).toEqual({
      kind: 'skip',
      reason: 'unknown_event',
      lost: false,
    });
    expect(parseWindowsStartLine('{"v":1,"type":"start","pid":"1","name":"x.exe"}')).toMatchObject({
      reason: 'unknown_shape',
      lost: true,
    });
    const line = windowsStartLine(win);
    expect(parseWindowsStartLine(line.slice(0, -3))).toEqual({
      kind: 'skip',
      reason: 'truncated',
      lost: true,
    });
    expect(parseWindowsStartLine('WARNING: something')).toEqual({
      kind: 'skip',
      reason: 'not_json',
      lost: true,
    });
  });

  it('caps a huge command line and keeps a non-UTF-8 path readable', () => {
    const huge = execOf(
      parseWindowsStartLine(windowsStartLine({ ...win, argv: ['t.exe', 'y'.repeat(2 * 1024 * 1024)] })),
    );
    expect(huge.raw.argv.join(' ').length).toBeLessThanOrEqual(ARGV_MAX_CHARS);
    expect(huge.notes).toContain('cmdline_truncated');
    const text = windowsStartLine({ ...win, exe: 'C:\\X\\MARK.exe' });
    // A lone UTF-16 surrogate in a Windows file name, as a UTF-8 encoder that does not check writes it.
    const item = execOf(parseWindowsStartLine(decode(withBytes(text, 'MARK', [0xed, 0xa0, 0x80]))));
    expect(item.raw.exe).toMatch(/^C:\\X\\\uFFFD+\.exe$/);
    expect(item.notes).toContain('path_not_utf8');
  });

  it('ships the PowerShell program that writes exactly the lines the parser reads', () => {
    const args = windowsStartArgs();
    expect(args.slice(0, -1)).toEqual([
      '-NoLogo',
      '-NoProfile',
      '-NonInteractive',
      '-ExecutionPolicy',
      'Bypass',
      '-EncodedCommand',
    ]);
    expect(Buffer.from(args.at(-1) as string, 'base64').toString('utf16le')).toBe(WINDOWS_START_SCRIPT);
    // By absolute path (a bare name is looked up in the working directory first on Windows).
    expect(powershellPath({ SystemRoot: 'C:\\WINDOWS' })).toBe(
      'C:\\WINDOWS\\System32\\WindowsPowerShell\\v1.0\\powershell.exe',
    );
    expect(powershellPath({})).toBe('C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe');
    // Windows' command line limit is 32,767 characters.
    expect(args.join(' ').length).toBeLessThan(32_767);
    expect(WINDOWS_START_SCRIPT).toContain('Register-CimIndicationEvent -ClassName Win32_ProcessStartTrace');
    expect(WINDOWS_START_SCRIPT).toContain('Get-CimInstance -ClassName Win32_Process');
    for (const key of [
      'v = 1',
      "type = 'start'",
      'pid =',
      'ppid =',
      'name =',
      'created =',
      'exe =',
      'cmd =',
      "type = 'ready'",
      "type = 'error'",
    ])
      expect(WINDOWS_START_SCRIPT).toContain(key);
    // A literal backtick-n (PowerShell's newline escape), not a JavaScript newline, ends each line.
    expect(WINDOWS_START_SCRIPT).toContain('+ "`n")');
    // TIME_CREATED is a FILETIME (> 2^53): written as a string, read with BigInt.
    expect(WINDOWS_START_SCRIPT).toContain('created = [string]$t.TIME_CREATED');
  });
});
