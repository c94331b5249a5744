/**
 * Shared settings of the fuzzing suite (test/fuzz/*.fuzz.test.ts): property-based runs with
 * fast-check, seeded so that CI runs are reproducible and a failure can be replayed.
 *
 * Replaying: a failing property prints `seed` and `path` (fast-check's "Counterexample ... seed: S,
 * path: P"). Run it again with
 *   TOOLGUARD_FUZZ_SEED=S TOOLGUARD_FUZZ_PATH=P npx vitest run test/fuzz/<file>
 * A longer campaign: TOOLGUARD_FUZZ_SEED=$RANDOM TOOLGUARD_FUZZ_RUNS_FACTOR=20 npx vitest run test/fuzz
 * (the time limits scale with the factor too).
 *
 * Every property is bounded twice: by `numRuns` and by `interruptAfterTimeLimit` (a loaded 2-core CI
 * machine stops early and still passes on what it ran, never fails for being slow).
 */
import type { Parameters } from 'fast-check';

/** The default seed: fixed, so a CI failure reproduces on any machine. */
const DEFAULT_SEED = 0x7f1a2b3c;

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v)) throw new Error(`${name} must be a number, got ${JSON.stringify(raw)}`);
  return v;
}

/** The seed of this run: TOOLGUARD_FUZZ_SEED, else the fixed default. */
export const FUZZ_SEED = Math.trunc(envNumber('TOOLGUARD_FUZZ_SEED') ?? DEFAULT_SEED);
/** Multiplies runs and time limits (TOOLGUARD_FUZZ_RUNS_FACTOR, default 1) for longer campaigns. */
const FACTOR = Math.max(0.1, envNumber('TOOLGUARD_FUZZ_RUNS_FACTOR') ?? 1);

/**
 * fast-check parameters for one property: `runs` cases, at most `timeLimitMs` of wall time (then
 * the property stops and passes on the cases it ran), each async case interrupted after `caseTimeoutMs`.
 */
export function fuzzParams<T>(runs: number, timeLimitMs: number, caseTimeoutMs?: number): Parameters<T> {
  const path = process.env.TOOLGUARD_FUZZ_PATH;
  return {
    seed: FUZZ_SEED,
    numRuns: Math.max(1, Math.round(runs * FACTOR)),
    interruptAfterTimeLimit: Math.round(timeLimitMs * FACTOR),
    markInterruptAsFailure: false,
    ...(caseTimeoutMs !== undefined ? { timeout: caseTimeoutMs } : {}),
    ...(path ? { path } : {}),
  };
}

/** vitest timeout of a fuzz test whose property has `timeLimitMs`: room for setup and shrinking. */
export function testTimeout(timeLimitMs: number): number {
  return Math.round(timeLimitMs * FACTOR) + 30_000;
}
