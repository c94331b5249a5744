/**
 * What guardd sends, checked on the wire: a recording proxy between a real guardd (root, from
 * dist/) and a real guard-collector records every request while the test makes guardd produce
 * every event type it can here (process block/warn/audit, package quarantine/warn, path
 * quarantine/warn/audit, policy applied/rejected, heartbeat, stop, restart over a corrupt state DB:
 * tamper). The test fails on any request, header or body field (at any depth) that `guardctl
 * explain` does not list, and on a string that carries a path or the host name in a field whose
 * content class is not personal.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain } from '../../src/cli/commands/explain.js';
import { isPersonal } from '../../src/events/content-class.js';
import { EVENT_FIELDS } from '../../src/events/event-schema.js';
import type { EventType } from '../../src/events/event-types.js';
import {
  type Collector,
  type Guardd,
  makeKey,
  policyBody,
  ROOT,
  startCollectorProcess,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import {
  bodyText,
  eventsOf,
  leafPaths,
  type RecordingProxy,
  startRecordingProxy,
} from '../helpers/recording-proxy.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';
import {
  BANNED,
  BANNED_UNSCOPED,
  FAKE_FILES,
  FAKE_MANIFEST,
  link,
  writePackage,
} from '../sensors/install/harness.js';

const dir = tempDir('tgtr-wire-');
const home = join(dir, 'home', 'tgtr-erin');
const prefix = join(home, '.npm-global');
const SLEEP = spawnSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).stdout.trim();
const NAMES = { block: 'tgtr-wire-blk', warn: 'tgtr-wire-wrn', audit: 'tgtr-wire-aud' } as const;

let collector: Collector;
let proxy: RecordingProxy;
let guardd: Guardd;
let agentConfig: Record<string, unknown>;
let policyFile: string;
const children: ChildProcess[] = [];
/** Index of the first request of guardd's last run (its state DB, and so its sent log, is new). */
let lastRunFrom = 0;

function launch(name: string): void {
  const binDir = join(dir, 'bin');
  mkdirSync(binDir, { recursive: true });
  const exe = join(binDir, name);
  copyFileSync(SLEEP, exe);
  chmodSync(exe, 0o755);
  try {
    const child = spawn(exe, ['60'], { stdio: 'ignore' });
    child.on('error', () => {});
    children.push(child);
  } catch (err) {
    // refused by pre-exec deny in the last run
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }
}

