import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  explain,
  renderDataCollectedDoc,
  renderEventsDoc,
  renderExplainText,
} from '../../src/cli/commands/explain.js';
import { createRootLogger } from '../../src/common/logger.js';
import { loadConfig } from '../../src/config/load-config.js';
import type { ActionResult } from '../../src/enforcement/action.js';
import { Enforcer } from '../../src/enforcement/enforcer.js';
import { EVENT_FIELDS, fieldPathsOf } from '../../src/events/event-schema.js';
import type { Decision } from '../../src/policy/matcher.js';
import type { Observation } from '../../src/sensors/observation.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { OutboxStore } from '../../src/store/outbox-store.js';
import { ROOT, runGuardctl } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';

const logger = createRootLogger('silent');
const dir = tempDir('tg-explain-');

describe('guardctl explain and the generated docs', () => {
  test('docs/data-collected.md and docs/events.md are what the schema generates (run npm run docs)', () => {
    expect(readFileSync(join(ROOT, 'docs/data-collected.md'), 'utf8')).toBe(renderDataCollectedDoc());
    expect(readFileSync(join(ROOT, 'docs/events.md'), 'utf8')).toBe(renderEventsDoc());
  });

  test('explain lists every schema field with its description, and where and how long it is kept', () => {
    const config = loadConfig({
      env: {},
      overrides: {
        'paths.state_dir': '/srv/tg',
        'collector.url': 'https://collector.example:8443',
        'outbox.max_bytes': 8 * 1024 * 1024,
      },
    });
    const x = explain(config, null);
    expect(x.fields).toBe(EVENT_FIELDS);
    expect(x.storage.file).toBe('/srv/tg/guardd.db');
    expect(x.storage.outbox).toContain('8 MiB');
    expect(x.storage.history).toContain('30 days and 2 MiB');
    expect(x.sending).toMatchObject({ collector_url: 'https://collector.example:8443', source: 'config' });
    expect(x.sending.how).toContain('POST https://collector.example:8443/v1/events');
    const text = renderExplainText(x);
    for (const r of x.requests) {
      expect(text).toContain(`${r.method} ${r.path}`);
      for (const h of r.headers) expect(text).toContain(h.name);
      for (const f of r.fields) expect(text).toContain(f.path);
    }
    for (const k of x.collector_keeps.device) expect(text).toContain(k.column);
    for (const f of EVENT_FIELDS) {
      expect(text).toContain(f.path);
      expect(text).toContain(f.description);
    }
    expect(explain(config, { collector_url: 'https://live.example' }).sending).toMatchObject({
      collector_url: 'https://live.example',
      source: 'daemon',
    });
    const none = explain(loadConfig({ env: {} }), null);
    expect(none.sending.collector_url).toBeNull();
    expect(none.sending.how).toContain('events stay on this machine');
  });

  test('no event the enforcer builds (every observation kind, every action) carries a field explain does not list', async () => {
    const { db } = openDatabase(join(dir, 'e.db'), { migrations: MIGRATIONS });
    const outbox = new OutboxStore({ db, deviceId: 'd', hostname: 'h', maxBytes: 1 << 24, logger });
    const ok = (actionTaken: ActionResult['actionTaken'], details?: Record<string, unknown>) => ({
      execute: async (): Promise<ActionResult> => ({
        actionTaken,
        latencyMs: 1.5,
        error: null,
        ...(details ? { details } : {}),
      }),
    });
    const enforcer = new Enforcer({
      actions: {
        blockProcess: ok('killed', { killed: [10, 11], notified: { terminal: true, desktop: false } }),
        notifyProcess: ok('warned', { notified: { terminal: true, desktop: true } }),
        quarantine: ok('quarantined', { quarantine_id: 'q1', links_removed: 2 }),
        notifyInstall: ok('warned', { notified: true }),
      },
      events: outbox,
      logger,
      warnIntervalMs: 0,
    });
    const owner = { uid: 1000, user: 'alice', groups: ['staff'], home: '/home/alice' };
    const observations: Observation[] = [
      {
        kind: 'process',
        pid: 10,
        ppid: 1,
        startTime: 5,
        name: 'claude',
        exe: '/usr/bin/claude',
        argv: ['claude', '--token', 'sk-ant-abcdefghijklmnopqrstuvwxyz'],
        owner,
        tty: null,
        sha256: 'f'.repeat(64),
        scriptPackage: { name: '@x/y', version: null, root: '/r', script: '/r/cli.js' },
      },
      {
        kind: 'package',
        ecosystem: 'npm',
        name: '@x/y',
        version: '1.0.0',
        path: '/g/@x/y',
        root: '/g',
        manager: 'pnpm',
        owner,
      },
      { kind: 'path', path: '/home/alice/.local/share/claude', isDirectory: true, owner },
    ];
    for (const obs of observations)
      for (const action of ['block', 'warn', 'audit'] as const)
        for (const mode of ['enforce', 'monitor'] as const) {
          const decision: Decision = {
            // the matcher may hand over the whole policy rule: the builder must pick only documented fields
            rule: {
              id: 'r1',
              name: 'Rule',
              action,
              message: 'no',
              process: { names: ['claude'] },
            } as Decision['rule'],
            reason: 'name',
            detail: 'claude',
            message: 'no',
            url: null,
            policyVersion: 3,
            mode,
          };
          await enforcer.handle(obs, decision);
        }
    const listed = outbox.list({ limit: 1000 });
    expect(listed).toHaveLength(18);
    expect(outbox.status().invalid_total).toBe(0);
    const known = new Set(explain(null, null).fields.map((f) => f.path));
    for (const l of listed) {
      expect(l.state).toBe('queued');
      for (const p of fieldPathsOf(l.event)) expect(known.has(p), `${l.event.type}: ${p}`).toBe(true);
    }
    expect(JSON.stringify(listed)).not.toContain('sk-ant-abcdefghijklmnopqrstuvwxyz');
  });

  test('guardctl explain runs offline (real process): JSON from the schema and the config file', () => {
    const cfg = join(dir, 'config.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        'collector.url': 'https://c.example',
        'paths.state_dir': dir,
        'paths.socket_dir': join(dir, 'run'),
      }),
    );
    const r = runGuardctl(['--config', cfg, '--json', 'explain']);
    expect(r.code, r.stderr).toBe(0);
    const x = r.json<{ sending: { collector_url: string; source: string }; fields: { path: string }[] }>();
    expect(x.sending).toMatchObject({ collector_url: 'https://c.example', source: 'config' });
    expect(x.fields.map((f) => f.path)).toEqual(EVENT_FIELDS.map((f) => f.path));
    const t = runGuardctl(['--config', cfg, 'explain']);
    expect(t.code).toBe(0);
    expect(t.stdout).toContain('WHAT IS SENT, AND WHERE');
    expect(t.stdout).toContain('outcome.details.killed');
  });

  test('scripts/gen-docs.js --check agrees (the built docs generator)', async () => {
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts/gen-docs.js'), '--check'], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
  });
});
