/**
 * The attack suite of issue 3 (TUF's attack list applied to one signed document): every case is
 * refused with its own error code, a `policy.rejected` event names that code, and the previous
 * policy stays in force (same version, same hash, still matching the banned tool).
 *
 * Issue 12 item 6 adds the rules that would hurt the machine they run on: broad names, exe globs,
 * hashes and path globs hitting this machine's init, shells, interpreters, package managers, /etc,
 * /root, guardd's state and install dirs (judged by rule-safety.ts against real probes of this
 * machine), and argv patterns the linear-time RE2 engine refuses.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../src/common/errors.js';
import { signEnvelope } from '../../src/policy/dsse.js';
import { POLICY_PAYLOAD_TYPE, type PolicyBody } from '../../src/policy/policy-types.js';
import { tempDir } from '../helpers/tmp.js';
import { body, CTX, makeManager, NOW, newKey, proc, sign } from './policy-helpers.js';

const root = tempDir('tg-pol-');
const A = newKey();
const B = newKey();
const EVIL = newKey();
const DAY = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString();

type Attack = {
  readonly name: string;
  readonly code: ErrorCode;
  /** Distinct trusted keys required (the good v5 is signed by A and B). */
  readonly threshold?: number;
  readonly maxBytes?: number;
  /** `dir` is the device's state dir (protected by the safety check). */
  readonly text: (dir: string) => string;
};

function withRule(rule: Record<string, unknown>): PolicyBody {
  const base = body(6);
  return { ...base, rules: [{ ...base.rules[0], ...rule } as PolicyBody['rules'][number]] };
}
function withProcess(p: Record<string, unknown>): PolicyBody {
  return withRule({ process: p });
}

const schemaCases: [string, PolicyBody, string][] = [
  ['rule id with spaces', withRule({ id: 'Claude Code' }), '$.rules[0].id'],
  ['rule name empty', withRule({ name: '' }), '$.rules[0].name'],
  ['rule action unknown', withRule({ action: 'kill' }), '$.rules[0].action'],
  ['rule message missing', withRule({ message: undefined }), '$.rules[0].message'],
  ['rule url not a URL', withRule({ url: 'intranet/ai' }), '$.rules[0].url'],
  ['rule unknown field', withRule({ severity: 'high' }), '$.rules[0].severity'],
  ['process.names with a path', withProcess({ names: ['/usr/bin/claude'] }), '$.rules[0].process.names[0]'],
  ['process.names not strings', withProcess({ names: [42] }), '$.rules[0].process.names[0]'],
  [
    'process.exe_globs unbalanced',
    withProcess({ exe_globs: ['/opt/[claude/**'] }),
    '$.rules[0].process.exe_globs[0]',
  ],
  [
    'process.argv_patterns bad regex',
    withProcess({ argv_patterns: ['claude(('] }),
    '$.rules[0].process.argv_patterns[0]',
  ],
  [
    'process.script_packages bad name',
    withProcess({ script_packages: ['Not A Package'] }),
    '$.rules[0].process.script_packages[0]',
  ],
  ['process.sha256 not hex', withProcess({ sha256: ['abc'] }), '$.rules[0].process.sha256[0]'],
  ['process unknown field', withProcess({ cmdline: ['claude'] }), '$.rules[0].process.cmdline'],
  [
    'packages ecosystem',
    withRule({ packages: [{ ecosystem: 'pip', name: 'aider-chat', range: '*' }] }),
    '$.rules[0].packages[0].ecosystem',
  ],
  [
    'packages range',
    withRule({ packages: [{ ecosystem: 'npm', name: 'x', range: 'latest!' }] }),
    '$.rules[0].packages[0].range',
  ],
  [
    'packages name missing',
    withRule({ packages: [{ ecosystem: 'npm', range: '*' }] }),
    '$.rules[0].packages[0].name',
  ],
  ['paths relative', withRule({ paths: ['claude/bin'] }), '$.rules[0].paths[0]'],
  ['platforms unknown', withRule({ platforms: ['solaris'] }), '$.rules[0].platforms[0]'],
  [
    'duplicate rule ids',
    { ...body(6), rules: [body(6).rules[0], body(6).rules[0]] } as PolicyBody,
    '$.rules[1].id',
  ],
  ['version zero', body(0), '$.version'],
  ['mode unknown', body(6, { mode: 'kill-all' }), '$.mode'],
  ['issued_at not a date', body(6, { issued_at: 'yesterday' }), '$.issued_at'],
  ['expires before issued', body(6, { expires_at: iso(NOW - 2 * DAY) }), '$.expires_at'],
  // Valid RFC 3339 (a leap second) but Date.parse gives NaN: such a policy would never expire.
  ['expires_at a leap second', body(6, { expires_at: '2026-12-31T23:59:60Z' }), '$.expires_at'],
  ['issued_at a leap second', body(6, { issued_at: '2026-06-30T23:59:60Z' }), '$.issued_at'],
  [
    'exception expires_at a leap second',
    body(6, { exceptions: [{ rule: 'claude-code', users: ['alice'], expires_at: '2026-12-31T23:59:60Z' }] }),
    '$.exceptions[0].expires_at',
  ],
  ['schema id', body(6, { schema: 'toolguard.policy/v2' }), '$.schema'],
  [
    'exception without criteria',
    body(6, { exceptions: [{ rule: 'claude-code', expires_at: iso(NOW + DAY) }] }),
    '$.exceptions[0]',
  ],
  [
    'exception without expiry',
    body(6, { exceptions: [{ rule: 'claude-code', users: ['alice'] }] }),
    '$.exceptions[0].expires_at',
  ],
];