/** guardctl as a child process without blocking this process's event loop. */
function guardctlAsync(args: readonly string[]): Promise<string> {
  return new Promise((res) => {
    const c = spawn(process.execPath, [join(ROOT, 'bin', 'guardctl.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.on('close', () => res(out));
  });
}

async function collectorTypes(): Promise<Set<string>> {
  const res = await fetch(`${collector.url}/v1/events?limit=1000`, {
    headers: { authorization: `Bearer ${collector.adminToken}` },
  });
  const body = (await res.json()) as { events: { type: string }[] };
  return new Set(body.events.map((e) => e.type));
}

async function waitForTypes(types: readonly EventType[]): Promise<void> {
  let have = new Set<string>();
  await waitFor(
    async () => {
      have = await collectorTypes();
      return types.every((t) => have.has(t));
    },
    `${types.join(', ')} at the collector`,
    { timeoutMs: 30_000, intervalMs: 200 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}; missing: ${types.filter((t) => !have.has(t)).join(', ')}`);
  });
}

beforeAll(async () => {
  const key = makeKey();
  writePackage(join(prefix, 'lib', 'node_modules', BANNED), FAKE_MANIFEST, FAKE_FILES);
  link(`../lib/node_modules/${BANNED}/cli.js`, join(prefix, 'bin', 'claude'));
  writePackage(join(prefix, 'lib', 'node_modules', BANNED_UNSCOPED), {
    name: BANNED_UNSCOPED,
    version: '2.0.0',
  });
  for (const a of ['block', 'warn', 'audit']) writeFileSync(join(home, `tgtr-art-${a}`), 'x');
  const rule = (id: string, action: 'block' | 'warn' | 'audit', extra: Record<string, unknown>) => ({
    id,
    name: id,
    action,
    message: `${id}: not approved.`,
    ...extra,
  });
  policyFile = writeSignedPolicy(
    join(dir, 'policy.dsse.json'),
    policyBody(
      [
        rule('p-block', 'block', { process: { names: [NAMES.block] } }),
        rule('p-warn', 'warn', { process: { names: [NAMES.warn] } }),
        rule('p-audit', 'audit', { process: { names: [NAMES.audit] } }),
        rule('pkg-block', 'block', { packages: [{ ecosystem: 'npm', name: BANNED, range: '*' }] }),
        rule('pkg-warn', 'warn', { packages: [{ ecosystem: 'npm', name: BANNED_UNSCOPED, range: '*' }] }),
        rule('path-block', 'block', { paths: ['~/tgtr-art-block'] }),
        rule('path-warn', 'warn', { paths: ['~/tgtr-art-warn'] }),
        rule('path-audit', 'audit', { paths: ['~/tgtr-art-audit'] }),
      ],
      { version: 3 },
    ),
    key,
  );
  collector = await startCollectorProcess(join(dir, 'collector'), policyFile);
  proxy = await startRecordingProxy(collector.url);
  agentConfig = {
    'collector.url': proxy.url,
    'collector.enroll_secret_file': join(dir, 'collector', 'enroll-secret'),
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policyFile,
    'shipper.heartbeat_cron': '* * * * * *',
    'sensors.install.enabled': true,
    'sensors.install.homes': [home],
  };
  guardd = await startGuardd(join(dir, 'agent'), agentConfig);
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await proxy?.close();
});

describe('the wire carries only what explain lists', () => {
  it('every request, header and body field of a real guardd (all event types it can produce) is listed', async () => {
    launch(NAMES.block);
    launch(NAMES.warn);
    launch(NAMES.audit);
    await waitForTypes([
      'agent.started',
      'policy.applied',
      'process.blocked',
      'process.warned',
      'process.audited',
      'package.quarantined',
      'package.warned',
      'path.quarantined',
      'path.warned',
      'path.audited',
      'agent.heartbeat',
    ]);

    // package.audited: a forced restore of the quarantined package is recorded as one
    const sock = ['--socket-dir', guardd.socketDir, '--json'];
    const list = JSON.parse(await guardctlAsync([...sock, 'quarantine', 'list'])) as {
      entries: { id: string; kind: string }[];
    };
    const pkgEntry = list.entries.find((e) => e.kind === 'package');
    expect(pkgEntry).toBeDefined();
    await guardctlAsync([...sock, 'quarantine', 'restore', '--force', pkgEntry?.id ?? '']);
    await waitForTypes(['package.audited']);

    // policy.rejected: the collector serves an unsigned policy, guardd fetches it through the proxy.
    const good = (await import('node:fs')).readFileSync(policyFile, 'utf8');
    writeFileSync(policyFile, JSON.stringify(policyBody([], { version: 9 })));
    // asynchronously: the proxy runs in this process and must keep forwarding meanwhile
    const reload = await guardctlAsync(['--socket-dir', guardd.socketDir, '--json', 'policy', 'reload']);
    expect((JSON.parse(reload) as { status: string }).status, reload).toBe('rejected');
    writeFileSync(policyFile, good);
    await waitForTypes(['policy.rejected']);

    // agent.stopped at SIGTERM; then a corrupt state DB at the next start: agent.tamper.
    expect(await guardd.stop('SIGTERM')).toBe(0);
    guardd = await startGuardd(join(dir, 'agent'), agentConfig);
    await waitForTypes(['agent.stopped']);
    expect(await guardd.stop('SIGTERM')).toBe(0);
    writeFileSync(join(guardd.stateDir, 'guardd.db'), Buffer.alloc(8192, 0x5a));
    lastRunFrom = proxy.requests.length;
    // the last run with pre-exec deny: a banned program is refused before it runs (process.denied)
    guardd = await startGuardd(join(dir, 'agent'), { ...agentConfig, 'enforcement.exec_deny': 'auto' });
    await waitForTypes(['agent.tamper']);
    launch(NAMES.block);
    await waitForTypes(['process.denied']);

    const listing = explain(null, null).requests;
    const seenKinds = new Set<string>();
    const seenTypes = new Set<string>();
    const problems: string[] = [];
    const host = hostname();
    const personalCheck = (where: string, path: string, value: unknown, personal: boolean): void => {
      const strings = Array.isArray(value) ? value : [value];
      for (const s of strings) {
        if (typeof s !== 'string' || personal) continue;
        if (s === host || s.includes(dir) || s.includes('tgtr-erin'))
          problems.push(`${where} ${path}: carries "${s.slice(0, 80)}" but its class is not personal`);
      }
    };
    const mapPaths = new Set(
      EVENT_FIELDS.filter((f) => f.path.endsWith('.*')).map((f) => f.path.slice(0, -2)),
    );
    const catalogue = (path: string): string => {
      const parent = path.slice(0, path.lastIndexOf('.'));
      return mapPaths.has(parent) ? `${parent}.*` : path;
    };

    for (const r of proxy.requests) {
      const listed = listing.find((l) => l.method === r.method && l.path === r.path);
      if (!listed) {
        problems.push(`unlisted request ${r.method} ${r.path}`);
        continue;
      }
      seenKinds.add(listed.kind);
      for (const [name] of r.headers)
        if (!listed.headers.some((h) => h.name === name))
          problems.push(`${r.method} ${r.path}: unlisted header ${name}`);
      if (listed.kind === 'events') {
        for (const e of eventsOf(r)) {
          const type = e.type as EventType;
          seenTypes.add(type);
          for (const [path, value] of leafPaths(e)) {
            const f = EVENT_FIELDS.find((x) => x.path === catalogue(path) && x.eventTypes.includes(type));
            if (!f) problems.push(`${type}: unlisted field ${path}`);
            else personalCheck(type, path, value, f.personal);
          }
        }
      } else if (listed.kind === 'enroll') {
        const body = JSON.parse(bodyText(r)) as unknown;
        for (const [path, value] of leafPaths(body)) {
          const f = listed.fields.find((x) => x.path === path);
          if (!f) problems.push(`enroll: unlisted body field ${path}`);
          else personalCheck('enroll', path, value, isPersonal(f.contentClass));
        }
      } else if (r.body.length > 0) problems.push(`${r.method} ${r.path}: a body (${r.body.length} bytes)`);
    }
    expect(problems).toEqual([]);
    expect([...seenKinds].sort()).toEqual(['enroll', 'events', 'policy']);
    expect([...seenTypes].sort()).toEqual(
      [
        'agent.heartbeat',
        'agent.started',
        'agent.stopped',
        'agent.tamper',
        'package.audited',
        'package.quarantined',
        'package.warned',
        'path.audited',
        'path.quarantined',
        'path.warned',
        'policy.applied',
        'policy.rejected',
        'process.audited',
        'process.blocked',
        'process.denied',
        'process.warned',
      ].sort(),
    );
  }, 120_000);

  it("explain's 24 h summary is what the proxy saw guardd's current run send: requests, events, bytes", async () => {
    type Totals = Record<string, { count: number; bytes: number }>;
    const add = (m: Totals, k: string, bytes: number): void => {
      const t = m[k] ?? { count: 0, bytes: 0 };
      m[k] = { count: t.count + 1, bytes: t.bytes + bytes };
    };
    const fromProxy = (): { requests: Totals; events: Totals } => {
      const requests: Totals = {};
      const events: Totals = {};
      for (const r of proxy.requests.slice(lastRunFrom)) {
        if (r.status === 0) continue; // not answered yet
        const kind = r.path === '/v1/events' ? 'events' : r.path === '/v1/enroll' ? 'enroll' : 'policy';
        add(requests, kind, r.body.length);
        if (kind === 'events')
          for (const line of bodyText(r)
            .split('\n')
            .filter((l) => l))
            add(events, (JSON.parse(line) as { type: string }).type, Buffer.byteLength(line) + 1);
      }
      return { requests, events };
    };
    // heartbeats keep guardd sending: compare in a quiet moment, when both have the same requests
    let last = '';
    await waitFor(
      async () => {
        const x = JSON.parse(
          await guardctlAsync(['--socket-dir', guardd.socketDir, '--json', 'explain']),
        ) as {
          sent_last_24h: { requests: Totals; events: Totals } | null;
        };
        const seen = fromProxy();
        last = JSON.stringify({ agent: x.sent_last_24h, proxy: seen });
        return (
          x.sent_last_24h !== null &&
          JSON.stringify(x.sent_last_24h.requests) === JSON.stringify(sorted(seen.requests)) &&
          JSON.stringify(x.sent_last_24h.events) === JSON.stringify(sorted(seen.events))
        );
      },
      `the agent's record to match the proxy (last: ${last.slice(0, 2000)})`,
      { timeoutMs: 30_000, intervalMs: 100 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${last.slice(0, 3000)}`);
    });
    const text = await guardctlAsync(['--socket-dir', guardd.socketDir, 'explain']);
    expect(text).toMatch(/SENT BY THIS MACHINE IN THE LAST 24 H .*: .* in \d+ requests/);
    expect(text).toMatch(/\n {2}events +\d+ requests/);
  }, 60_000);
});

function sorted<T>(m: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
