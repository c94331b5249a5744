/**
 * Owns the one pino root logger. Components take `logger.child({ component: 'sensor.process' })`
 * from what they are given; nothing else calls `pino()` or `console.*` (the CLI renderer excepted).
 *
 * Logs go to stderr so stdout stays free for the CLI's data and the local mode's event lines.
 * Known secret-bearing keys are censored by pino itself; command lines are redacted before they
 * reach a log call (see redact.ts).
 */
import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Keys censored wherever they appear in a log object (one level deep and at the top). */
const REDACT_PATHS = [
  'token',
  'device_token',
  'enroll_secret',
  'password',
  'authorization',
  'headers.authorization',
  '*.token',
  '*.device_token',
  '*.enroll_secret',
  '*.password',
  '*.authorization',
];

/** Builds the root logger. `destination` defaults to stderr (fd 2). */
export function createRootLogger(level: LogLevel, destination: NodeJS.WritableStream | number = 2): Logger {
  const stream =
    typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    stream,
  );
}

/** A logger that drops everything, for tests and tools that must stay quiet. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