const unsafeCases: [string, PolicyBody, string][] = [
  ['bans node by name', withProcess({ names: ['node'] }), '$.rules[0].process.names[0]'],
  ['bans systemd by name', withProcess({ names: ['systemd'] }), '$.rules[0].process.names[0]'],
  ['bans a kernel thread', withProcess({ names: ['kthreadd'] }), '$.rules[0].process.names[0]'],
  ['bans guardd', withProcess({ names: ['guardd'] }), '$.rules[0].process.names[0]'],
  ['exe glob **', withProcess({ exe_globs: ['**'] }), '$.rules[0].process.exe_globs[0]'],
  [
    'exe glob of node binaries',
    withProcess({ exe_globs: ['**/bin/node'] }),
    '$.rules[0].process.exe_globs[0]',
  ],
  [
    'exe glob of systemd',
    withProcess({ exe_globs: ['/usr/lib/systemd/*'] }),
    '$.rules[0].process.exe_globs[0]',
  ],
  ['argv matching empty', withProcess({ argv_patterns: ['x*'] }), '$.rules[0].process.argv_patterns[0]'],
  [
    'argv matching guardd',
    withProcess({ argv_patterns: ['toolguard'] }),
    '$.rules[0].process.argv_patterns[0]',
  ],
  ['path of every home', withRule({ paths: ['~/**'] }), '$.rules[0].paths[0]'],
  ['path of ~/.ssh', withRule({ paths: ['~/.ssh'] }), '$.rules[0].paths[0]'],
  [
    'quarantine toolguard',
    withRule({ packages: [{ ecosystem: 'npm', name: 'toolguard', range: '*' }] }),
    '$.rules[0].packages[0].name',
  ],
];

/** What this machine's /bin/sh, python3 and bash really are (the probes resolve links the same way). */
const SH_REAL = realpathSync('/bin/sh');
const BASH_SHA256 = createHash('sha256')
  .update(readFileSync(realpathSync('/bin/bash')))
  .digest('hex');

/**
 * Issue 12's examples, each refused at apply time with GUARD_POLICY_UNSAFE_RULE. `dir` is the
 * device's state dir, which the manager protects (PolicyManagerOptions.protectedDirs).
 */
