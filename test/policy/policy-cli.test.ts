/**
 * The offline authoring tools through their command modules' run(): keygen → sign → verify round
 * trip, sign's refusals, lint catching each mistake kind with a clear message, diff.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CommandContext, CommandOutput, GuardctlCommand } from '../../src/cli/command.js';
import { COMMANDS } from '../../src/cli/command-list.js';
import { policyDiffCommand } from '../../src/cli/commands/policy-diff.js';
import { policyKeygenCommand } from '../../src/cli/commands/policy-keygen.js';
import { policyLintCommand } from '../../src/cli/commands/policy-lint.js';
import { policySignCommand } from '../../src/cli/commands/policy-sign.js';
import { policyVerifyCommand } from '../../src/cli/commands/policy-verify.js';
import { EXIT } from '../../src/cli/error-message.js';
import { GuardError } from '../../src/common/errors.js';
import { lintPolicy } from '../../src/policy/policy-lint.js';
import type { PolicyBody } from '../../src/policy/policy-types.js';
import { tempDir } from '../helpers/tmp.js';
import { body } from './policy-helpers.js';

const dir = tempDir('tg-cli-');
const DAY = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
/** Bodies valid against the real clock (the CLI uses Date.now()). */
const live = (version: number, extra: Partial<Record<keyof PolicyBody, unknown>> = {}): PolicyBody =>
  body(version, { issued_at: iso(Date.now() - DAY), expires_at: iso(Date.now() + 30 * DAY), ...extra });

function run(
  cmd: GuardctlCommand,
  args: string[],
  options: Record<string, unknown> = {},
  configFile = join(dir, 'none.json'),
) {
  const ctx: CommandContext = {
    args,
    options,
    json: false,
    configFile,
    sockets: { public: join(dir, 'p.sock'), admin: join(dir, 'a.sock') },
    call: () => Promise.reject(new Error('offline commands must not call the daemon')),
  };
  return cmd.run(ctx);
}

async function code(p: Promise<CommandOutput>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GuardError) return err.code;
    throw err;
  }
  return 'resolved';
}

