/**
 * Owns the collector's HTTP error value: a `GuardError` with the status to answer and, for 429/503,
 * the `Retry-After` seconds. Every 4xx/5xx the collector sends is one of these, rendered as
 * `{"error":{"code","message"}}` by the server's error handler, so every refusal has a stable code.
 */
import { type ErrorCode, GuardError } from '../common/errors.js';

export class HttpError extends GuardError {
  constructor(
    /** HTTP status code to answer with. */
    readonly status: number,
    code: ErrorCode,
    message: string,
    /** Seconds for a `Retry-After` header (429, 503). */
    readonly retryAfterS?: number,
  ) {
    super(code, message);
  }
}
