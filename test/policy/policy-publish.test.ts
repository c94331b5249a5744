/**
 * Publishing, end to end: an admin runs keygen → sign, copies the envelope over the collector's
 * policy file, and within one refresh every running guardd applies version N+1 and
 * `guardctl status` shows it. Once through the collector in-process (PolicyUpdater + manager),
 * once with real guard-collector / guardd / guardctl processes built in dist/.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { CommandContext } from '../../src/cli/command.js';
import { policyKeygenCommand } from '../../src/cli/commands/policy-keygen.js';
import { policySignCommand } from '../../src/cli/commands/policy-sign.js';
import { silentLogger } from '../../src/common/logger.js';
import type { PolicyBody } from '../../src/policy/policy-types.js';
import { PolicyUpdater } from '../../src/policy/policy-updater.js';
import { startTestCollector } from '../helpers/collector.js';
import { runGuardctl, startCollectorProcess, startGuardd } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import { body, makeManager } from './policy-helpers.js';

const dir = tempDir('tg-pub-');
const DAY = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const live = (version: number): PolicyBody =>
  body(version, { issued_at: iso(Date.now() - 60_000), expires_at: iso(Date.now() + 14 * DAY) });

function ctx(args: string[], options: Record<string, unknown>): CommandContext {
  return {
    args,
    options,
    json: false,
    configFile: join(dir, 'none.json'),
    sockets: { public: '', admin: '' },
    call: () => Promise.reject(new Error('offline')),
  };
}

/** The admin's side: sign `version` with the key and publish it as the collector's policy file (atomic rename). */
async function publish(
  version: number,
  keyFile: string,
  policyFile: string,
  previous?: string,
): Promise<string> {
  const bodyFile = join(dir, `body-v${version}.json`);
  writeFileSync(bodyFile, JSON.stringify(live(version), null, 2));
  const out = join(dir, `v${version}.dsse.json`);
  await policySignCommand.run(ctx([bodyFile], { key: [keyFile], out, ...(previous ? { previous } : {}) }));
  const tmp = `${policyFile}.tmp`;
  writeFileSync(tmp, readFileSync(out));
  renameSync(tmp, policyFile);
  return out;
}

describe('publishing a new policy', () => {
  it('through guard-collector (in-process): keygen → sign → copy → one refresh applies N+1', async () => {
    const adminDir = join(dir, 'admin1');
    mkdirSync(adminDir);
    const keys = (await policyKeygenCommand.run(ctx([], { out: join(adminDir, 'signing') }))).data as {
      private_key_file: string;
      public_key_base64: string;
    };
    const policyFile = join(dir, 'served1.dsse.json');
    const v1 = await publish(1, keys.private_key_file, policyFile);
    const collector = await startTestCollector({ policyFile });
    afterAll(() => collector.close());

    mkdirSync(join(dir, 'device1'));
    // One clock for the whole test: `guardctl policy sign` and `live()` read the wall clock, so the
    // device judges with the wall clock too (the policy tests' fixed NOW would make v1 not yet valid).
    const wallClock = {
      get now(): number {
        return Date.now();
      },
    };
    const h = makeManager(join(dir, 'device1'), [], {
      trustedKeys: [keys.public_key_base64],
      clock: wallClock,
    });
    try {
      h.manager.loadInitial(null);
      const updater = new PolicyUpdater({
        manager: h.manager,
        url: `${collector.url}/v1/policy`,
        cron: '*/5 * * * *',
        jitterS: 0,
        timeoutMs: 5000,
        maxBytes: 1024 * 1024,
        logger: silentLogger(),
      });
      expect(await updater.refreshNow()).toEqual({ status: 'applied', version: 1 });
      expect(await updater.refreshNow()).toEqual({ status: 'not-modified', version: 1 });
      await publish(2, keys.private_key_file, policyFile, v1);
      expect(await updater.refreshNow()).toEqual({ status: 'applied', version: 2 });
      expect(h.manager.status()).toMatchObject({
        state: 'ok',
        version: 2,
        source: `${collector.url}/v1/policy`,
      });
    } finally {
      h.close();
    }
  });

  it('with real processes: every running guardd applies N+1 within one refresh; guardctl status shows it', async () => {
    const adminDir = join(dir, 'admin2');
    mkdirSync(adminDir);
    const keys = (await policyKeygenCommand.run(ctx([], { out: join(adminDir, 'signing') }))).data as {
      private_key_file: string;
      public_key_file: string;
    };
    const policyFile = join(dir, 'served2.dsse.json');
    const v7 = await publish(7, keys.private_key_file, policyFile);
    const collector = await startCollectorProcess(join(dir, 'collector2'), policyFile);
    const agents = await Promise.all(
      ['a1', 'a2'].map((name) => {
        mkdirSync(join(dir, name));
        return startGuardd(join(dir, name), {
          'collector.url': collector.url,
          'collector.enroll_secret_file': join(dir, 'collector2', 'enroll-secret'),
          'policy.trusted_keys': [readFileSync(keys.public_key_file, 'utf8')],
          // node-cron's optional seconds field: one refresh per second keeps the test short.
          'policy.refresh_cron': '* * * * * *',
          'policy.refresh_jitter_s': 0,
          'sensors.process.enabled': false,
        });
      }),
    );
    const versionOf = (socketDir: string): number | null => {
      const r = runGuardctl(['--socket-dir', socketDir, 'status', '--json']);
      return r.code === 0 ? r.json<{ policy: { version: number | null } }>().policy.version : null;
    };
    for (const a of agents) await waitFor(() => versionOf(a.socketDir) === 7, 'v7 applied');

    await publish(8, keys.private_key_file, policyFile, v7);
    for (const a of agents) await waitFor(() => versionOf(a.socketDir) === 8, 'v8 applied on every guardd');
    const status = runGuardctl(['--socket-dir', agents[0]?.socketDir ?? '', 'status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/version\s+v8 · 1 rule · /);
    const show = runGuardctl(['--socket-dir', agents[1]?.socketDir ?? '', 'policy', 'show']);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/^policy\s+v8 \(enforce\)/);
    expect(show.stdout).toContain('BLOCK  claude-code — Claude Code');
    expect(show.stdout).toContain('npm @anthropic-ai/claude-code@*');
    // The offline verifier agrees with the devices.
    const verify = runGuardctl(['policy', 'verify', policyFile, '--key', keys.public_key_file]);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/^OK: policy v8 /);
    // And refuses with a stable code on stderr and exit 5 when the key is wrong.
    const wrong = runGuardctl([
      'policy',
      'verify',
      policyFile,
      '--key',
      Buffer.alloc(32, 1).toString('base64'),
    ]);
    expect(wrong.code).toBe(5);
    expect(wrong.stderr).toContain('[GUARD_POLICY_UNTRUSTED_KEY]');
    await Promise.all(agents.map((a) => a.stop()));
    await collector.stop();
  }, 60_000);
});