const machineCases: [string, (dir: string) => PolicyBody, string][] = [
  ['name python3.11', () => withProcess({ names: ['python3.11'] }), '$.rules[0].process.names[0]'],
  ['name npm', () => withProcess({ names: ['npm'] }), '$.rules[0].process.names[0]'],
  ['name env', () => withProcess({ names: ['env'] }), '$.rules[0].process.names[0]'],
  [
    'exe /usr/bin/dash',
    () => withProcess({ exe_globs: ['/usr/bin/dash'] }),
    '$.rules[0].process.exe_globs[0]',
  ],
  [
    `exe of what /bin/sh resolves to here (${SH_REAL})`,
    () => withProcess({ exe_globs: [SH_REAL] }),
    '$.rules[0].process.exe_globs[0]',
  ],
  [
    `name of what /bin/sh resolves to here (${basename(SH_REAL)})`,
    () => withProcess({ names: [basename(SH_REAL)] }),
    '$.rules[0].process.names[0]',
  ],
  ['sha256 of bash', () => withProcess({ sha256: [BASH_SHA256] }), '$.rules[0].process.sha256[0]'],
  [
    'sha256 of bash, upper case',
    () => withProcess({ sha256: [BASH_SHA256.toUpperCase()] }),
    '$.rules[0].process.sha256[0]',
  ],
  ['path under /etc', () => withRule({ paths: ['/etc/claude/*'] }), '$.rules[0].paths[0]'],
  [
    'path under /etc through a brace',
    () => withRule({ paths: ['/{etc,opt}/claude/*'] }),
    '$.rules[0].paths[0]',
  ],
  ['path under /root', () => withRule({ paths: ['/root/.ssh/id_*'] }), '$.rules[0].paths[0]'],
  ['path of /root itself', () => withRule({ paths: ['/root'] }), '$.rules[0].paths[0]'],
  [
    'path under the default state dir',
    () => withRule({ paths: ['/var/lib/toolguard/**'] }),
    '$.rules[0].paths[0]',
  ],
  [
    'path under this device state dir',
    (dir) => withRule({ paths: [`${dir}/quarantine/*`] }),
    '$.rules[0].paths[0]',
  ],
  ['path holding this device state dir', (dir) => withRule({ paths: [`${dir}`] }), '$.rules[0].paths[0]'],
  ['path under /opt/toolguard', () => withRule({ paths: ['/opt/toolguard/**'] }), '$.rules[0].paths[0]'],
  ['path of /opt (holds /opt/toolguard)', () => withRule({ paths: ['/opt'] }), '$.rules[0].paths[0]'],
  [
    'argv of guardd',
    () => withProcess({ argv_patterns: ['bin/guardd\\.js'] }),
    '$.rules[0].process.argv_patterns[0]',
  ],
  [
    'exe of the node running guardd',
    () => withProcess({ exe_globs: [realpathSync(process.execPath)] }),
    '$.rules[0].process.exe_globs[0]',
  ],
  [
    'script package npm',
    () => withProcess({ script_packages: ['npm'] }),
    '$.rules[0].process.script_packages[0]',
  ],
];

/** argv patterns the linear-time engine refuses: GUARD_POLICY_REGEX_UNSUPPORTED, naming the path. */
const regexCases: [string, string][] = [
  ['backreference', '(claude)\\1'],
  ['lookahead', 'claude(?=--yolo)'],
  ['negative lookbehind', '(?<!no-)claude'],
  ['\\u escape', 'claude\\u00e9'],
  ['repeat count above 1000', 'x{1001}'],
  ['compiled size above the limit', '.{1000}.{1000}.{1000}'],
];

