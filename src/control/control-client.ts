/**
 * Owns talking to guardd from outside: one request, one response, over the control socket.
 * guardctl uses only this (never daemon internals). A daemon that is not there is the typed error
 * GUARD_CONTROL_DAEMON_NOT_RUNNING; a daemon-side failure is re-thrown as a GuardError with the
 * daemon's code.
 */
import { createConnection } from 'node:net';
import { type ErrorCode, GuardError, isGuardError } from '../common/errors.js';
import type { ControlResponse } from './protocol.js';

/** A daemon that has not answered after this long is reported as not answering. */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;
/** Responses larger than this are refused (a status or page of events is far smaller). */
const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/**
 * Waits before each new attempt after GUARD_CONTROL_BUSY (ms): a full socket frees a slot as soon
 * as a request is answered (milliseconds), so a few short retries ride out a burst of clients.
 */
const BUSY_RETRY_DELAYS_MS = [50, 150, 400] as const;

let nextId = 1;

/**
 * Calls `method` on the daemon listening at `socketPath`. A GUARD_CONTROL_BUSY answer (every
 * connection slot taken) is retried a few times within `timeoutMs` before it is reported.
 */
export async function callDaemon<T = unknown>(
  socketPath: string,
  method: string,
  params: Record<string, unknown> = {},
  timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await callOnce<T>(socketPath, method, params, Math.max(1, deadline - Date.now()));
    } catch (err) {
      const delay = BUSY_RETRY_DELAYS_MS[attempt];
      if (!isGuardError(err, 'GUARD_CONTROL_BUSY') || delay === undefined || Date.now() + delay >= deadline)
        throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

function callOnce<T>(
  socketPath: string,
  method: string,
  params: Record<string, unknown>,
  timeoutMs: number,
): Promise<T> {
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    const socket = createConnection(socketPath);
    let buffer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new GuardError('GUARD_CONTROL_TIMEOUT', `guardd did not answer "${method}" within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    const done = (fn: () => void): void => {
      clearTimeout(timer);
      socket.destroy();
      fn();
    };
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ id, method, params })}\n`));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      done(() => reject(connectError(socketPath, err)));
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.length > MAX_RESPONSE_BYTES) {
        done(() => reject(new GuardError('GUARD_CONTROL_BAD_REQUEST', 'response from guardd too large')));
        return;
      }
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      let res: ControlResponse;
      try {
        res = JSON.parse(buffer.slice(0, nl)) as ControlResponse;
      } catch {
        done(() =>
          reject(new GuardError('GUARD_CONTROL_BAD_REQUEST', 'guardd sent a response that is not JSON')),
        );
        return;
      }
      done(() => {
        if (res.ok) resolve(res.result as T);
        else reject(new GuardError(res.error.code as ErrorCode, res.error.message));
      });
    });
    socket.on('close', () =>
      done(() =>
        reject(
          new GuardError('GUARD_CONTROL_DAEMON_NOT_RUNNING', `guardd closed the connection on ${socketPath}`),
        ),
      ),
    );
  });
}

/**
 * The typed error for a socket that could not be opened: nothing there (daemon absent) is
 * GUARD_CONTROL_DAEMON_NOT_RUNNING; refused by the file's mode or its directory's (EACCES, EPERM:
 * a non-root user on the root-only admin socket, or a socket dir without search permission) is
 * GUARD_CONTROL_PERMISSION_DENIED, so the caller can say "needs root" instead of "start guardd".
 */
export function connectError(socketPath: string, err: NodeJS.ErrnoException): GuardError {
  const errno = err.code ?? '';
  if (['ENOENT', 'ECONNREFUSED', 'ENOTSOCK'].includes(errno))
    return new GuardError(
      'GUARD_CONTROL_DAEMON_NOT_RUNNING',
      `guardd is not running (no answer on ${socketPath})`,
      {
        socket: socketPath,
        errno,
      },
    );
  if (errno === 'EACCES' || errno === 'EPERM')
    return new GuardError('GUARD_CONTROL_PERMISSION_DENIED', `permission denied opening ${socketPath}`, {
      socket: socketPath,
      errno,
    });
  return new GuardError(
    'GUARD_CONTROL_DAEMON_NOT_RUNNING',
    `cannot reach guardd on ${socketPath}: ${err.message}`,
    {
      socket: socketPath,
      errno,
    },
  );
}
