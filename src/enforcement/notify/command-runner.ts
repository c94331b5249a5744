/**
 * Owns running a short helper command for a notification (notify-send, launchctl/osascript,
 * PowerShell) with a hard time limit, optionally as another user, never through a shell. It is the
 * one edge the notifier tests fake to check the macOS and Windows command lines on Linux.
 *
 * A command run as a user gives up guardd's raised priority while still root
 * (src/daemon/priority.ts `asUserAtNormalPriority`).
 */
import { spawn } from 'node:child_process';
import { asUserAtNormalPriority } from '../../daemon/priority.js';

export interface CommandSpec {
  readonly command: string;
  /** Passed as an argv array: no shell ever interprets them. */
  readonly args: readonly string[];
  /** Run as this uid/gid (needs root); absent = as guardd. */
  readonly uid?: number;
  readonly gid?: number;
  /** The complete environment of the command (nothing of guardd's leaks into the user's session). */
  readonly env: Readonly<Record<string, string>>;
  /** Killed after this many ms. */
  readonly timeoutMs: number;
}

export interface CommandOutcome {
  readonly ok: boolean;
  /** Why not ok: `spawn:<errno>`, `exit:<code>`, `signal:<name>`, `timeout`. */
  readonly error: string | null;
}

/** Runs a command; resolves (never rejects) when it exits, fails to start, or is killed at its timeout. */
export type CommandRunner = (spec: CommandSpec) => Promise<CommandOutcome>;

export const spawnRunner: CommandRunner = (spec) =>
  new Promise<CommandOutcome>((resolve) => {
    let settled = false;
    const done = (o: CommandOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(o);
    };
    let child: ReturnType<typeof spawn>;
    try {
      const dropped =
        spec.uid === undefined ? null : asUserAtNormalPriority(spec.uid, spec.gid, spec.command, spec.args);
      child = dropped
        ? spawn(dropped.command, dropped.args, { stdio: 'ignore', env: { ...spec.env } })
        : spawn(spec.command, [...spec.args], {
            stdio: 'ignore',
            env: { ...spec.env },
            windowsHide: true,
            ...(spec.uid !== undefined ? { uid: spec.uid } : {}),
            ...(spec.gid !== undefined ? { gid: spec.gid } : {}),
          });
    } catch (err) {
      resolve({ ok: false, error: `spawn:${(err as NodeJS.ErrnoException).code ?? 'failed'}` });
      return;
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done({ ok: false, error: 'timeout' });
    }, spec.timeoutMs);
    timer.unref();
    child.once('error', (err: NodeJS.ErrnoException) =>
      done({ ok: false, error: `spawn:${err.code ?? 'failed'}` }),
    );
    child.once('exit', (code, signal) =>
      done(
        code === 0
          ? { ok: true, error: null }
          : { ok: false, error: signal ? `signal:${signal}` : `exit:${code ?? 'unknown'}` },
      ),
    );
  });
