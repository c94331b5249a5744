/**
 * Owns the `UserNotifier` implementation: tells the person at a process why it was stopped or
 * warned about, on two channels.
 *
 * - terminal: the rule's message and URL written straight to the process's controlling terminal
 *   (like Santa's TTY message), opened non-blocking and without following links, so a wedged or
 *   swapped terminal cannot stall or redirect the write;
 * - desktop: Linux `notify-send` run as the owning user with DBUS_SESSION_BUS_ADDRESS pointing at
 *   /run/user/<uid>/bus when that socket exists; macOS `launchctl asuser <uid> osascript -e
 *   'display notification …'`; Windows a toast through PowerShell (-EncodedCommand, no quoting
 *   games). The desktop command runs detached from the caller: `notify` waits at most
 *   `desktopWaitMs` for it and then reports it as dispatched. The same notification for the same
 *   user is not repeated within DESKTOP_REPEAT_MS.
 *
 * Text shown to people comes from the signed policy but is still cleaned of control characters
 * (no escape sequences reach a terminal) and length-capped.
 */
import { closeSync, constants, fstatSync, openSync, statSync, writeSync } from 'node:fs';
import type { Logger } from '../../common/logger.js';
import type { Platform } from '../../common/platform-paths.js';
import type { NotifyMessage, NotifyResult, NotifyTarget, UserNotifier } from '../notifier.js';
import { type CommandRunner, type CommandSpec, spawnRunner } from './command-runner.js';

export interface SessionNotifierOptions {
  readonly logger: Logger;
  readonly platform: Platform;
  /** Send desktop notifications. */
  readonly desktop: boolean;
  /** Write to the controlling terminal. */
  readonly terminal: boolean;
  /** Runs helper commands; tests fake it. Default: spawn. */
  readonly runner?: CommandRunner;
  /** Where per-user runtime dirs live (Linux). Default /run/user. */
  readonly runtimeDir?: string;
  /** How long `notify` waits for the desktop command before calling it dispatched (ms). */
  readonly desktopWaitMs?: number;
  /** Our uid (null on Windows). Default process.getuid(). */
  readonly selfUid?: number | null;
  /** The same desktop notification (user + title) is shown at most once per this many ms. */
  readonly desktopRepeatMs?: number;
  /** Clock for the repeat limit (ms). Default Date.now. */
  readonly now?: () => number;
}

/**
 * How long `notify` waits for the desktop helper: long enough to see it fail to start (ENOENT is
 * reported on the next tick), short enough not to hold up the kill that follows a block.
 */
export const DESKTOP_WAIT_MS = 5;
/** A desktop helper still running after this long is killed (a hung session bus must not pile up). */
export const DESKTOP_TIMEOUT_MS = 5000;
/**
 * 200 blocked launches in a row must not become 200 desktop pop-ups: the same notification for
 * the same user is shown once per 10 s (the terminal still gets every message).
 */
export const DESKTOP_REPEAT_MS = 10_000;
/** Remembered (user, title) pairs at most; older ones are forgotten first. */
const DESKTOP_MEMORY_MAX = 1000;
/** Text longer than this is cut: a message, not a document. */
const MAX_TEXT_CHARS = 1000;
/** Terminal device paths we write to: ptys and consoles only (Linux /dev/pts/N, /dev/ttyN, macOS /dev/ttysNNN). */
const TTY_PATH = /^\/dev\/(?:pts\/\d{1,7}|tty\d{1,3}|ttyS\d{1,3}|ttys\d{1,4})$/;
/** PATH for helper commands: system locations only, never the user's. */
const SAFE_PATH = '/usr/local/bin:/usr/bin:/bin';

export class SessionNotifier implements UserNotifier {
  private readonly runner: CommandRunner;
  private readonly runtimeDir: string;
  private readonly desktopWaitMs: number;
  private readonly selfUid: number | null;
  private readonly repeatMs: number;
  private readonly now: () => number;
  private readonly lastDesktop = new Map<string, number>();

  constructor(private readonly options: SessionNotifierOptions) {
    this.repeatMs = options.desktopRepeatMs ?? DESKTOP_REPEAT_MS;
    this.now = options.now ?? Date.now;
    this.runner = options.runner ?? spawnRunner;
    this.runtimeDir = options.runtimeDir ?? '/run/user';
    this.desktopWaitMs = options.desktopWaitMs ?? DESKTOP_WAIT_MS;
    this.selfUid = options.selfUid !== undefined ? options.selfUid : (process.getuid?.() ?? null);
  }

  async notify(target: NotifyTarget, message: NotifyMessage): Promise<NotifyResult> {
    const errors: string[] = [];
    let terminal = false;
    if (this.options.terminal) {
      const e = this.writeTerminal(target.tty, message);
      if (e === null) terminal = true;
      else errors.push(`terminal:${e}`);
    }
    let desktop = false;
    if (this.options.desktop) {
      const e = await this.desktop(target, message);
      if (e === null) desktop = true;
      else errors.push(`desktop:${e}`);
    }
    return { terminal, desktop, error: errors.length > 0 ? errors.join(',') : null };
  }

