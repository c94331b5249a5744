/**
 * Owns running a short helper command for a notification (notify-send, launchctl/osascript,
 * PowerShell) with a hard time limit, optionally as another user, never through a shell. It is the
 * one edge the notifier tests fake to check the macOS and Windows command lines on Linux.
 *
 * A command run as a user on Linux gives up guardd's raised priority (src/daemon/priority.ts: nice
 * −10, inherited by every child) while it is still root: `nice` (coreutils) lowers it, then
 * `setpriv` (util-linux) takes the user's uid/gid and no supplementary groups and execs the
 * command. Dropping the uid first (spawn's `uid` option) would leave a process of the user's at
 * nice −10 that the user may ptrace or signal and so take over, even for the moment before it
 * could lower its own priority.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { getPriority } from 'node:os';

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
      const dropped = asUserAtNiceZero(spec);
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

const NICE = '/usr/bin/nice';
const SETPRIV = '/usr/bin/setpriv';

/**
 * The root-run command line that lowers the priority to nice 0 and then becomes the user (see the
 * header), or null when there is nothing to lower (not Linux, no uid to take, nice ≥ 0) or the
 * tools are missing (then spawn's `uid` option, as before).
 */
function asUserAtNiceZero(spec: CommandSpec): { command: string; args: string[] } | null {
  if (process.platform !== 'linux' || spec.uid === undefined) return null;
  let nice: number;
  try {
    nice = getPriority(0);
  } catch {
    return null;
  }
  if (nice >= 0 || !existsSync(NICE) || !existsSync(SETPRIV)) return null;
  return {
    command: NICE,
    args: [
      '-n',
      String(-nice),
      SETPRIV,
      `--reuid=${spec.uid}`,
      ...(spec.gid !== undefined ? [`--regid=${spec.gid}`] : []),
      '--clear-groups',
      '--',
      spec.command,
      ...spec.args,
    ],
  };
}
