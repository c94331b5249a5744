/**
 * Fuzzing the policy verifier (src/policy/policy-verifier.ts) and the matcher compiler
 * (src/policy/matcher.ts) through their public APIs:
 *  - random and mutated DSSE envelopes (broken JSON, fields of the wrong type, signature shapes,
 *    flipped payload bytes) and validly signed random bodies, which reach the schema, the compile
 *    check and the safety check: each either verifies or fails with a GuardError whose code is one
 *    of the verifier's documented codes, never an untyped exception;
 *  - random schema-valid bodies (names, exe globs, argv patterns, packages, path globs,
 *    exceptions) compiled for every platform, then matched against random process, package and
 *    path observations (argv up to past the match cap): no throw, a well-formed decision or null,
 *    and every match call finishes within a generous bound.
 * Seed and replay: test/fuzz/fuzz-params.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isGuardError } from '../../src/common/errors.js';
import type { Platform } from '../../src/common/platform-paths.js';
import { parseTrustedKeys } from '../../src/policy/keys.js';
import { compileMatcher, type Decision } from '../../src/policy/matcher.js';
import { policyIssues } from '../../src/policy/policy-schema.js';
import type { PolicyBody } from '../../src/policy/policy-types.js';
import { verifyPolicyEnvelope } from '../../src/policy/policy-verifier.js';
import type { Observation, Owner } from '../../src/sensors/observation.js';
import { CTX, NOW, newKey, sign, body as validBody } from '../policy/policy-helpers.js';
import { fuzzParams, testTimeout } from './fuzz-params.js';

/** The codes verifyPolicyEnvelope documents (its module comment); anything else is a bug. */
const VERIFIER_CODES = new Set([
  'GUARD_POLICY_TOO_LARGE',
  'GUARD_POLICY_MALFORMED_ENVELOPE',
  'GUARD_POLICY_UNSIGNED',
  'GUARD_POLICY_WRONG_PAYLOAD_TYPE',
  'GUARD_POLICY_SIGNATURE_INVALID',
  'GUARD_POLICY_UNTRUSTED_KEY',
  'GUARD_POLICY_THRESHOLD_NOT_MET',
  'GUARD_POLICY_PAYLOAD_NOT_JSON',
  'GUARD_POLICY_SCHEMA',
  'GUARD_POLICY_REGEX_UNSUPPORTED',
  'GUARD_POLICY_UNSAFE_RULE',
  'GUARD_POLICY_NOT_YET_VALID',
  'GUARD_POLICY_EXPIRED',
]);

/**
 * A match is a few RE2 and glob tests on at most the argv match cap: linear, ~µs to ms. A second is
 * hundreds of times that, so only a super-linear blow-up (a backtracking engine on nested
 * quantifiers, a pathological glob) reaches it. Such a blow-up is synchronous and cannot be
 * interrupted: it shows as this test timing out, and the last generated input is the culprit.
 */
const MATCH_BOUND_MS = 1000;

/** Cases after which each campaign must have reached its outcomes (a loaded machine may stop earlier). */
const MIN_RUNS_FOR_COVERAGE = 150;

const trustedKey = newKey();
const otherKey = newKey();
const verifyOpts = {
  trustedKeys: parseTrustedKeys([trustedKey.pem]),
  threshold: 1,
  now: NOW,
  clockSkewS: 300,
  maxBytes: 256 * 1024,
};

// ---- policy bodies ------------------------------------------------------------------------

const word = fc.constantFrom('claude', 'node', 'cli', 'code', 'a', 'b', 'x-y', 'anthropic-ai', 'bin', '1.0');

/** argv patterns from a small regex grammar (what policy authors write), plus raw strings. */
const regexSource: fc.Arbitrary<string> = fc
  .letrec<{ re: string; piece: string }>((tie) => ({
    piece: fc
      .tuple(
        fc.oneof(
          word,
          fc.constantFrom('.', '\\d', '\\w', '\\s', '\\S', '[a-c]', '[^ ]', '-', '--', '=', '/', ' '),
          tie('re').map((r) => `(?:${r})`),
        ),
        fc.constantFrom('', '', '', '*', '+', '?', '{1,3}', '*?', '{2}'),
      )
      .map(([a, q]) => a + q),
    re: fc
      .tuple(
        fc.constantFrom('', '', '^', '(?:^|\\s)'),
        fc.array(fc.array(tie('piece'), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 }),
        fc.constantFrom('', '', '$', '(?:\\s|$)'),
      )
      .map(([a, alts, z]) => `${a}${alts.map((p) => p.join('')).join('|')}${z}`),
  }))
  .re.filter((r) => r.length <= 1024);