function write(name: string, value: unknown): string {
  const f = join(dir, name);
  writeFileSync(f, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
  return f;
}

describe('guardctl policy (offline authoring)', () => {
  it('is registered, offline, and sorted', () => {
    const names = COMMANDS.map((c) => c.name);
    for (const n of ['policy keygen', 'policy sign', 'policy verify', 'policy lint', 'policy diff']) {
      const c = COMMANDS.find((x) => x.name === n);
      expect(c?.needsDaemon).toBe(false);
      expect(c?.needsRoot).toBe(false);
    }
    expect([...names].sort()).toEqual(names);
  });

  it('keygen → sign → verify round trip; keys 0600, no overwrite', async () => {
    const kg = await run(policyKeygenCommand, [], { out: join(dir, 'admin') });
    const kd = kg.data as {
      keyid: string;
      private_key_file: string;
      public_key_file: string;
      public_key_base64: string;
    };
    expect(statSync(kd.private_key_file).mode & 0o777).toBe(0o600);
    expect(readFileSync(kd.public_key_file, 'utf8')).toContain('BEGIN PUBLIC KEY');
    expect(await code(run(policyKeygenCommand, [], { out: join(dir, 'admin') }))).toBe('GUARD_CLI_USAGE');

    const bodyFile = write('v5.json', live(5));
    const out = join(dir, 'v5.dsse.json');
    const signed = await run(policySignCommand, [bodyFile], { key: [kd.private_key_file], out });
    expect(signed.data).toMatchObject({ version: 5, keyids: [kd.keyid] });
    // Signs the bytes as written: the payload is the file, byte for byte.
    const env = JSON.parse(readFileSync(out, 'utf8'));
    expect(Buffer.from(env.payload, 'base64').toString('utf8')).toBe(readFileSync(bodyFile, 'utf8'));

    const ok = await run(policyVerifyCommand, [out], { key: [kd.public_key_file] });
    expect(ok.text).toMatch(/^OK: policy v5 /);
    expect(ok.data).toMatchObject({ ok: true, version: 5, signed_by: [kd.keyid] });
    // Inline base64 key works too.
    expect((await run(policyVerifyCommand, [out], { key: [kd.public_key_base64] })).data).toMatchObject({
      ok: true,
    });
    // Keys from the config when --key is absent.
    const cfg = write('config.json', { policy: { trusted_keys: [kd.public_key_base64], threshold: 1 } });
    expect((await run(policyVerifyCommand, [out], {}, cfg)).data).toMatchObject({ ok: true });

    // Why not: another key, a tampered file, threshold 2.
    const other = (await run(policyKeygenCommand, [], { out: join(dir, 'other') })).data as {
      public_key_file: string;
    };
    expect(await code(run(policyVerifyCommand, [out], { key: [other.public_key_file] }))).toBe(
      'GUARD_POLICY_UNTRUSTED_KEY',
    );
    const tampered = write('tampered.json', {
      ...env,
      payload: Buffer.from(JSON.stringify(live(50))).toString('base64'),
    });
    expect(await code(run(policyVerifyCommand, [tampered], { key: [kd.public_key_file] }))).toBe(
      'GUARD_POLICY_SIGNATURE_INVALID',
    );
    expect(await code(run(policyVerifyCommand, [out], { key: [kd.public_key_file], threshold: '2' }))).toBe(
      'GUARD_POLICY_THRESHOLD_NOT_MET',
    );
    expect(await code(run(policyVerifyCommand, [bodyFile], { key: [kd.public_key_file] }))).toBe(
      'GUARD_POLICY_UNSIGNED',
    );

    // sign --previous: same version with other content, or lower, is refused; higher is fine.
    expect(
      await code(
        run(policySignCommand, [write('v5b.json', live(5, { mode: 'monitor' }))], {
          key: [kd.private_key_file],
          previous: out,
        }),
      ),
    ).toBe('GUARD_POLICY_EQUIVOCATION');
    expect(
      await code(
        run(policySignCommand, [write('v4.json', live(4))], { key: [kd.private_key_file], previous: out }),
      ),
    ).toBe('GUARD_POLICY_ROLLBACK');
    const v6 = await run(policySignCommand, [write('v6.json', live(6))], {
      key: [kd.private_key_file],
      previous: out,
    });
    expect(v6.data).toMatchObject({ version: 6 });
    expect(JSON.parse(v6.text).payloadType).toBe('application/vnd.toolguard.policy.v1+json');
  });

  it('sign refuses an invalid body, an expired body, an envelope, and missing keys', async () => {
    const key = (await run(policyKeygenCommand, [], { out: join(dir, 'signer') })).data as {
      private_key_file: string;
    };
    const k = [key.private_key_file];
    expect(
      await code(run(policySignCommand, [write('bad.json', live(3, { mode: 'loud' }))], { key: k })),
    ).toBe('GUARD_POLICY_SCHEMA');
    expect(
      await code(
        run(
          policySignCommand,
          [
            write(
              'old.json',
              live(3, { issued_at: iso(Date.now() - 9 * DAY), expires_at: iso(Date.now() - DAY) }),
            ),
          ],
          { key: k },
        ),
      ),
    ).toBe('GUARD_POLICY_EXPIRED');
    const unsafe = live(3);
    const unsafeBody = { ...unsafe, rules: [{ ...unsafe.rules[0], process: { names: ['node'] } }] };
    expect(await code(run(policySignCommand, [write('unsafe.json', unsafeBody)], { key: k }))).toBe(
      'GUARD_POLICY_UNSAFE_RULE',
    );
    expect(await code(run(policySignCommand, [write('ok.json', live(3))], {}))).toBe('GUARD_CLI_USAGE');
    expect(await code(run(policySignCommand, [join(dir, 'missing.json')], { key: k }))).toBe(
      'GUARD_CLI_USAGE',
    );
    expect(await code(run(policySignCommand, [write('notjson.json', 'rules: []')], { key: k }))).toBe(
      'GUARD_POLICY_PAYLOAD_NOT_JSON',
    );
  });

  it('the example policy in policy/ lints clean', () => {
    const example = JSON.parse(
      readFileSync(new URL('../../policy/example-policy.json', import.meta.url), 'utf8'),
    );
    // Judged at the example's own issue date (its clock, not the wall clock): the example carries
    // real dates an admin re-dates before signing, and this test must pass on any day.
    const findings = lintPolicy(example, { now: Date.parse(example.issued_at) + 60_000 });
    expect(findings).toEqual([]);
  });
});

describe('policy lint catches each kind of mistake', () => {
  const base = live(2);
  const rule = base.rules[0] as PolicyBody['rules'][number];
  const cases: [string, unknown, string, string, RegExp][] = [
    ['schema violation', { ...base, mode: 'loud' }, 'schema', '$.mode', /must be one of/],
    [
      'duplicate rule ids',
      { ...base, rules: [rule, { ...rule, action: 'warn' }] },
      'duplicate-id',
      '$.rules[1].id',
      /duplicate rule id "claude-code"/,
    ],
    [
      'invalid regex',
      { ...base, rules: [{ ...rule, process: { argv_patterns: ['claude(('] } }] },
      'regex',
      '$.rules[0].process.argv_patterns[0]',
      /not a valid regular expression/,
    ],
    [
      'invalid glob',
      { ...base, rules: [{ ...rule, paths: ['~/.local/[claude'] }] },
      'glob',
      '$.rules[0].paths[0]',
      /not a valid glob/,
    ],
    [
      'invalid semver range',
      { ...base, rules: [{ ...rule, packages: [{ ecosystem: 'npm', name: 'x', range: '>=banana' }] }] },
      'semver',
      '$.rules[0].packages[0].range',
      /not a valid semver range/,
    ],
    [
      'argv pattern RE2 cannot run (backreference)',
      { ...base, rules: [{ ...rule, process: { argv_patterns: ['(claude) \\1'] } }] },
      'regex-unsupported',
      '$.rules[0].process.argv_patterns[0]',
      /linear-time RE2 engine does not support/,
    ],
    [
      'exception naming an unknown rule',
      { ...base, exceptions: [{ rule: 'claude', users: ['alice'], expires_at: base.expires_at }] },
      'unknown-rule',
      '$.exceptions[0].rule',
      /names rule "claude", which this policy does not have/,
    ],
    [
      'rule with no criteria',
      { ...base, rules: [{ id: 'empty', name: 'Empty', action: 'block', message: 'm' }] },
      'unreachable',
      '$.rules[0]',
      /can never match/,
    ],
    [
      'rule shadowed by a stronger one',
      {
        ...base,
        rules: [
          rule,
          {
            ...rule,
            id: 'claude-warn',
            action: 'warn',
            paths: [],
            packages: [],
            process: { names: ['claude'] },
          },
        ],
      },
      'unreachable',
      '$.rules[1]',
      /unreachable: everything it matches is matched by rule "claude-code"/,
    ],
    [
      'overlapping rules',
      {
        ...base,
        rules: [
          rule,
          {
            ...rule,
            id: 'claude-2',
            action: 'audit',
            paths: [],
            packages: [],
            process: { names: ['claude', 'claude2'] },
          },
        ],
      },
      'overlap',
      '$.rules[0]',
      /overlap on process.names "claude"/,
    ],
    [
      'unsafe rule',
      { ...base, rules: [{ ...rule, process: { exe_globs: ['/usr/**'] } }] },
      'unsafe',
      '$.rules[0].process.exe_globs[0]',
      /would kill/,
    ],
    [
      'expired policy',
      { ...base, issued_at: iso(Date.now() - 9 * DAY), expires_at: iso(Date.now() - DAY) },
      'expired',
      '$.expires_at',
      /in the past/,
    ],
  ];

  it.each(cases)('%s', async (_name, value, kind, path, message) => {
    const f = write(`lint-${kind}-${path.replace(/\W/g, '')}.json`, value);
    const out = await run(policyLintCommand, [f]);
    const data = out.data as { findings: { kind: string; path: string; message: string }[] };
    const hit = data.findings.find((x) => x.kind === kind && x.path === path);
    expect(hit, JSON.stringify(data.findings)).toBeDefined();
    expect(hit?.message).toMatch(message);
    expect(out.text).toContain(path);
    const isError = kind !== 'overlap' && !(kind === 'unreachable' && path === '$.rules[1]');
    expect(out.exitCode).toBe(isError ? EXIT.CHECK_FAILED : EXIT.OK);
  });

  it('a clean body is OK with exit 0, and lint reads envelopes too', async () => {
    const out = await run(policyLintCommand, [write('clean.json', base)]);
    expect(out.text).toBe('OK: no problems found');
    expect(out.exitCode).toBe(EXIT.OK);
  });
});

describe('policy diff', () => {
  it('shows header, added/removed/changed rules and exceptions', async () => {
    const a = live(5);
    const r = a.rules[0] as PolicyBody['rules'][number];
    const b = {
      ...live(6),
      mode: 'monitor',
      rules: [
        { ...r, action: 'warn', process: { ...r.process, names: ['claude', 'claude.exe'] } },
        {
          id: 'gemini-cli',
          name: 'Gemini CLI',
          action: 'block',
          message: 'no',
          packages: [{ ecosystem: 'npm', name: '@google/gemini-cli', range: '*' }],
        },
      ],
      exceptions: [{ rule: 'claude-code', users: ['alice'], expires_at: a.expires_at }],
    };
    const out = await run(policyDiffCommand, [write('d-a.json', a), write('d-b.json', b)]);
    expect(out.text).toContain('version     5 → 6');
    expect(out.text).toContain('mode        "enforce" → "monitor"');
    expect(out.text).toContain('+ rule gemini-cli (block): Gemini CLI');
    expect(out.text).toContain('~ rule claude-code');
    expect(out.text).toContain('    action: "block" → "warn"');
    expect(out.text).toContain('    process.names: + claude.exe');
    expect(out.text).toContain('+ exception rule claude-code users=alice until');
    expect((await run(policyDiffCommand, [write('d-c.json', a), write('d-d.json', a)])).text).toBe(
      'no differences',
    );
  });
});
