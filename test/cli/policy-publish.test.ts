/**
 * `guardctl policy init` and `guardctl policy publish` against a real collector on loopback: the
 * real guardctl binary (dist/) in a child process, the collector in this process (so guardctl
 * runs asynchronously: a synchronous spawn would block the collector's event loop).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCollectorConfig, parseCollectorArgs } from '../../src/collector/collector-config.js';
import { optionsFromConfig } from '../../src/collector/collector-main.js';
import { isGuardError } from '../../src/common/errors.js';
import { generateKeyPair, parsePublicKey } from '../../src/policy/keys.js';
import { verifyPolicyEnvelope } from '../../src/policy/policy-verifier.js';
import { collectorTempDir, startTestCollector, type TestCollector } from '../helpers/collector.js';

const GUARDCTL = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'guardctl.js');

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function guardctl(args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GUARDCTL, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const dir = collectorTempDir('tg-pub-');
const trusted = generateKeyPair();
const stranger = generateKeyPair();
const trustedKeyFile = join(dir, 'signer.key');
const strangerKeyFile = join(dir, 'stranger.key');
const tokenFile = join(dir, 'admin.token');
const policyFile = join(dir, 'served', 'policy.dsse.json');

let col: TestCollector;
beforeAll(async () => {
  writeFileSync(trustedKeyFile, trusted.privateKeyPem, { mode: 0o600 });
  writeFileSync(strangerKeyFile, stranger.privateKeyPem, { mode: 0o600 });
  mkdirSync(dirname(policyFile));
  col = await startTestCollector({
    policyFile,
    policyTrustedKeys: [parsePublicKey(trusted.publicKeyPem)],
  });
  writeFileSync(tokenFile, `${col.adminToken}\n`, { mode: 0o600 });
});
afterAll(async () => {
  await col?.close();
});

/** A starting body from `policy init`, with `version` and `edit` applied. */
async function body(
  name: string,
  version: number,
  edit?: (b: Record<string, unknown>) => void,
): Promise<string> {
  const file = join(dir, name);
  const r = await guardctl(['policy', 'init', '--out', file]);
  expect(r.code, r.stderr).toBe(0);
  const b = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  b.version = version;
  edit?.(b);
  writeFileSync(file, `${JSON.stringify(b, null, 2)}\n`);
  return file;
}

const publishArgs = (file: string, key = trustedKeyFile): string[] => [
  'policy',
  'publish',
  file,
  '--key',
  key,
  '--collector',
  col.url,
  '--admin-token-file',
  tokenFile,
];

