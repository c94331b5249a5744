/**
 * The console end to end in a real headless Chromium (Debian's, driven by playwright-core),
 * against a real collector on loopback fed by a real guardd (heartbeats, a real block of a
 * banned program, policy applications) and by two more devices posting with their own device
 * tokens. Logs in, looks at every page (each checked by axe-core in the same browser: no serious
 * or critical violation; each saved as a screenshot under build/artifacts/console/), filters
 * events by rule and device, opens an event, publishes a new policy from the rollout page and
 * watches the rollout reach the agent, logs out; refuses a device token and an expired session.
 * The page runs under the collector's strict CSP: a refused script or style fails the test.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sessionKey } from '../../src/collector/console/console-auth.js';
import { signEnvelope } from '../../src/policy/dsse.js';
import { parsePrivateKey, parsePublicKey } from '../../src/policy/keys.js';
import { POLICY_PAYLOAD_TYPE, type PolicyRule } from '../../src/policy/policy-types.js';
import {
  blockedEvent,
  collectorTempDir,
  enrollDevice,
  heartbeatEvent,
  postEvents,
  startTestCollector,
  type TestCollector,
} from '../helpers/collector.js';
import { type Guardd, makeKey, policyBody, ROOT, startGuardd, writeSignedPolicy } from '../helpers/daemon.js';
import { waitFor } from '../helpers/wait.js';

const ARTIFACTS = join(ROOT, 'build', 'artifacts', 'console');
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const SLEEP = spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim();
const BANNED = 'tg-console-banned';
const AGENT_ID = 'console-e2e-agent';
/** A second real agent that trusts another key: it rejects every policy the collector serves. */
const UNTRUSTING_ID = 'console-e2e-untrusting';

const dir = collectorTempDir('tg-conb-');
const key = makeKey();
const viewerToken = randomBytes(24).toString('base64url');
const policyFile = join(dir, 'policy.dsse.json');
const rules: PolicyRule[] = [
  {
    id: 'console-banned',
    name: 'Console e2e banned tool',
    action: 'block',
    message: 'Not approved.',
    process: { names: [BANNED] },
  },
  {
    id: 'console-warned',
    name: 'Discouraged tool',
    action: 'warn',
    message: 'Hm.',
    process: { names: ['tg-nope'] },
  },
];

let col: TestCollector;
let guardd: Guardd;
let untrusting: Guardd;
let browser: Browser;
let page: Page;
let deviceToken: string;
const cspViolations: string[] = [];
const banned: ChildProcess[] = [];

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeSignedPolicy(policyFile, policyBody(rules, { version: 1 }), key);
  col = await startTestCollector({
    policyFile,
    policyTrustedKeys: [parsePublicKey(key.publicKeyPem)],
    consoleViewerToken: viewerToken,
  });
  const secretFile = join(dir, 'enroll-secret');
  writeFileSync(secretFile, col.enrollSecret, { mode: 0o600 });
  const [g, u, b] = await Promise.all([
    startGuardd(join(dir, 'agent'), {
      'device.id': AGENT_ID,
      'device.tags': ['lab', 'console-e2e'],
      'collector.url': col.url,
      'collector.enroll_secret_file': secretFile,
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
      // every second, so a publication is applied and reported within seconds
      'policy.refresh_cron': '* * * * * *',
      'policy.refresh_jitter_s': 0,
      'shipper.heartbeat_cron': '* * * * * *',
    }),
    startGuardd(join(dir, 'agent2'), {
      'device.id': UNTRUSTING_ID,
      'collector.url': col.url,
      'collector.enroll_secret_file': secretFile,
      'policy.trusted_keys': [makeKey().publicKeyPem],
      'policy.refresh_cron': '* * * * * *',
      'policy.refresh_jitter_s': 0,
      'shipper.heartbeat_cron': '* * * * * *',
    }),
    chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    }),
  ]);
  guardd = g;
  untrusting = u;
  browser = b;
  // two more devices, posting with their own device tokens
  deviceToken = await enrollDevice(col.url, col.enrollSecret, 'laptop-ops-7');
  expect(
    (
      await postEvents(col.url, deviceToken, [
        heartbeatEvent('laptop-ops-7', 1, { policy_version: 0, tags: ['ops'] }),
        blockedEvent('laptop-ops-7', 2, 'console-banned'),
      ])
    ).status,
  ).toBe(200);
  const t2 = await enrollDevice(col.url, col.enrollSecret, 'build-runner-2');
  expect(
    (await postEvents(col.url, t2, [heartbeatEvent('build-runner-2', 1, { policy_version: 1 })])).status,
  ).toBe(200);

  // a real block on the real agent
  const binDir = join(dir, 'bin');
  mkdirSync(binDir, { recursive: true });
  const exe = join(binDir, BANNED);
  copyFileSync(SLEEP, exe);
  chmodSync(exe, 0o755);
  await waitFor(
    async () => {
      if (banned.length < 20) banned.push(spawn(exe, ['30'], { stdio: 'ignore' }));
      const page = await col.collector.store.consoleEvents({
        filter: { deviceId: AGENT_ID, types: ['process.blocked'] },
        limit: 1,
      });
      return page.items[0];
    },
    'the agent blocking the banned program and shipping process.blocked',
    { timeoutMs: 30_000, intervalMs: 500 },
  );
  await waitFor(
    async () =>
      (await col.collector.store.consoleDevice(AGENT_ID))?.policy_state === 'ok' ? true : undefined,
    'the agent reporting policy 1 in force',
    { timeoutMs: 30_000 },
  );
  await waitFor(
    async () =>
      (await col.collector.store.consoleDevice(UNTRUSTING_ID))?.policy_state === 'rejected'
        ? true
        : undefined,
    'the untrusting agent reporting the policy rejected',
    { timeoutMs: 30_000 },
  );

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
  });
}, 90_000);

