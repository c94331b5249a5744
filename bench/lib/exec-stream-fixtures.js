// Exec event lines in the formats the three exec sources read, built from one description of an
// exec, so tests (test/sensors/process-sources/) and bench/exec-sources.bench.js feed the same
// exec to each source:
//  - eslogger (macOS 13+): an es_message_t rendered as eslogger's JSON Lines — schema_version,
//    version, time, mach_time, event_type (9 exec, 11 fork, 15 exit), seq numbers, the
//    instigating `process` (es_process_t) and `event.exec` (es_event_exec_t: target, args, env,
//    cwd, dyld_exec_path, script, fds, image_cputype …); es_process_t with audit_token (pid, ruid,
//    euid, pidversion …), ppid, original_ppid, group_id, session_id, start_time, executable (path,
//    path_truncated, stat), tty, team_id, signing_id, cdhash, codesigning_flags,
//    is_platform_binary, is_es_client, parent/responsible audit tokens. Fields the parser does not
//    read are here on purpose (unknown fields must be ignored);
//  - the Windows start script's version-1 lines (src/sensors/process-sources/windows-start-parser.ts);
//  - the Linux procevents addon's ExecEvent (the /proc facts its reader thread read).

function auditToken(pid, uid) {
  return { asid: 100_004, auid: uid, egid: 20, euid: uid, pid, pidversion: pid * 3 + 1, rgid: 20, ruid: uid };
}

function esProcess(e) {
  return {
    audit_token: auditToken(e.pid, e.uid),
    cdhash: e.cdhash ?? '0000000000000000000000000000000000000000',
    codesigning_flags: e.teamId ? 570_522_385 : 0,
    executable: {
      path: e.exe,
      path_truncated: false,
      stat: {
        st_dev: 16_777_232,
        st_ino: 123_456,
        st_mode: 33_261,
        st_nlink: 1,
        st_size: 204_800,
        st_uid: 0,
      },
    },
    group_id: e.ppid,
    is_es_client: false,
    is_platform_binary: e.platformBinary ?? false,
    original_ppid: e.ppid,
    parent_audit_token: auditToken(e.ppid, e.uid),
    ppid: e.ppid,
    responsible_audit_token: auditToken(e.ppid, e.uid),
    session_id: e.ppid,
    signing_id: e.signingId ?? null,
    // Sub-second digits as eslogger writes them (the parser keeps whole seconds).
    start_time: new Date(e.startMs).toISOString().replace('Z', '123Z'),
    team_id: e.teamId ?? null,
    tty: { path: '/dev/ttys003', path_truncated: false, stat: {} },
    cs_validation_category: 6,
  };
}

let seq = 0;

function envelope(eventType, process, event) {
  seq++;
  return {
    schema_version: 1,
    version: 7,
    mach_time: 1_000_000_000 + seq,
    time: '2026-12-04T10:00:00.123456789Z',
    event_type: eventType,
    seq_num: seq,
    global_seq_num: seq,
    action_type: 1,
    action: { result: { result_type: 0, result: { auth: 0 } } },
    thread: { thread_id: 9_000_000 + seq },
    process,
    event,
  };
}

/** One eslogger `exec` line (JSON, no newline); `mutate` edits the object before it is written. */
export function esloggerExecLine(e, mutate) {
  const parent = { ...e, pid: e.ppid, ppid: 1, exe: '/bin/zsh', argv: ['-zsh'], teamId: null };
  const m = envelope(9, esProcess(parent), {
    exec: {
      args: [...e.argv],
      cwd: { path: '/Users/bob/src', path_truncated: false, stat: {} },
      dyld_exec_path: e.exe,
      env: ['PATH=/usr/bin:/bin', 'HOME=/Users/bob', 'SECRET_TOKEN=never-stored'],
      fds: [{ fd: 0, fdtype: 1 }],
      image_cpusubtype: 2,
      image_cputype: 16_777_228,
      last_fd: 2,
      script: null,
      target: esProcess(e),
    },
  });
  mutate?.(m);
  return JSON.stringify(m);
}

export function esloggerForkLine(e) {
  return JSON.stringify(
    envelope(11, esProcess({ ...e, pid: e.ppid, ppid: 1 }), { fork: { child: esProcess(e) } }),
  );
}

export function esloggerExitLine(e) {
  return JSON.stringify(envelope(15, esProcess(e), { exit: { stat: 0 } }));
}

/** ms since the epoch as a FILETIME decimal string (100 ns ticks since 1601). */
export function filetime(ms) {
  return (BigInt(ms) * 10_000n + 116_444_736_000_000_000n).toString();
}

/** A Windows command line for argv, quoted so the C runtime reads it back (argv[0]: quotes only). */
export function windowsCommandLine(argv) {
  return argv
    .map((a, i) => {
      if (i === 0) return /\s/.test(a) ? `"${a}"` : a;
      if (a !== '' && !/[\s"]/.test(a)) return a;
      let out = '"';
      let slashes = 0;
      for (const c of a) {
        if (c === '\\') {
          slashes++;
          continue;
        }
        out += c === '"' ? `${'\\'.repeat(slashes * 2 + 1)}"` : `${'\\'.repeat(slashes)}${c}`;
        slashes = 0;
      }
      return `${out}${'\\'.repeat(slashes * 2)}"`;
    })
    .join(' ');
}

/** One line of the Windows start script for `e` (`over` replaces exe, cmd or the image name). */
export function windowsStartLine(e, over = {}) {
  const name = over.name ?? e.exe.split(/[\\/]/).pop() ?? '';
  return JSON.stringify({
    v: 1,
    type: 'start',
    pid: e.pid,
    ppid: e.ppid,
    name,
    created: filetime(e.startMs),
    exe: over.exe !== undefined ? over.exe : e.exe,
    cmd: over.cmd !== undefined ? over.cmd : windowsCommandLine(e.argv),
  });
}

/**
 * The Linux addon's report of `e`: /proc/<pid>/stat as the kernel writes it (start time in clock
 * ticks since an arbitrary boot; the sources compare it only with itself), exe, cmdline.
 */
export function procExecEvent(e) {
  const comm = (e.exe.split('/').pop() ?? '').slice(0, 15);
  const ticks = Math.floor(e.startMs / 10) % 1_000_000_000;
  const fields = [
    'S',
    e.ppid,
    e.pid,
    e.pid,
    34_816,
    e.pid,
    4_194_560,
    100,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    20,
    0,
    1,
    0,
    ticks,
  ];
  const rest = [
    8_000_000,
    200,
    '18446744073709551615',
    4_194_304,
    4_198_000,
    140_720_000_000_000,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    17,
    1,
    0,
    0,
    0,
    0,
    0,
    4_210_000,
    4_211_000,
    30_000_000,
    140_720_000_001_000,
    140_720_000_002_000,
    140_720_000_002_000,
    140_720_000_003_000,
    0,
  ];
  return {
    pid: e.pid,
    ts: 1,
    stat: `${e.pid} (${comm}) ${[...fields, ...rest].join(' ')}\n`,
    exe: e.exe,
    cmdline: new Uint8Array(Buffer.from(`${e.argv.join('\0')}\0`)),
    truncated: false,
    uid: e.uid,
  };
}