const globSegment = fc.oneof(
  word,
  fc.constantFrom(
    '**',
    '*',
    '?',
    'node_modules',
    '@anthropic-ai',
    'claude*',
    '{a,b}',
    '[a-c]',
    '!(x)',
    '+(a|b)',
    '*.js',
    '.bin',
  ),
);
const globOf = (prefixes: string[]) =>
  fc
    .tuple(fc.constantFrom(...prefixes), fc.array(globSegment, { minLength: 1, maxLength: 6 }))
    .map(([p, s]) => p + s.join('/'));
const exeGlob = globOf(['/', '**/', '~/', '/usr/', 'C:\\']);
/** Path globs must be absolute or start at a home (the schema's pattern). */
const pathGlob = globOf(['/', '~/', '/usr/', 'C:\\', '~\\']);

const npmName = fc.oneof(
  fc.constantFrom('@anthropic-ai/claude-code', 'claude', 'left-pad', '@a/b'),
  fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,12}$/),
);
const range = fc.constantFrom(
  '*',
  '^1.0.0',
  '>=1 <2',
  '1.x',
  '~0.2.3',
  '>=0.0.0-0',
  '1.0.0 - 2.0.0',
  '||',
  'latest',
);
const sha = fc.stringMatching(/^[0-9a-f]{64}$/);

const rule = fc.record(
  {
    id: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,10}$/),
    name: fc.string({ minLength: 1, maxLength: 20 }),
    action: fc.constantFrom('block', 'warn', 'audit'),
    message: fc.string({ minLength: 1, maxLength: 20 }),
    process: fc.record(
      {
        names: fc.array(
          fc.oneof(
            word,
            fc.string({ minLength: 1, maxLength: 10 }).filter((n) => !/[\\/]/.test(n)),
          ),
          {
            maxLength: 3,
          },
        ),
        exe_globs: fc.array(exeGlob, { maxLength: 3 }),
        argv_patterns: fc.array(
          fc.oneof({ weight: 4, arbitrary: regexSource }, fc.string({ maxLength: 12 })),
          {
            maxLength: 3,
          },
        ),
        script_packages: fc.array(npmName, { maxLength: 2 }),
        sha256: fc.array(sha, { maxLength: 2 }),
      },
      { requiredKeys: [] },
    ),
    packages: fc.array(fc.record({ ecosystem: fc.constant('npm'), name: npmName, range }), { maxLength: 2 }),
    paths: fc.array(pathGlob, { maxLength: 2 }),
    platforms: fc.uniqueArray(fc.constantFrom('linux', 'darwin', 'win32'), { minLength: 1, maxLength: 3 }),
  },
  { requiredKeys: ['id', 'name', 'action', 'message'] },
);

const exception = fc.record(
  {
    rule: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,10}$/),
    users: fc.uniqueArray(fc.constantFrom('alice', 'bob', 'root'), { minLength: 1, maxLength: 2 }),
    groups: fc.uniqueArray(fc.constantFrom('dev', 'wheel'), { minLength: 1, maxLength: 2 }),
    hosts: fc.array(
      fc.oneof(fc.constantFrom('laptop-*', 'ai-lab-?', '*', '{a,b}-*'), fc.string({ maxLength: 8 })),
      {
        minLength: 1,
        maxLength: 2,
      },
    ),
    device_tags: fc.uniqueArray(fc.constantFrom('lab', 'prod'), { minLength: 1, maxLength: 2 }),
    expires_at: fc.constantFrom('2026-11-25T00:00:00Z', '2026-11-20T00:00:00Z', '2099-01-01T00:00:00Z'),
  },
  { requiredKeys: ['rule', 'expires_at'] },
);

const policyBody: fc.Arbitrary<PolicyBody> = fc
  .record({
    version: fc.integer({ min: 1, max: 1000 }),
    mode: fc.constantFrom('enforce', 'monitor'),
    rules: fc.array(rule, { minLength: 1, maxLength: 5 }),
    exceptions: fc.array(exception, { maxLength: 2 }),
  })
  .map(
    (b) =>
      ({
        schema: 'toolguard.policy/v1',
        issued_at: '2026-11-23T12:00:00Z',
        expires_at: '2026-12-08T12:00:00Z',
        ...b,
      }) as unknown as PolicyBody,
  );

// ---- observations --------------------------------------------------------------------------

