/**
 * Policy verification cost, measured: what a device pays to accept a policy (at start and on every
 * changed download), split into signature checking vs the full pipeline (JSON, schema with paths,
 * semantic checks, safety probes, matcher compilation for three platforms, freshness), for the
 * example ban list and for a synthetic large policy. Also the cost of applying it through the
 * PolicyManager (state DB writes, matcher swap) and of one match against the compiled matcher.
 * Then the worst-case per-launch argv match cost of 1,000-rule policies over a fuzzed corpus, on
 * RE2 (the matcher) next to the JavaScript RegExp path it replaced (issue 12).
 *
 * Run: npm run build && node bench/policy.bench.js
 */
import { createHash, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { silentLogger } from '../dist/common/logger.js';
import { pae, signEnvelope } from '../dist/policy/dsse.js';
import { generateKeyPair, parsePrivateKey, parsePublicKey } from '../dist/policy/keys.js';
import { compileMatcher } from '../dist/policy/matcher.js';
import { PolicyManager } from '../dist/policy/policy-manager.js';
import { assertValidPolicyBody } from '../dist/policy/policy-schema.js';
import { POLICY_PAYLOAD_TYPE } from '../dist/policy/policy-types.js';
import { verifyPolicyEnvelope } from '../dist/policy/policy-verifier.js';
import { assertSafePolicy } from '../dist/policy/rule-safety.js';
import { openDatabase, StateStore } from '../dist/store/database.js';
import { MIGRATIONS } from '../dist/store/migrations.js';
import { syntheticRules } from './lib/synthetic-policy.js';

/** Each measurement runs at least this many iterations and at least this long. */
const MIN_ITERATIONS = 20;
const MIN_DURATION_MS = 1500;

const key = generateKeyPair();
const priv = parsePrivateKey(key.privateKeyPem);
const trusted = [parsePublicKey(key.publicKeyBase64)];
const now = Date.now();
const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

const example = JSON.parse(readFileSync(new URL('../policy/example-policy.json', import.meta.url), 'utf8'));
const fresh = (b, version) => ({
  ...b,
  version,
  issued_at: iso(now - 60_000),
  expires_at: iso(now + 14 * 86_400_000),
});

/**
 * A large, realistic policy: RULES rules of the claude-code shape with distinct identifiers
 * (bench/lib/synthetic-policy.js, shared with guardd.bench.js and the memory-budget test).
 */
const RULES = 500;
const large = fresh({ ...example, rules: syntheticRules(RULES), exceptions: [] }, 1);

function envelopeText(body) {
  return JSON.stringify(signEnvelope(JSON.stringify(body), POLICY_PAYLOAD_TYPE, [priv]));
}

function measure(fn) {
  const samples = [];
  const start = performance.now();
  for (let i = 0; i < MIN_ITERATIONS || performance.now() - start < MIN_DURATION_MS; i++) {
    const t = performance.now();
    fn(i);
    samples.push(performance.now() - t);
    if (samples.length >= 100_000) break;
  }
  samples.sort((a, b) => a - b);
  const pct = (p) => samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))];
  return {
    n: samples.length,
    p50: pct(50),
    p99: pct(99),
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
  };
}

const rows = [];
function row(what, policyName, bytes, m) {
  rows.push({ what, policy: policyName, bytes, ...m });
}

const opts = { trustedKeys: trusted, threshold: 1, now, clockSkewS: 300, maxBytes: 64 * 1024 * 1024 };

