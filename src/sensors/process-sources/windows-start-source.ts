/**
 * Owns the Windows exec source: a long-running PowerShell child that subscribes to WMI's
 * `Win32_ProcessStartTrace` (kernel process start events relayed by WMI; needs an administrator
 * or SYSTEM, which guardd's service is), reads the new pid's executable path and command line
 * from `Win32_Process` at once, and writes one JSON line per start (WINDOWS_START_SCRIPT, shipped
 * here and passed with -EncodedCommand, so there is no script file to tamper with or to allow
 * through the execution policy). windows-start-parser.ts reads the lines; running, restarting and
 * the ps-list fallback are exec-stream-source.ts's.
 *
 * What it cannot do (docs/process-detection.md "Windows"): it is not pre-exec (the process runs
 * before the event arrives); a process that exits before its Win32_Process is read keeps only its
 * image name; it has no user (uid) and no code-signing facts. No kernel driver is involved.
 */
import { win32 } from 'node:path';
import type { Logger } from '../../common/logger.js';
import { ExecStreamSource, type ExecStreamSourceOptions, type ExitRefusal } from './exec-stream-source.js';
import { parseWindowsStartLine } from './windows-start-parser.js';

/**
 * The PowerShell (5.1 and 7) program. It writes UTF-8 without BOM straight to the stdout stream
 * (the console encoding of a service is the OEM code page); one compact JSON object per line.
 */
export const WINDOWS_START_SCRIPT = `$ErrorActionPreference = 'Stop'
$out = [Console]::OpenStandardOutput()
$utf8 = New-Object System.Text.UTF8Encoding($false)
function Emit([hashtable]$o) {
  $bytes = $utf8.GetBytes((ConvertTo-Json -InputObject $o -Compress -Depth 2) + "\`n")
  $out.Write($bytes, 0, $bytes.Length)
  $out.Flush()
}
try {
  Register-CimIndicationEvent -ClassName Win32_ProcessStartTrace -SourceIdentifier 'toolguard.start' | Out-Null
} catch {
  $code = 'register_failed'
  if ("$($_.Exception.Message)" -match 'denied|0x80041003') { $code = 'access_denied' }
  Emit @{ v = 1; type = 'error'; code = $code; message = "$($_.Exception.Message)" }
  exit 3
}
Emit @{ v = 1; type = 'ready'; pid = $PID }
while ($true) {
  $e = Wait-Event -SourceIdentifier 'toolguard.start'
  Remove-Event -EventIdentifier $e.EventIdentifier
  $t = $e.SourceEventArgs.NewEvent
  $procId = [uint32]$t.ProcessID
  $exe = $null
  $cmd = $null
  try {
    $p = Get-CimInstance -ClassName Win32_Process -Filter "ProcessId = $procId" -Property ExecutablePath, CommandLine
    if ($p) { $exe = $p.ExecutablePath; $cmd = $p.CommandLine }
  } catch { }
  Emit @{ v = 1; type = 'start'; pid = $procId; ppid = [uint32]$t.ParentProcessID; name = [string]$t.ProcessName; created = [string]$t.TIME_CREATED; exe = $exe; cmd = $cmd }
}
`;

/**
 * The PowerShell that runs the script (Windows PowerShell 5.1 is on every supported Windows), by
 * absolute path: a bare `powershell.exe` is looked up in the working directory first.
 */
export function powershellPath(env: NodeJS.ProcessEnv = process.env): string {
  return win32.join(
    env.SystemRoot || 'C:\\Windows',
    'System32',
    'WindowsPowerShell',
    'v1.0',
    'powershell.exe',
  );
}

/** The arguments that run WINDOWS_START_SCRIPT without a file: UTF-16LE, base64 (-EncodedCommand). */
export function windowsStartArgs(script: string = WINDOWS_START_SCRIPT): string[] {
  return [
    '-NoLogo',
    '-NoProfile',
    '-NonInteractive',
    '-ExecutionPolicy',
    'Bypass',
    '-EncodedCommand',
    Buffer.from(script, 'utf16le').toString('base64'),
  ];
}

/** PowerShell's own refusals on stderr (the script reports WMI refusals as an `error` line). */
export function classifyWindowsStartExit(stderr: string): ExitRefusal | null {
  if (/Access (is )?denied|0x80041003|UnauthorizedAccess/i.test(stderr))
    return {
      code: 'GUARD_EXEC_STREAM_NOT_PERMITTED',
      message: 'WMI refused the process start trace (needs an administrator)',
    };
  return null;
}

export interface WindowsStartSourceOptions extends Omit<ExecStreamSourceOptions, 'spec'> {
  readonly logger: Logger;
  /** The program to run (tests run a stand-in that replays a recorded stream). Default powershellPath(). */
  readonly program?: string;
}

/** The Windows process start source (ps-list until the script runs; `kind` says which). */
export function createWindowsStartSource(options: WindowsStartSourceOptions): ExecStreamSource {
  const { program, ...rest } = options;
  return new ExecStreamSource({
    ...rest,
    spec: {
      kind: 'windows-start',
      program: program || powershellPath(),
      args: windowsStartArgs(),
      parse: parseWindowsStartLine,
      classifyExit: classifyWindowsStartExit,
    },
  });
}