const attacks: Attack[] = [
  {
    name: 'bad signature (one payload byte changed)',
    code: 'GUARD_POLICY_SIGNATURE_INVALID',
    text: () => {
      const env = JSON.parse(sign(body(6), [A]));
      const payload = Buffer.from(env.payload, 'base64');
      payload[payload.indexOf('block')] = 'B'.charCodeAt(0);
      return JSON.stringify({ ...env, payload: payload.toString('base64') });
    },
  },
  {
    name: 'bad signature bytes',
    code: 'GUARD_POLICY_SIGNATURE_INVALID',
    text: () => {
      const env = JSON.parse(sign(body(6), [A]));
      const sig = Buffer.from(env.signatures[0].sig, 'base64');
      sig[0] = (sig[0] ?? 0) ^ 0xff;
      return JSON.stringify({ ...env, signatures: [{ keyid: A.keyid, sig: sig.toString('base64') }] });
    },
  },
  {
    name: 'signature by an untrusted key',
    code: 'GUARD_POLICY_UNTRUSTED_KEY',
    text: () => sign(body(6), [EVIL]),
  },
  {
    name: 'untrusted key claiming a trusted keyid',
    code: 'GUARD_POLICY_SIGNATURE_INVALID',
    text: () => {
      const env = JSON.parse(sign(body(6), [EVIL]));
      return JSON.stringify({ ...env, signatures: [{ keyid: A.keyid, sig: env.signatures[0].sig }] });
    },
  },
  {
    name: 'below threshold',
    code: 'GUARD_POLICY_THRESHOLD_NOT_MET',
    threshold: 2,
    text: () => sign(body(6), [A, EVIL]),
  },
  {
    name: 'duplicate signatures from one key counted once',
    code: 'GUARD_POLICY_THRESHOLD_NOT_MET',
    threshold: 2,
    text: () => {
      const env = JSON.parse(sign(body(6), [A]));
      const s = env.signatures[0];
      // Same signature three times, once under B's keyid: still one distinct key.
      return JSON.stringify({ ...env, signatures: [s, s, { keyid: B.keyid, sig: s.sig }] });
    },
  },
  {
    name: 'wrong payloadType',
    code: 'GUARD_POLICY_WRONG_PAYLOAD_TYPE',
    text: () => sign(body(6), [A], 'application/json'),
  },
  {
    name: 'payload not JSON',
    code: 'GUARD_POLICY_PAYLOAD_NOT_JSON',
    text: () => sign('version: 6\nrules: []', [A]),
  },
  {
    name: 'payload not UTF-8',
    code: 'GUARD_POLICY_PAYLOAD_NOT_JSON',
    text: () => sign(Buffer.from([0x7b, 0xff, 0x7d]), [A]),
  },
  { name: 'envelope not JSON', code: 'GUARD_POLICY_MALFORMED_ENVELOPE', text: () => '<html>nope</html>' },
  {
    name: 'envelope fields wrong type',
    code: 'GUARD_POLICY_MALFORMED_ENVELOPE',
    text: () => JSON.stringify({ payload: 5, payloadType: POLICY_PAYLOAD_TYPE, signatures: [] }),
  },
  { name: 'unsigned plain JSON body', code: 'GUARD_POLICY_UNSIGNED', text: () => JSON.stringify(body(6)) },
  {
    name: 'envelope with no signatures',
    code: 'GUARD_POLICY_UNSIGNED',
    text: () => JSON.stringify({ ...JSON.parse(sign(body(6), [A])), signatures: [] }),
  },
  ...schemaCases.map(([name, b, path]) => ({
    name: `schema: ${name} (${path})`,
    code: 'GUARD_POLICY_SCHEMA' as const,
    text: () => sign(b, [A]),
    path,
  })),
  ...unsafeCases.map(([name, b, path]) => ({
    name: `unsafe: ${name} (${path})`,
    code: 'GUARD_POLICY_UNSAFE_RULE' as const,
    text: () => sign(b, [A]),
    path,
  })),
  ...machineCases.map(([name, b, path]) => ({
    name: `unsafe on this machine: ${name} (${path})`,
    code: 'GUARD_POLICY_UNSAFE_RULE' as const,
    text: (dir: string) => sign(b(dir), [A]),
    path,
  })),
  ...regexCases.map(([name, src]) => ({
    name: `argv pattern RE2 refuses: ${name}`,
    code: 'GUARD_POLICY_REGEX_UNSUPPORTED' as const,
    text: () => sign(withProcess({ names: ['claude'], argv_patterns: [src] }), [A]),
    path: '$.rules[0].process.argv_patterns[0]',
  })),
  {
    name: 'too many signatures',
    code: 'GUARD_POLICY_MALFORMED_ENVELOPE',
    text: () => {
      const env = JSON.parse(sign(body(6), [A]));
      return JSON.stringify({ ...env, signatures: Array.from({ length: 17 }, () => env.signatures[0]) });
    },
  },
  {
    name: 'oversized signature field',
    code: 'GUARD_POLICY_MALFORMED_ENVELOPE',
    text: () =>
      JSON.stringify({ ...JSON.parse(sign(body(6), [A])), signatures: [{ sig: 'A'.repeat(10_000) }] }),
  },
  {
    name: 'payload not base64',
    code: 'GUARD_POLICY_MALFORMED_ENVELOPE',
    text: () => JSON.stringify({ ...JSON.parse(sign(body(6), [A])), payload: '%%%not base64%%%' }),
  },
  { name: 'payload is a JSON array', code: 'GUARD_POLICY_SCHEMA', text: () => sign('[1,2,3]', [A]) },
  {
    name: 'payload deeply nested',
    code: 'GUARD_POLICY_SCHEMA',
    text: () => sign(`${'['.repeat(5000)}${']'.repeat(5000)}`, [A]),
  },
  { name: 'rollback to an older version', code: 'GUARD_POLICY_ROLLBACK', text: () => sign(body(4), [A]) },
  {
    name: 'equivocation: same version, other content',
    code: 'GUARD_POLICY_EQUIVOCATION',
    text: () => sign(body(5, { mode: 'monitor' }), [A]),
  },
  {
    name: 'expired',
    code: 'GUARD_POLICY_EXPIRED',
    text: () => sign(body(6, { issued_at: iso(NOW - 30 * DAY), expires_at: iso(NOW - DAY) }), [A]),
  },
  {
    name: 'not yet valid (issued beyond the clock skew)',
    code: 'GUARD_POLICY_NOT_YET_VALID',
    text: () => sign(body(6, { issued_at: iso(NOW + 600_000), expires_at: iso(NOW + 30 * DAY) }), [A]),
  },
  {
    name: 'oversized envelope',
    code: 'GUARD_POLICY_TOO_LARGE',
    maxBytes: 4096,
    text: () => sign(body(6, { rules: [{ ...body(6).rules[0], message: 'x'.repeat(5000) }] }), [A]),
  },
];

