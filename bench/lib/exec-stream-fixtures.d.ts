// Types of exec-stream-fixtures.js (imported by TypeScript tests).
import type { ExecEvent } from '../../src/sensors/process-sources/exec-events-source.js';

export interface FixtureExec {
  readonly pid: number;
  readonly ppid: number;
  readonly uid: number;
  readonly exe: string;
  readonly argv: readonly string[];
  /** ms since the epoch. */
  readonly startMs: number;
  readonly teamId?: string | null;
  readonly signingId?: string | null;
  readonly cdhash?: string | null;
  readonly platformBinary?: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: the test edits the rendered message freely
export function esloggerExecLine(e: FixtureExec, mutate?: (m: Record<string, any>) => void): string;
export function esloggerForkLine(e: FixtureExec): string;
export function esloggerExitLine(e: FixtureExec): string;
export function filetime(ms: number): string;
export function windowsCommandLine(argv: readonly string[]): string;
export function windowsStartLine(
  e: FixtureExec,
  over?: Partial<{ exe: string | null; cmd: string | null; name: string }>,
): string;
export function procExecEvent(e: FixtureExec): ExecEvent;