afterAll(async () => {
  for (const c of banned) c.kill('SIGKILL');
  await browser?.close();
  await guardd?.stop();
  await untrusting?.stop();
  await col?.close();
});

/** Runs axe-core in the page; fails on any serious or critical violation. */
async function checkA11y(name: string): Promise<void> {
  // evaluated through the DevTools protocol, not as a page script, so the page's CSP stays as served
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    // runs in the page (no DOM types here): axe and document are the page's globals
    const w = globalThis as unknown as {
      document: unknown;
      axe: {
        run(
          ctx: unknown,
          o: unknown,
        ): Promise<{ violations: { id: string; impact: string; nodes: unknown[] }[] }>;
      };
    };
    const r = await w.axe.run(w.document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  });
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad, `${name}: ${JSON.stringify(violations)}`).toEqual([]);
}

async function shoot(name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function apiStatus(path: string): Promise<number> {
  return page.evaluate(async (p) => (await fetch(`/console/api/${p}`)).status, path);
}

describe('the console in a browser', () => {
  it('refuses a device token, logs in with the admin token and shows the overview', async () => {
    await page.goto(`${col.url}/console/`);
    await page.getByLabel('Console token').waitFor();
    expect(await page.getByRole('status').count()).toBe(0);
    await checkA11y('login');
    await page.getByLabel('Console token').fill(deviceToken);
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('GUARD_CONSOLE_LOGIN_FAILED');
    await shoot('login');

    await page.getByLabel('Console token').fill(col.adminToken);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.locator('.stat-value').first().waitFor();
    const stats = await page.locator('.stats').innerText();
    expect(stats).toMatch(/4\s+Devices/);
    expect(stats).toMatch(/Blocks in 24 h/);
    // keyboard: the first Tab reaches the skip link, Enter moves focus to the main content
    await page.keyboard.press('Tab');
    expect(
      await page.evaluate(
        () =>
          (globalThis as unknown as { document: { activeElement: { textContent: string } } }).document
            .activeElement.textContent,
      ),
    ).toBe('Skip to content');
    await page.keyboard.press('Enter');
    expect(
      await page.evaluate(
        () =>
          (globalThis as unknown as { document: { activeElement: { id: string } } }).document.activeElement
            .id,
      ),
    ).toBe('main');
    await checkA11y('overview');
    await shoot('overview');
  });

  it('lists devices, filters and opens one', async () => {
    await page.getByRole('link', { name: 'Devices', exact: true }).click();
    const table = page.getByRole('table', { name: /Devices/ });
    await table
      .getByRole('link', { name: AGENT_ID })
      .or(table.getByRole('link', { name: /\S/ }).first())
      .waitFor();
    await expect.poll(() => table.locator('tbody tr').count()).toBe(4);
    await checkA11y('devices');
    await shoot('devices');

    await page.getByLabel('Tag').fill('console-e2e');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => table.locator('tbody tr').count()).toBe(1);
    const row = await table.locator('tbody tr').innerText();
    expect(row).toContain('console-e2e');
    expect(row).toMatch(/v1\s+ok/);
    await table.locator('tbody tr a').first().click();
    await page.getByRole('heading', { name: /^Device / }).waitFor();
    expect(await page.locator('.facts').innerText()).toContain(AGENT_ID);
    await page.getByRole('table', { name: 'Newest events of this device' }).waitFor();
    await checkA11y('device');
    await shoot('device');
  });

  it('filters events by rule and device, opens one (record and OCSF) and follows it to its device', async () => {
    await page.getByRole('link', { name: 'Events', exact: true }).click();
    await page.getByRole('table', { name: 'Events, newest first' }).waitFor();
    await page.getByLabel('Rule id').fill('console-banned');
    await page.getByLabel('Device id').fill(AGENT_ID);
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => page.url()).toContain('rule=console-banned');
    const rows = page.getByRole('table', { name: 'Events, newest first' }).locator('tbody tr');
    await expect.poll(async () => (await rows.allInnerTexts()).length).toBeGreaterThan(0);
    for (const text of await rows.allInnerTexts()) {
      expect(text).toContain('console-banned');
      expect(text).toContain('process.blocked');
    }
    await checkA11y('events');
    await shoot('events');

    await rows
      .first()
      .getByRole('link', { name: /Open event/ })
      .click();
    await page.getByRole('heading', { name: /^Event #\d+: process.blocked/ }).waitFor();
    const record = JSON.parse(
      await page
        .locator('section', { has: page.getByRole('heading', { name: 'Record as stored' }) })
        .locator('pre')
        .innerText(),
    ) as Record<string, unknown>;
    expect(record).toMatchObject({
      type: 'process.blocked',
      device_id: AGENT_ID,
      rule: { id: 'console-banned' },
    });
    const ocsf = JSON.parse(
      await page
        .locator('section', { has: page.getByRole('heading', { name: 'OCSF' }) })
        .locator('pre')
        .innerText(),
    ) as Record<string, unknown>;
    expect(ocsf.class_uid).toBeTypeOf('number');
    await checkA11y('event');
    await shoot('event');
    await page.locator('.facts').getByRole('link').first().click();
    await page.getByRole('heading', { name: /^Device / }).waitFor();
    expect(await page.locator('.facts').innerText()).toContain(AGENT_ID);
  });

  it('charts each rule of the published policy', async () => {
    await page.getByRole('link', { name: 'Rules', exact: true }).click();
    await page.getByRole('heading', { name: /Console e2e banned tool/ }).waitFor();
    const section = page.locator('section.rule').first();
    await section.locator('canvas').waitFor();
    expect(await section.getByRole('table', { name: 'Devices most affected' }).innerText()).toMatch(/\d/);
    await checkA11y('rules');
    await shoot('rules');
  });

  it('publishes a new policy from the rollout page and watches the agent apply it', async () => {
    await page.getByRole('link', { name: 'Rollout', exact: true }).click();
    await page.getByRole('heading', { name: 'Version 1' }).waitFor();
    const next = policyBody(rules, { version: 2 });
    const envelope = signEnvelope(JSON.stringify(next), POLICY_PAYLOAD_TYPE, [
      parsePrivateKey(key.privateKeyPem),
    ]);
    await page.getByLabel('Signed policy envelope (JSON)').setInputFiles({
      name: 'policy-v2.dsse.json',
      mimeType: 'application/json',
      buffer: Buffer.from(JSON.stringify(envelope)),
    });
    await page.getByLabel('Published by').fill('console e2e');
    await page.getByLabel('Why').fill('roll out v2');
    await page.getByRole('button', { name: 'Publish' }).click();
    await expect
      .poll(() => page.getByRole('status').allInnerTexts(), { timeout: 10_000 })
      .toContain('Published version 2 (signature verified).');
    await page.getByRole('heading', { name: 'Version 2' }).waitFor();
    // the page refreshes itself; the agent fetches, applies and reports v2
    await expect
      .poll(() => page.locator('#rollout-summary').innerText(), { timeout: 30_000, interval: 500 })
      .toMatch(/^1 of 4 devices run the published version/);
    const table = await page.getByRole('table', { name: /by policy version/ }).innerText();
    expect(table).toMatch(/2 \(published\)\s+current\s+ok\s+1/);
    expect(table).toMatch(/\n1\s+behind\s+ok\s+1/);
    const rejections = await page.getByRole('table', { name: /rejected the policy/ }).innerText();
    expect(rejections).toMatch(/GUARD_POLICY_\w+.*\s+1/);
    await checkA11y('rollout');
    await shoot('rollout');
  });

  it('logs out: the session stops working', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Console token').waitFor();
    expect(await page.getByRole('status').innerText()).toContain('logged out');
    expect(await apiStatus('session')).toBe(401);
  });

  it('sends an expired session (as the session table holds it) back to the login form', async () => {
    const secret = randomBytes(32).toString('base64url');
    const now = Date.now();
    await col.collector.store.createSession(sessionKey(secret, col.adminToken), {
      role: 'admin',
      created_at: new Date(now - 9 * 3600_000).toISOString(),
      expires_at: new Date(now - 3600_000).toISOString(),
    });
    await page.context().addCookies([{ name: 'tg_console', value: secret, url: `${col.url}/console/` }]);
    expect(await apiStatus('session')).toBe(401);
    await page.goto(`${col.url}/console/?expired#/devices`);
    await page.getByLabel('Console token').waitFor();
    expect(await page.getByRole('heading', { name: 'Devices' }).count()).toBe(0);
    // the same secret with a live expiry does open the console: it was the expiry that refused it
    await col.collector.store.deleteSession(sessionKey(secret, col.adminToken));
    await col.collector.store.createSession(sessionKey(secret, viewerToken), {
      role: 'viewer',
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + 3600_000).toISOString(),
    });
    await page.goto(`${col.url}/console/?live#/devices`);
    await page.getByRole('heading', { name: 'Devices' }).waitFor();
    expect(await page.locator('.who').innerText()).toContain('viewer');
  });

  it('ran every page under the strict CSP without a refused script or style', () => {
    expect(cspViolations).toEqual([]);
  });
});
