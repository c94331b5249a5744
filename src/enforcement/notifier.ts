/**
 * Owns the contract for telling a person why something happened: the rule's message and URL,
 * written to the process's controlling terminal and shown as a desktop notification in the
 * owning user's session (Linux notify-send over the user's session bus, macOS
 * `launchctl asuser … osascript`, Windows toast). Implemented in src/enforcement/notify/.
 */

export interface NotifyTarget {
  readonly uid: number;
  readonly user: string | null;
  /** Controlling terminal of the process (e.g. /dev/pts/3), or null. */
  readonly tty: string | null;
}

export interface NotifyMessage {
  /** Short title, e.g. "toolguard blocked Claude Code". */
  readonly title: string;
  /** The rule's message. */
  readonly body: string;
  /** The rule's approved-alternative URL, or null. */
  readonly url: string | null;
}

export interface NotifyResult {
  readonly terminal: boolean;
  readonly desktop: boolean;
  /** Why a channel failed (no session, no tty, permission…); null when all attempted channels worked. */
  readonly error: string | null;
}

export interface UserNotifier {
  /**
   * Tells the user. Resolves (never rejects) within a bounded time (a hung notify-send must not
   * delay a kill); safe to call concurrently.
   */
  notify(target: NotifyTarget, message: NotifyMessage): Promise<NotifyResult>;
}

/**
 * Tells the owner of `obs`'s process with `message`, waiting at most `waitMs`: a notifier that
 * is slow, hangs or throws yields a result saying so (`notify_timeout`, `notify_failed`), never a
 * rejection. What every process action (block, warn, deny) uses.
 */
export async function notifyWithin(
  notifier: UserNotifier,
  target: NotifyTarget,
  message: NotifyMessage,
  waitMs: number,
): Promise<NotifyResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<NotifyResult>((resolve) => {
    timer = setTimeout(() => resolve({ terminal: false, desktop: false, error: 'notify_timeout' }), waitMs);
  });
  try {
    return await Promise.race([
      notifier
        .notify(target, message)
        .catch(() => ({ terminal: false, desktop: false, error: 'notify_failed' })),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