for (const [name, body] of [
  [`example (${example.rules.length} rules)`, fresh(example, 1)],
  [`synthetic (${RULES} rules)`, large],
]) {
  const text = envelopeText(body);
  const bytes = Buffer.byteLength(text);
  const env = JSON.parse(text);
  const payload = Buffer.from(env.payload, 'base64');
  const sig = Buffer.from(env.signatures[0].sig, 'base64');
  row(
    'signature only (PAE + Ed25519 verify)',
    name,
    bytes,
    measure(() => verify(null, pae(env.payloadType, payload), trusted[0].key, sig)),
  );
  row(
    'schema + semantic checks',
    name,
    bytes,
    measure(() => assertValidPolicyBody(JSON.parse(payload.toString('utf8')))),
  );
  row(
    'safety probes',
    name,
    bytes,
    measure(() => assertSafePolicy(body)),
  );
  row(
    'compile matcher (1 platform)',
    name,
    bytes,
    measure(() => compileMatcher(body, { platform: 'linux', homes: ['/home/a', '/home/b'] })),
  );
  row(
    'full verifyPolicyEnvelope',
    name,
    bytes,
    measure(() => verifyPolicyEnvelope(text, opts)),
  );

  // Apply through the manager: verification + anti-rollback + state DB writes + compile + swap.
  const dir = mkdtempSync(join(tmpdir(), 'tg-bench-'));
  const { db } = openDatabase(join(dir, 'state.db'), { migrations: MIGRATIONS });
  const manager = new PolicyManager({
    state: new StateStore(db),
    db,
    trustedKeys: [key.publicKeyPem],
    threshold: 1,
    clockSkewS: 300,
    maxBytes: 64 * 1024 * 1024,
    platform: 'linux',
    homes: () => ['/home/a', '/home/b'],
    events: { emit: () => null },
    logger: silentLogger(),
    onChange: () => {},
  });
  manager.loadInitial(null);
  // Pre-sign increasing versions so each iteration is a real change (signing is not measured).
  const versions = Array.from({ length: 400 }, (_, i) => envelopeText({ ...body, version: i + 2 }));
  let v = 0;
  row(
    'PolicyManager.applyEnvelope (changed, FULL fsync)',
    name,
    bytes,
    measure(() => {
      const r = manager.applyEnvelope(versions[v++ % versions.length], 'bench');
      if (!r.ok && r.error.code !== 'GUARD_POLICY_ROLLBACK') throw r.error;
    }),
  );
  row(
    'PolicyManager.applyEnvelope (unchanged)',
    name,
    bytes,
    measure(() => manager.applyEnvelope(versions[(v - 1) % versions.length], 'bench')),
  );
  const matcher = manager.matcher();
  const obs = {
    kind: 'process',
    pid: 1234,
    ppid: 1,
    startTime: 1,
    name: 'bash',
    exe: '/usr/bin/bash',
    argv: ['bash', '-c', 'make test'],
    owner: { uid: 1000, user: 'dev', groups: [], home: '/home/dev' },
    tty: null,
  };
  row(
    'one match (no rule hits, worst case)',
    name,
    bytes,
    measure(() => matcher.match(obs, { now, hostname: 'h', deviceTags: [] })),
  );
  db.close();
  rmSync(dir, { recursive: true, force: true });
}

const fmt = (ms) => (ms < 0.01 ? `${(ms * 1000).toFixed(2)} µs` : `${ms.toFixed(3)} ms`);
const pad = (s, n) => String(s).padEnd(n);
console.log(
  `policy verification — node ${process.version}, ${new Date().toISOString()}, sha256(example)=${createHash('sha256').update(JSON.stringify(example)).digest('hex').slice(0, 12)}`,
);
console.log(
  `${pad('step', 52)}${pad('policy', 24)}${pad('envelope', 12)}${pad('n', 8)}${pad('p50', 12)}${pad('p99', 12)}mean`,
);
for (const r of rows) {
  console.log(
    `${pad(r.what, 52)}${pad(r.policy, 24)}${pad(`${(r.bytes / 1024).toFixed(1)} KiB`, 12)}${pad(r.n, 8)}${pad(fmt(r.p50), 12)}${pad(fmt(r.p99), 12)}${fmt(r.mean)}`,
  );
}
const byPolicy = new Map();
for (const r of rows) {
  const m = byPolicy.get(r.policy) ?? {};
  m[r.what] = r.p50;
  byPolicy.set(r.policy, m);
}
for (const [p, m] of byPolicy) {
  const full = m['full verifyPolicyEnvelope'];
  const sigOnly = m['signature only (PAE + Ed25519 verify)'];
  console.log(
    `${p}: full verification p50 ${fmt(full)} = ${(full / sigOnly).toFixed(1)}× the signature check alone (${fmt(sigOnly)})`,
  );
}