  /** Writes the message to `tty`; null on success, else a short reason. */
  private writeTerminal(tty: string | null, message: NotifyMessage): string | null {
    if (tty === null) return 'no_tty';
    if (!TTY_PATH.test(tty)) return 'bad_tty_path';
    let fd = -1;
    try {
      fd = openSync(
        tty,
        constants.O_WRONLY | constants.O_NOCTTY | constants.O_NONBLOCK | constants.O_NOFOLLOW,
      );
      if (!fstatSync(fd).isCharacterDevice()) return 'not_a_terminal';
      const lines = [`toolguard: ${clean(message.title)}`, `  ${clean(message.body)}`];
      if (message.url) lines.push(`  More: ${clean(message.url)}`);
      // \r\n: the terminal may be in raw mode (an interactive CLI), where \n alone does not return.
      writeSync(fd, `\r\n${lines.join('\r\n')}\r\n`);
      return null;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? 'write_failed';
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }

  /** Starts the platform's desktop notification; null when dispatched or done, else a short reason. */
  private async desktop(target: NotifyTarget, message: NotifyMessage): Promise<string | null> {
    const key = `${target.uid}\u0000${message.title}`;
    const now = this.now();
    const last = this.lastDesktop.get(key);
    // A clock stepped back must not suppress notifications until it catches up.
    if (last !== undefined && now >= last && now - last < this.repeatMs) return 'repeat_suppressed';
    const spec = this.desktopCommand(target, message);
    if (typeof spec === 'string') return spec;
    this.lastDesktop.delete(key);
    this.lastDesktop.set(key, now);
    if (this.lastDesktop.size > DESKTOP_MEMORY_MAX) {
      const oldest = this.lastDesktop.keys().next().value;
      if (oldest !== undefined) this.lastDesktop.delete(oldest);
    }
    const run = this.runner(spec).then((o) => {
      if (!o.ok)
        this.options.logger.debug({ uid: target.uid, error: o.error }, 'desktop notification failed');
      return o.error;
    });
    let timer: NodeJS.Timeout | undefined;
    const dispatched = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), this.desktopWaitMs);
    });
    try {
      return await Promise.race([run, dispatched]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The command that shows the notification for `target`, or why there is none. */
  desktopCommand(target: NotifyTarget, message: NotifyMessage): CommandSpec | string {
    const title = clean(message.title);
    const body = clean(message.url ? `${message.body}\n${message.url}` : message.body, true);
    switch (this.options.platform) {
      case 'linux': {
        const bus = `${this.runtimeDir}/${target.uid}/bus`;
        let gid: number;
        try {
          const st = statSync(bus);
          if (!st.isSocket()) return 'no_session';
          gid = st.gid;
        } catch {
          return 'no_session';
        }
        const asUser = this.selfUid === 0 && target.uid !== 0;
        if (!asUser && this.selfUid !== target.uid) return 'not_permitted';
        return {
          command: 'notify-send',
          args: ['--app-name=toolguard', '--urgency=critical', '--expire-time=15000', '--', title, body],
          ...(asUser ? { uid: target.uid, gid } : {}),
          env: {
            PATH: SAFE_PATH,
            DBUS_SESSION_BUS_ADDRESS: `unix:path=${bus}`,
            XDG_RUNTIME_DIR: `${this.runtimeDir}/${target.uid}`,
          },
          timeoutMs: DESKTOP_TIMEOUT_MS,
        };
      }
      case 'darwin': {
        if (target.uid < 0) return 'no_session';
        const script = `display notification "${appleScriptString(body)}" with title "${appleScriptString(title)}"`;
        return {
          command: '/bin/launchctl',
          args: ['asuser', String(target.uid), '/usr/bin/osascript', '-e', script],
          env: { PATH: SAFE_PATH },
          timeoutMs: DESKTOP_TIMEOUT_MS,
        };
      }
      case 'win32': {
        const ps = [
          '[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] > $null',
          '$t = [Windows.UI.Notifications.ToastNotificationManager]::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02)',
          "$x = $t.GetElementsByTagName('text')",
          `$x.Item(0).AppendChild($t.CreateTextNode('${psString(title)}')) > $null`,
          `$x.Item(1).AppendChild($t.CreateTextNode('${psString(body)}')) > $null`,
          "[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier('toolguard').Show([Windows.UI.Notifications.ToastNotification]::new($t))",
        ].join('\n');
        return {
          command: 'powershell.exe',
          args: [
            '-NoProfile',
            '-NonInteractive',
            '-ExecutionPolicy',
            'Bypass',
            '-EncodedCommand',
            Buffer.from(ps, 'utf16le').toString('base64'),
          ],
          env: { SystemRoot: process.env.SystemRoot ?? 'C:\\Windows' },
          timeoutMs: DESKTOP_TIMEOUT_MS,
        };
      }
    }
  }
}

/** Removes control characters (escape sequences included), caps the length. Newlines kept only when asked. */
export function clean(text: string, keepNewlines = false): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  const ctl = keepNewlines ? /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g : /[\u0000-\u001f\u007f-\u009f]/g;
  const out = text.replace(ctl, keepNewlines ? '' : ' ');
  return out.length > MAX_TEXT_CHARS ? `${out.slice(0, MAX_TEXT_CHARS - 1)}…` : out;
}

/** An AppleScript string literal body: backslash and double quote escaped. */
export function appleScriptString(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
}

/** A PowerShell single-quoted string body: a quote is doubled (no other escapes exist there). */
export function psString(s: string): string {
  return s.replace(/['\u2018\u2019\u201a\u201b]/g, "''");
}
