/**
 * Policy verification cost, measured: what a device pays to accept a policy (at start and on every
 * changed download), split into signature checking vs the full pipeline (JSON, schema with paths,
 * semantic checks, safety probes, matcher compilation for three platforms, freshness), for the
 * example ban list and for a synthetic large policy. Also the cost of applying it through the
 * PolicyManager (state DB writes, matcher swap) and of one match against the compiled matcher.
 *
 * Run: npm run build && node bench/policy.bench.js
 */
import { createHash, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** A large, realistic policy: RULES rules of the claude-code shape with distinct identifiers. */
const RULES = 500;
const large = fresh(
  {
    ...example,
    rules: Array.from({ length: RULES }, (_, i) => ({
      id: `tool-${i}`,
      name: `Tool ${i}`,
      action: i % 3 === 0 ? 'warn' : 'block',
      message: `Tool ${i} is not approved on company machines.`,
      url: `https://intranet.example/approved-ai-tools#tool-${i}`,
      process: {
        names: [`tool${i}`, `tool${i}.exe`],
        exe_globs: [`**/node_modules/@vendor${i}/tool/**`],
        argv_patterns: [`^\\S*python[0-9.]* -m tool${i}(?: |$)`],
        script_packages: [`@vendor${i}/tool`],
      },
      packages: [{ ecosystem: 'npm', name: `@vendor${i}/tool`, range: '*' }],
      paths: [`~/.local/share/tool${i}/versions/*`, `~/.vscode/extensions/vendor${i}.tool-*`],
    })),
    exceptions: [],
  },
  1,
);

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