async function history(): Promise<{ publications: Record<string, unknown>[] }> {
  const res = await fetch(`${col.url}/v1/admin/policy/history`, {
    headers: { authorization: `Bearer ${col.adminToken}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { publications: Record<string, unknown>[] };
}

async function served(): Promise<{ status: number; text: string }> {
  const res = await fetch(`${col.url}/v1/policy`);
  return { status: res.status, text: await res.text() };
}

describe('guardctl policy init', () => {
  it('writes a body that passes lint, and refuses to overwrite an existing file (GUARD_CLI_FILE_EXISTS, exit 2)', async () => {
    const file = join(dir, 'init.json');
    const first = await guardctl(['policy', 'init', '--out', file]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('version');
    const lint = await guardctl(['policy', 'lint', file, '--json']);
    expect(lint.code, lint.stdout).toBe(0);
    expect(JSON.parse(lint.stdout)).toMatchObject({ ok: true });

    writeFileSync(file, 'mine\n');
    const again = await guardctl(['policy', 'init', '--out', file, '--json']);
    expect(again.code).toBe(2);
    expect(JSON.parse(again.stdout || again.stderr).error.code).toBe('GUARD_CLI_FILE_EXISTS');
    expect(readFileSync(file, 'utf8')).toBe('mine\n');
  });
});

describe('guardctl policy publish', () => {
  it('publishes: /v1/policy serves the new signed envelope, the history records who, when, version, diff and why', async () => {
    const v1 = await body('v1.json', 1);
    const r1 = await guardctl([...publishArgs(v1), '--by', 'alice@example', '--message', 'first ban list']);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stdout).toContain('published policy v1');
    const s1 = await served();
    expect(s1.status).toBe(200);
    const verified = verifyPolicyEnvelope(s1.text, {
      trustedKeys: [parsePublicKey(trusted.publicKeyPem)],
      threshold: 1,
      now: Date.now(),
      clockSkewS: 300,
      maxBytes: 1024 * 1024,
    });
    expect(verified.body.version).toBe(1);

    const v2 = await body('v2.json', 2, (b) => {
      (b.rules as Record<string, unknown>[])[0]!.action = 'block';
    });
    const before = Date.now();
    const r2 = await guardctl([
      ...publishArgs(v2),
      '--by',
      'bob@example',
      '--message',
      'block it now',
      '--json',
    ]);
    expect(r2.code, r2.stderr).toBe(0);
    const s2 = await served();
    expect(Buffer.from(JSON.parse(s2.text).payload, 'base64').toString('utf8')).toBe(
      readFileSync(v2, 'utf8'),
    );

    const h = await history();
    expect(h.publications.map((p) => p.version)).toEqual([2, 1]);
    const [p2, p1] = h.publications;
    expect(p1).toMatchObject({
      published_by: 'alice@example',
      message: 'first ban list',
      diff: null,
      verified: true,
    });
    expect(p2).toMatchObject({ published_by: 'bob@example', message: 'block it now', verified: true });
    expect(Date.parse(p2!.published_at as string)).toBeGreaterThanOrEqual(before - 1000);
    const diff = p2!.diff as {
      rulesChanged: { id: string; changes: { field: string; from: unknown; to: unknown }[] }[];
    };
    expect(diff.rulesChanged).toEqual([
      {
        id: 'example-claude-code',
        changes: [expect.objectContaining({ field: 'action', from: 'audit', to: 'block' })],
      },
    ]);
    // publications live in the database; policy_file stays the admin's (never written by the API)
    expect(readdirSync(dirname(policyFile))).toEqual([]);
  });

  it('refuses a version not greater than the served one (409 GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER, exit 5); nothing changes', async () => {
    const servedBefore = (await served()).text;
    const count = (await history()).publications.length;
    const same = await body('same.json', 2, (b) => {
      (b.rules as Record<string, unknown>[])[0]!.name = 'other content, same version';
    });
    const r = await guardctl([...publishArgs(same), '--json']);
    expect(r.code).toBe(5);
    expect(JSON.parse(r.stdout || r.stderr).error.code).toBe('GUARD_COLLECTOR_POLICY_VERSION_NOT_NEWER');
    const lower = await body('lower.json', 1);
    expect((await guardctl(publishArgs(lower))).code).toBe(5);
    expect((await served()).text).toBe(servedBefore);
    expect((await history()).publications.length).toBe(count);
  });

  it('refuses an envelope signed by an untrusted key or with a bad signature (GUARD_POLICY_*), nothing served or recorded', async () => {
    const servedBefore = (await served()).text;
    const count = (await history()).publications.length;
    const v9 = await body('v9.json', 9);
    const r = await guardctl([...publishArgs(v9, strangerKeyFile), '--json']);
    expect(r.code).toBe(5);
    expect(JSON.parse(r.stdout || r.stderr).error.code).toBe('GUARD_POLICY_UNTRUSTED_KEY');

    // a trusted key id with a signature over other bytes, straight at the API
    const good = JSON.parse(servedBefore) as { payload: string; payloadType: string; signatures: unknown[] };
    const forged = {
      ...good,
      payload: Buffer.from(readFileSync(v9, 'utf8')).toString('base64'),
    };
    const res = await fetch(`${col.url}/v1/admin/policy`, {
      method: 'POST',
      headers: { authorization: `Bearer ${col.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ envelope: forged, by: 'mallory' }),
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      'GUARD_POLICY_SIGNATURE_INVALID',
    );
    expect((await served()).text).toBe(servedBefore);
    expect((await history()).publications.length).toBe(count);
  });

  it('lint errors: every error is reported, nothing is uploaded (exit 5)', async () => {
    const count = (await history()).publications.length;
    const bad = await body('bad.json', 10, (b) => {
      const rule = (b.rules as Record<string, unknown>[])[0]!;
      rule.action = 'explode';
      rule.process = { names: ['claude'], argv_patterns: ['(a+)+$(?=x)'] };
    });
    const r = await guardctl([...publishArgs(bad), '--json']);
    expect(r.code).toBe(5);
    const err = JSON.parse(r.stdout || r.stderr).error as { code: string; message: string };
    expect(err.code).toMatch(/^GUARD_POLICY_/);
    expect(err.message).toContain('action');
    expect(err.message).toContain('argv_patterns');
    expect((await history()).publications.length).toBe(count);
  });

  it('the admin API: no token → 401; unknown fields and an oversized body are refused; no path comes from the body', async () => {
    const noAuth = await fetch(`${col.url}/v1/admin/policy`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(noAuth.status).toBe(401);
    const post = (payload: string): Promise<Response> =>
      fetch(`${col.url}/v1/admin/policy`, {
        method: 'POST',
        headers: { authorization: `Bearer ${col.adminToken}`, 'content-type': 'application/json' },
        body: payload,
      });
    const extra = await post(JSON.stringify({ envelope: {}, by: 'x', path: '../../etc/passwd' }));
    expect(extra.status).toBe(400);
    expect(((await extra.json()) as { error: { code: string } }).error.code).toBe(
      'GUARD_COLLECTOR_BAD_REQUEST',
    );
    const huge = await post(JSON.stringify({ envelope: { payload: 'A'.repeat(5 * 1024 * 1024) }, by: 'x' }));
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as { error: { code: string } }).error.code).toBe(
      'GUARD_COLLECTOR_BODY_TOO_LARGE',
    );
    expect(existsSync(join(dir, 'etc'))).toBe(false);
    expect(readdirSync(dirname(policyFile))).toEqual([]);
  });

  it('a collector without policy_trusted_keys accepts a well-formed envelope and records it unverified', async () => {
    const servedDir = collectorTempDir('tg-pub-nokeys-');
    const other = await startTestCollector({ policyFile: join(servedDir, 'policy.dsse.json') });
    try {
      const otherToken = join(servedDir, 'admin.token');
      writeFileSync(otherToken, other.adminToken, { mode: 0o600 });
      const v1 = await body('nokeys.json', 1);
      const r = await guardctl([
        ...['policy', 'publish', v1, '--key', strangerKeyFile, '--collector', other.url],
        ...['--admin-token-file', otherToken, '--by', 'carol', '--json'],
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ version: 1, verified: false, published_by: 'carol' });
      // still refused: an envelope that is not a policy
      const res = await fetch(`${other.url}/v1/admin/policy`, {
        method: 'POST',
        headers: { authorization: `Bearer ${other.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          envelope: {
            payload: Buffer.from('{"version":2}').toString('base64'),
            payloadType: 'application/vnd.toolguard.policy.v1+json',
            signatures: [{ keyid: 'k', sig: 's' }],
          },
          by: 'mallory',
        }),
      });
      expect(res.status).toBe(422);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('GUARD_POLICY_SCHEMA');
      // a wrong admin token: exit 4
      writeFileSync(otherToken, 'wrong-token');
      const v2 = await body('nokeys2.json', 2);
      const denied = await guardctl([
        ...['policy', 'publish', v2, '--key', strangerKeyFile, '--collector', other.url],
        ...['--admin-token-file', otherToken, '--json'],
      ]);
      expect(denied.code).toBe(4);
      expect(JSON.parse(denied.stdout || denied.stderr).error.code).toBe('GUARD_COLLECTOR_UNAUTHORIZED');
      // a token file with a line break inside: refused before sending, the token never printed
      // (fetch's refusal of the header quoted it whole)
      const secretHalf = 'no-echo-5d1f0c2a';
      writeFileSync(otherToken, `${other.adminToken}\n${secretHalf}\n`);
      const broken = await guardctl([
        ...['policy', 'publish', v2, '--key', strangerKeyFile, '--collector', other.url],
        ...['--admin-token-file', otherToken, '--json'],
      ]);
      expect(broken.code).toBe(2);
      expect(JSON.parse(broken.stdout || broken.stderr).error.code).toBe('GUARD_CLI_USAGE');
      expect(broken.stdout + broken.stderr).not.toContain(secretHalf);
      expect(broken.stdout + broken.stderr).not.toContain(other.adminToken);
    } finally {
      await other.close();
    }
  });

  it('policy_trusted_keys: comma-separated key files reach the collector; a private key there is a config error', () => {
    const pub = join(dir, 'trusted.pub');
    writeFileSync(pub, trusted.publicKeyPem);
    const env = {
      TOOLGUARD_COLLECTOR_ENROLL_SECRET: 'e'.repeat(24),
      TOOLGUARD_COLLECTOR_ADMIN_TOKEN: 'a'.repeat(24),
    };
    const o = optionsFromConfig(
      loadCollectorConfig(
        parseCollectorArgs(['--policy-trusted-keys', `${pub}, ${pub}`, '--policy-threshold', '1']),
        env,
      ),
    );
    expect(o.policyTrustedKeys?.map((k) => k.keyid)).toEqual([parsePublicKey(trusted.publicKeyPem).keyid]);
    try {
      optionsFromConfig(
        loadCollectorConfig(parseCollectorArgs(['--policy-trusted-keys', trustedKeyFile]), env),
      );
      expect.unreachable();
    } catch (err) {
      expect(isGuardError(err, 'GUARD_CONFIG_INVALID_VALUE')).toBe(true);
    }
  });
});

describe('guardctl policy lint', () => {
  it('a schema error does not hide a regex error elsewhere in the same file (exit 8, both listed)', async () => {
    const file = await body('lint-both.json', 3, (b) => {
      const rule = (b.rules as Record<string, unknown>[])[0]!;
      rule.action = 'explode';
      rule.process = { names: ['claude'], argv_patterns: ['(a+)+$(?=x)'] };
    });
    const r = await guardctl(['policy', 'lint', file, '--json']);
    expect(r.code).toBe(8);
    const paths = (JSON.parse(r.stdout) as { findings: { path: string }[] }).findings.map((f) => f.path);
    expect(paths).toContain('$.rules[0].action');
    expect(paths).toContain('$.rules[0].process.argv_patterns[0]');
  });
});
