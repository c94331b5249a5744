/**
 * Owns the local control protocol between guardctl and guardd: newline-delimited JSON over a
 * Unix socket (Windows: a named pipe). One request per line, one response line per request.
 * The public socket serves read-only methods to anyone; `admin: true` methods are answered only
 * on the root-only admin socket.
 */

/**
 * A request line longer than this is refused (GUARD_CONTROL_BAD_REQUEST) and the connection closed:
 * the largest real request (`events.list` with every parameter) is under 300 bytes, so 64 KiB leaves
 * room for any future parameter while bounding what one connection can make guardd buffer.
 */
export const MAX_REQUEST_BYTES = 64 * 1024;

export interface ControlRequest {
  readonly id: number;
  readonly method: string;
  readonly params?: Readonly<Record<string, unknown>>;
}

export type ControlResponse =
  | { readonly id: number | null; readonly ok: true; readonly result: unknown }
  | {
      readonly id: number | null;
      readonly ok: false;
      readonly error: { readonly code: string; readonly message: string };
    };

export interface ControlMethod {
  /** True: only on the admin socket. */
  readonly admin: boolean;
  readonly summary: string;
  /**
   * Answers one request. `params` is hostile input: validate it and throw a GuardError
   * (GUARD_CONTROL_BAD_REQUEST or the area's code) for anything unexpected. The result must be
   * JSON-serialisable.
   */
  handle(params: Readonly<Record<string, unknown>>): unknown | Promise<unknown>;
}

export type ControlMethods = Readonly<Record<string, ControlMethod>>;