describe('attack suite: each attack refused with its code, the previous policy stays in force', () => {
  it.each(attacks.map((a) => [a.name, a] as const))('%s', (_name, attack) => {
    const dir = mkdtempSync(join(root, 'a-'));
    const h = makeManager(dir, [A, B], {
      threshold: attack.threshold ?? 1,
      maxBytes: attack.maxBytes ?? 1024 * 1024,
      protectedDirs: [dir],
    });
    try {
      h.manager.loadInitial(null);
      const good = h.manager.applyEnvelope(sign(body(5), [A, B]), 'test:good');
      expect(good).toEqual({ ok: true, version: 5, changed: true });
      const before = h.manager.current();
      const swapsBefore = h.swaps.length;

      const r = h.manager.applyEnvelope(attack.text(dir), 'test:attack');

      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.error.code).toBe(attack.code);
      if ('path' in attack) expect(r.error.message).toContain(attack.path as string);
      // Previous policy in force, untouched.
      expect(h.manager.current()).toBe(before);
      expect(h.manager.status()).toMatchObject({
        state: 'ok',
        version: 5,
        last_error: { code: attack.code },
      });
      expect(h.swaps.length).toBe(swapsBefore);
      expect(h.manager.matcher().match(proc('claude'), CTX)?.rule.id).toBe('claude-code');
      const rejected = h.events.ofType('policy.rejected');
      expect(rejected).toHaveLength(1);
      expect(rejected[0]).toMatchObject({ reason: attack.code, source: 'test:attack' });
    } finally {
      h.close();
    }
  });

  it('a schema error names the path of every error at once', () => {
    const dir = mkdtempSync(join(root, 'm-'));
    const h = makeManager(dir, [A]);
    try {
      const b = withRule({ action: 'kill', name: '', url: 'nope' });
      const r = h.manager.applyEnvelope(sign(b, [A]), 'test');
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.error.code).toBe('GUARD_POLICY_SCHEMA');
      for (const p of ['$.rules[0].action', '$.rules[0].name', '$.rules[0].url'])
        expect(r.error.message).toContain(p);
      expect(h.manager.status().state).toBe('none');
    } finally {
      h.close();
    }
  });

  it('the same bad envelope served again is one event, not one per fetch', () => {
    const dir = mkdtempSync(join(root, 'r-'));
    const h = makeManager(dir, [A]);
    try {
      h.manager.applyEnvelope(sign(body(5), [A]), 'test');
      const bad = sign(body(4), [A]);
      for (let i = 0; i < 3; i++) expect(h.manager.applyEnvelope(bad, 'test').ok).toBe(false);
      expect(h.events.ofType('policy.rejected')).toHaveLength(1);
    } finally {
      h.close();
    }
  });

  it('signatures by two distinct trusted keys meet a threshold of 2', () => {
    const dir = mkdtempSync(join(root, 't-'));
    const h = makeManager(dir, [A, B], { threshold: 2 });
    try {
      const r = h.manager.applyEnvelope(sign(body(7), [A, B]), 'test');
      expect(r).toEqual({ ok: true, version: 7, changed: true });
      expect([...(h.manager.current()?.signedBy ?? [])].sort()).toEqual([A.keyid, B.keyid].sort());
    } finally {
      h.close();
    }
  });

  it('keyid is only a hint: a signature with a wrong or missing keyid still verifies', () => {
    const dir = mkdtempSync(join(root, 'k-'));
    const h = makeManager(dir, [A, B]);
    try {
      const env = signEnvelope(JSON.stringify(body(8)), POLICY_PAYLOAD_TYPE, [B.priv]);
      const sig = env.signatures[0]?.sig as string;
      const text = JSON.stringify({ ...env, signatures: [{ sig }] });
      expect(h.manager.applyEnvelope(text, 'test')).toEqual({ ok: true, version: 8, changed: true });
      const text2 = JSON.stringify({ ...env, signatures: [{ keyid: A.keyid, sig }] });
      expect(h.manager.applyEnvelope(text2, 'test')).toEqual({ ok: true, version: 8, changed: false });
    } finally {
      h.close();
    }
  });
});

describe('the linear-time engine keeps ordinary patterns and needs no backtracking heuristics', () => {
  it('accepts the patterns the old heuristics refused, and ordinary ones', async () => {
    const { unsafeRuleIssues } = await import('../../src/policy/rule-safety.js');
    const { policyIssues } = await import('../../src/policy/policy-schema.js');
    for (const src of [
      '^aider( |$)',
      '(?:^|/)claude(?:\\s|$)',
      '--(?:yolo|dangerously-skip-permissions)\\b',
      '^claude(?: --(?:foo|bar))+$',
      '^\\S*python[0-9.]*(?:\\.exe)? -m aider(?: |$)',
      'claude[ab]+c',
      // exponential on a backtracking engine, linear on RE2: no longer refused
      '^(a+)+claude$',
      '^claude (\\w|\\d)+$',
      'claude(?:a|ab)*c',
      'claude ((x|x)y){2,}!',
      'a.*b.*c.*d.*e',
      '\\d+\\d+\\d+\\d+x',
    ]) {
      const b = withProcess({ names: ['claude'], argv_patterns: [src] });
      expect(policyIssues(b), src).toEqual([]);
      expect(unsafeRuleIssues(b), src).toEqual([]);
    }
  });
});