const owner: fc.Arbitrary<Owner> = fc.record({
  uid: fc.constantFrom(0, 1000, 1001),
  user: fc.constantFrom('alice', 'bob', 'root', null),
  groups: fc.array(fc.constantFrom('dev', 'wheel', 'lab'), { maxLength: 2 }),
  home: fc.constantFrom('/home/alice', '/home/bob', null),
});

/** A command-line argument: words of the patterns, random text, or a long run (past the match cap). */
const arg = fc.oneof(
  { weight: 6, arbitrary: fc.oneof(word, fc.string({ maxLength: 12 })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.constantFrom('a', 'ab', 'a ', '1', '-', 'claude ', 'x-y', '\\'),
        fc.integer({ min: 100, max: 3000 }),
      )
      .map(([s, n]) => s.repeat(n)),
  },
);

const path = fc
  .array(
    fc.oneof(
      word,
      fc.constantFrom('node_modules', '@anthropic-ai', 'claude-code', 'cli.js', '.bin', 'usr', 'home'),
    ),
    {
      minLength: 1,
      maxLength: 8,
    },
  )
  .chain((segs) =>
    fc.constantFrom(`/${segs.join('/')}`, `/home/alice/${segs.join('/')}`, `C:\\${segs.join('\\')}`),
  );

const observation: fc.Arbitrary<Observation> = fc.oneof(
  fc.record({
    kind: fc.constant('process' as const),
    pid: fc.integer({ min: 2, max: 1 << 22 }),
    ppid: fc.integer({ min: 1, max: 1 << 22 }),
    startTime: fc.nat(),
    name: fc.oneof(word, fc.string({ maxLength: 15 })),
    exe: fc.option(path),
    argv: fc.array(arg, { maxLength: 8 }),
    owner,
    tty: fc.constantFrom(null, '/dev/pts/3'),
    sha256: fc.option(sha),
    scriptPackage: fc.option(
      fc.record({
        name: npmName,
        version: fc.option(fc.constantFrom('1.0.0', '0.2.9', '2.0.0-rc.1')),
        root: path,
        script: path,
      }),
    ),
  }),
  fc.record({
    kind: fc.constant('package' as const),
    ecosystem: fc.constant('npm' as const),
    name: npmName,
    version: fc.option(fc.constantFrom('1.0.0', '0.2.9', '2.0.0-rc.1', '1.5.0')),
    path,
    root: path,
    manager: fc.constantFrom('npm' as const, 'pnpm' as const, 'other' as const),
    owner,
  }),
  fc.record({ kind: fc.constant('path' as const), path, isDirectory: fc.boolean(), owner }),
) as fc.Arbitrary<Observation>;

const ctx = fc.record({
  now: fc.constant(CTX.now),
  hostname: fc.constantFrom('laptop-1', 'ai-lab-3', 'b-x'),
  deviceTags: fc.array(fc.constantFrom('lab', 'prod'), { maxLength: 2 }),
});

// ---- envelopes ----------------------------------------------------------------------------

type Mutation = (env: Record<string, unknown>) => void;
const envelopeMutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('payload', 'payloadType', 'signatures', '__proto__', 'extra'),
      fc.jsonValue({ maxDepth: 2 }),
    )
    .map(
      ([k, v]): Mutation =>
        (env) => {
          Object.defineProperty(env, k, { value: v, enumerable: true, writable: true, configurable: true });
        },
    ),
  fc.constantFrom('payload', 'payloadType', 'signatures').map(
    (k): Mutation =>
      (env) =>
        delete env[k],
  ),
  fc.tuple(fc.nat(), fc.constantFrom('A', '_', '-', '=', '!', '')).map(
    ([i, c]): Mutation =>
      (env) => {
        if (typeof env.payload !== 'string') return;
        const p = env.payload;
        const at = i % (p.length + 1);
        env.payload = p.slice(0, at) + c + p.slice(at + 1);
      },
  ),
  fc
    .array(
      fc.oneof(
        fc.record(
          {
            keyid: fc.oneof(
              fc.constant(trustedKey.keyid),
              fc.string({ maxLength: 8 }),
              fc.jsonValue({ maxDepth: 0 }),
            ),
            sig: fc.oneof(
              fc.base64String({ maxLength: 120 }),
              fc.jsonValue({ maxDepth: 0 }),
              fc.string({ maxLength: 300 }),
            ),
          },
          { requiredKeys: [] },
        ),
        fc.jsonValue({ maxDepth: 1 }),
      ),
      { maxLength: 20 },
    )
    .map(
      (sigs): Mutation =>
        (env) => {
          env.signatures = sigs;
        },
    ),
  fc.constant<Mutation>((env) => {
    const sigs = env.signatures;
    if (Array.isArray(sigs)) env.signatures = [...sigs, ...sigs];
  }),
);