// ---- worst-case per-launch argv match cost: RE2 (now) vs the RegExp path it replaced -------------
//
// Issue 12 item 6: a 1,000-rule policy, a fuzzed argv corpus (seeded, so every run sees the same
// corpus) plus command lines crafted against each pattern family. "RE2" is the matcher in force
// (dist/policy/matcher.js). "RegExp (before)" is the code it replaced, kept measurable here: the
// same 4 KiB window, JavaScript RegExp with the `u` flag, alternations of 100 patterns as a
// prefilter, then pattern by pattern. It runs in a worker that is stopped when one launch takes
// longer than LEGACY_LAUNCH_TIMEOUT_MS, so the table says "> 3000 ms" instead of waiting minutes.
const ARGV_RULES = 1000;
const LEGACY_LAUNCH_TIMEOUT_MS = 3000;
const CORPUS_RANDOM = 300;

/** Deterministic PRNG (mulberry32): the corpus is the same on every run. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const argvPolicies = {
  'realistic (1,000 rules)': (i) => [
    `^\\S*python[0-9.]* -m tool${i}(?: |$)`,
    `--tool${i}-(?:yolo|dangerously-skip-permissions)\\b`,
  ],
  // Patterns the old lint passed; the last one also defeats RE2's DFA (2^13 states), so RE2 runs
  // its NFA: the linear worst case.
  'adversarial (1,000 rules)': (i) => [
    [`a.*b.*c.*d.*e${i}`, `\\d+\\d+\\d+\\d+x${i}`, `(?:a|b)*a(?:a|b){12}z${i}`][i % 3],
  ],
};

function argvCorpus() {
  const rnd = prng(12);
  const alphabet = 'abcdexz0123456789 -/._=';
  const corpus = [];
  for (let k = 0; k < CORPUS_RANDOM; k++) {
    const len = rnd() < 0.1 ? 64 * 1024 : Math.floor(rnd() ** 3 * 4096) + 1;
    let s = '';
    for (let j = 0; j < len; j++) s += alphabet[Math.floor(rnd() * alphabet.length)];
    corpus.push({ kind: 'random', argv: ['tool', ...s.split(' ').filter(Boolean)] });
  }
  for (const n of [4 * 1024, 64 * 1024]) {
    const ab = Array.from({ length: n }, () => (rnd() < 0.5 ? 'a' : 'b')).join('');
    corpus.push(
      { kind: `crafted abcd ${n / 1024} KiB`, argv: ['tool', 'abcd'.repeat(n / 4)] },
      { kind: `crafted digits ${n / 1024} KiB`, argv: ['tool', `x ${'1'.repeat(n - 3)}!`] },
      { kind: `crafted a|b ${n / 1024} KiB`, argv: ['tool', ab] },
    );
  }
  return corpus;
}

function argvPolicyBody(name) {
  const make = argvPolicies[name];
  return fresh(
    {
      ...example,
      rules: Array.from({ length: ARGV_RULES }, (_, i) => ({
        id: `argv-${i}`,
        name: `Argv ${i}`,
        action: 'block',
        message: 'm',
        process: { argv_patterns: make(i) },
      })),
      exceptions: [],
    },
    1,
  );
}

const LEGACY_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const MAX = 4 * 1024, CHUNK = 100;
const sources = workerData.patterns.flat();
const rules = workerData.patterns.map((ps) => ps.map((p) => new RegExp(p, 'u')));
const prefilter = [];
for (let i = 0; i < sources.length; i += CHUNK)
  prefilter.push(new RegExp(sources.slice(i, i + CHUNK).map((s) => '(?:' + s + ')').join('|'), 'u'));
function join(argv) { let out = ''; for (const a of argv) { out = out === '' ? a : out + ' ' + a; if (out.length >= MAX) return out.slice(0, MAX); } return out; }
workerData.corpus.forEach((c, i) => {
  const t = performance.now();
  const s = join(c.argv);
  let hit = null;
  if (prefilter.some((re) => re.test(s))) {
    for (let r = 0; r < rules.length && hit === null; r++) if (rules[r].some((re) => re.test(s))) hit = r;
  }
  parentPort.postMessage({ i, ms: performance.now() - t, hit });
});
parentPort.postMessage({ done: true });
`;

/** Per-launch ms of the RegExp path over the corpus; a launch past the timeout ends the run. */
function legacyTimes(patterns, corpus) {
  return new Promise((resolvePromise) => {
    const times = [];
    let timedOut = null;
    let worstMs = -1;
    let worstKind = '';
    const worker = new Worker(LEGACY_WORKER, { eval: true, workerData: { patterns, corpus } });
    let timer = null;
    const arm = (i) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = corpus[i]?.kind ?? '?';
        worker.terminate();
      }, LEGACY_LAUNCH_TIMEOUT_MS);
    };
    arm(0);
    worker.on('message', (m) => {
      if (m.done) {
        clearTimeout(timer);
        worker.terminate();
        return;
      }
      times.push(m.ms);
      if (m.ms > worstMs) {
        worstMs = m.ms;
        worstKind = corpus[m.i]?.kind ?? '?';
      }
      arm(m.i + 1);
    });
    worker.on('exit', () => {
      clearTimeout(timer);
      resolvePromise({ times, timedOut, worstKind });
    });
  });
}