/** A signed envelope of a random (often invalid) body, then mutated; or random text. */
const envelopeText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({
        body: fc.oneof(
          { weight: 3, arbitrary: policyBody.map((b) => JSON.stringify(b)) },
          fc.constant(JSON.stringify(validBody(5))),
          fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null'),
          fc.uint8Array({ maxLength: 50 }).map((b) => Buffer.from(b).toString('latin1')),
        ),
        key: fc.constantFrom(trustedKey, trustedKey, otherKey),
        mutations: fc.array(envelopeMutation, { maxLength: 2 }),
        splice: fc.option(fc.tuple(fc.nat(), fc.string({ maxLength: 4 })), { freq: 2 }),
      })
      .map(({ body, key, mutations, splice }) => {
        const env = JSON.parse(sign(body, [key])) as Record<string, unknown>;
        for (const m of mutations) m(env);
        const text = JSON.stringify(env);
        if (!splice) return text;
        const at = splice[0] % (text.length + 1);
        return text.slice(0, at) + splice[1] + text.slice(at + 1);
      }),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 100 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? '') },
);

function expectDecision(d: Decision | null, body: PolicyBody): void {
  if (d === null) return;
  const r = body.rules.find((x) => x.id === d.rule.id);
  expect(r).toBeDefined();
  expect(d.rule.action).toBe(r?.action);
  expect(['name', 'exe_path', 'argv', 'script_package', 'sha256', 'npm_package', 'path']).toContain(d.reason);
  expect(d.policyVersion).toBe(body.version);
}

describe('fuzz: policy verifier and matcher', () => {
  it(
    'random and mutated envelopes: verified, or a GuardError with a documented verifier code',
    () => {
      const seen = new Set<string>();
      let runs = 0;
      fc.assert(
        fc.property(envelopeText, fc.boolean(), (text, asBuffer) => {
          runs++;
          try {
            const v = verifyPolicyEnvelope(asBuffer ? Buffer.from(text) : text, verifyOpts);
            expect(v.signedBy).toEqual([trustedKey.keyid]);
            seen.add('verified');
          } catch (err) {
            if (!isGuardError(err))
              throw new Error(`untyped exception from the verifier: ${String(err)}`, { cause: err });
            expect(VERIFIER_CODES).toContain(err.code);
            seen.add(err.code);
          }
        }),
        fuzzParams(400, 6_000),
      );
      // the campaign reaches past the signature into the body checks, and something verifies
      // (checked once enough cases ran: a loaded machine may stop the campaign early)
      if (runs >= MIN_RUNS_FOR_COVERAGE) {
        expect(seen).toContain('GUARD_POLICY_SCHEMA');
        expect(seen).toContain('GUARD_POLICY_SIGNATURE_INVALID');
        expect(seen).toContain('verified');
      }
    },
    testTimeout(6_000),
  );

  it(
    'random schema-valid bodies compile on every platform and match random observations: no throw, bounded time',
    () => {
      let compiled = 0;
      let runs = 0;
      let decisions = 0;
      fc.assert(
        fc.property(
          policyBody,
          fc.array(observation, { minLength: 1, maxLength: 6 }),
          ctx,
          (body, observations, c) => {
            runs++;
            if (policyIssues(body).length > 0) return; // the verifier refuses it before the matcher sees it
            compiled++;
            for (const platform of ['linux', 'darwin', 'win32'] as Platform[]) {
              const matcher = compileMatcher(body, { platform, homes: ['/home/alice', '/home/bob'] });
              for (const obs of observations) {
                const t0 = performance.now();
                const d = matcher.match(obs, c);
                const ms = performance.now() - t0;
                expect(ms, `match took ${ms.toFixed(0)} ms`).toBeLessThan(MATCH_BOUND_MS);
                expectDecision(d, body);
                if (d) decisions++;
              }
            }
          },
        ),
        fuzzParams(400, 8_000),
      );
      // the generator yields bodies the schema accepts, and rules that match
      if (runs >= MIN_RUNS_FOR_COVERAGE) {
        expect(compiled).toBeGreaterThan(0);
        expect(decisions).toBeGreaterThan(0);
      }
    },
    testTimeout(8_000),
  );
});