function summarize(times) {
  const s = [...times].sort((a, b) => a - b);
  const pct = (p) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
  return { n: s.length, p50: pct(50), p99: pct(99), max: s[s.length - 1] };
}

const corpus = argvCorpus();
const argvRows = [];
for (const name of Object.keys(argvPolicies)) {
  const b = argvPolicyBody(name);
  const m = compileMatcher(b, { platform: 'linux', homes: [] });
  const obs = (argv) => ({
    kind: 'process',
    pid: 1234,
    ppid: 1,
    startTime: 1,
    name: 'tool',
    exe: '/usr/bin/tool',
    argv,
    owner: { uid: 1000, user: 'dev', groups: [], home: '/home/dev' },
    tty: null,
  });
  const ctx = { now, hostname: 'h', deviceTags: [] };
  let t = performance.now();
  m.match(obs(['warm', 'up']), ctx);
  const firstMs = performance.now() - t;
  const times = [];
  let worst = '';
  let worstMs = -1;
  for (const c of corpus) {
    t = performance.now();
    m.match(obs(c.argv), ctx);
    const ms = performance.now() - t;
    times.push(ms);
    if (ms > worstMs) {
      worstMs = ms;
      worst = c.kind;
    }
  }
  argvRows.push({ engine: 'RE2 (now)', policy: name, first: firstMs, worst, ...summarize(times) });
  const legacy = await legacyTimes(
    b.rules.map((r) => r.process.argv_patterns),
    corpus,
  );
  const ls = summarize(legacy.times);
  argvRows.push({
    engine: 'RegExp (before)',
    policy: name,
    first: null,
    worst: legacy.timedOut ? `${legacy.timedOut} (stopped)` : legacy.worstKind,
    ...ls,
    max: legacy.timedOut ? `> ${LEGACY_LAUNCH_TIMEOUT_MS} ms` : ls.max,
  });
}
console.log(
  `\nper-launch argv match cost, ${ARGV_RULES}-rule policies, fuzzed corpus of ${corpus.length} command lines (${CORPUS_RANDOM} random up to 64 KiB + 6 crafted); matcher window ${4} KiB`,
);
console.log(
  `${pad('engine', 18)}${pad('policy', 28)}${pad('launches', 10)}${pad('p50', 12)}${pad('p99', 12)}${pad('worst', 14)}${pad('first match', 14)}worst on`,
);
for (const r of argvRows) {
  const f = (v) => (typeof v === 'number' ? fmt(v) : (v ?? '—'));
  console.log(
    `${pad(r.engine, 18)}${pad(r.policy, 28)}${pad(r.n, 10)}${pad(f(r.p50), 12)}${pad(f(r.p99), 12)}${pad(f(r.max), 14)}${pad(f(r.first), 14)}${r.worst}`,
  );
}
