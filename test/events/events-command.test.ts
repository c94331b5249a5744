import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { parseSince } from '../../src/cli/commands/events.js';
import { isGuardError } from '../../src/common/errors.js';
import { createRootLogger } from '../../src/common/logger.js';
import { socketPaths } from '../../src/common/platform-paths.js';
import { ControlServer } from '../../src/control/control-server.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { eventsControlMethods, type ListedEvent, OutboxStore } from '../../src/store/outbox-store.js';
import { ROOT } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const logger = createRootLogger('silent');
const dir = tempDir('tg-evc-');
const { db } = openDatabase(join(dir, 'g.db'), { migrations: MIGRATIONS });
const outbox = new OutboxStore({ db, deviceId: 'dev', hostname: 'h', maxBytes: 1 << 24, logger });
const methods = eventsControlMethods(outbox);
const list = methods['events.list'] as NonNullable<(typeof methods)['events.list']>;

/**
 * guardctl as a real process, awaited asynchronously: the control server under test runs in this
 * process, so a blocking spawnSync would keep it from answering.
 */
function runGuardctl(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string; json<T>(): T }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/guardctl.js'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, json: <T>() => JSON.parse(stdout) as T });
    });
  });
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isGuardError(err) ? err.code : 'not a GuardError';
  }
  return undefined;
}

describe('events.list control method', () => {
  test('refuses hostile params with GUARD_CONTROL_BAD_REQUEST', () => {
    for (const params of [
      { since_seq: -1 },
      { since_seq: 1.5 },
      { since_seq: '3' },
      { since_time: 'yesterday' },
      { since_time: 42 },
      { type: 'agent.exploded' },
      { type: { $ne: 1 } },
      { limit: 0 },
      { limit: 1e9 },
      { oldest_first: 'yes' },
    ])
      expect(
        codeOf(() => list.handle(params)),
        JSON.stringify(params),
      ).toBe('GUARD_CONTROL_BAD_REQUEST');
    expect(list.admin).toBe(false);
  });
});

describe('events.list byte cap', () => {
  test('a page never exceeds the byte cap: whole events from the requested end, truncated flagged', () => {
    const { db: db2 } = openDatabase(join(dir, 'big.db'), { migrations: MIGRATIONS });
    const big = new OutboxStore({ db: db2, deviceId: 'dev', hostname: 'h', maxBytes: 1 << 28, logger });
    // events are at most MAX_EVENT_BYTES (the outbox cuts long command lines): 40 of them pass 8 MiB
    for (let i = 0; i < 40; i++)
      big.emit('process.audited', {
        ...{ uid: 1, user: 'u', pid: i + 2, ppid: 1, name: 'n', exe: null, start_time: 1, tty: null },
        argv: Array.from({ length: 280 }, () => 'a'.repeat(8000)),
        rule: { id: 'r', name: 'R', action: 'audit' },
        reason: 'argv',
        policy_version: 1,
        mode: 'monitor',
        outcome: { action_taken: 'audited', latency_ms: 0, error: null },
      });
    const m = eventsControlMethods(big)['events.list'];
    const newest = m?.handle({ limit: 100 }) as { events: ListedEvent[]; truncated: boolean };
    expect(newest.truncated).toBe(true);
    const seqs = newest.events.map((e) => e.event.seq);
    expect(seqs.length).toBeLessThan(40);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => 41 - seqs.length + i));
    const oldest = m?.handle({ limit: 100, oldest_first: true }) as {
      events: ListedEvent[];
      truncated: boolean;
    };
    expect(oldest.truncated).toBe(true);
    expect(oldest.events[0]?.event.seq).toBe(1);
    // the cap bounds what is read, not only what is answered (any local user may ask): the events
    // past it are never loaded and parsed
    const parse = vi.spyOn(JSON, 'parse');
    try {
      m?.handle({ limit: 5000 });
      expect(parse.mock.calls.length).toBeLessThanOrEqual(seqs.length + 1);
    } finally {
      parse.mockRestore();
    }
    db2.close();
  });
});

describe('parseSince', () => {
  test('seq, relative ages and RFC 3339 times; anything else is a usage error', () => {
    const now = Date.parse('2026-11-24T10:00:00Z');
    expect(parseSince('42', now)).toEqual({ since_seq: 42 });
    expect(parseSince('30m', now)).toEqual({ since_time: '2026-11-24T09:30:00.000Z' });
    expect(parseSince('2d', now)).toEqual({ since_time: '2026-11-22T10:00:00.000Z' });
    expect(parseSince('2026-11-24T08:00:00+01:00', now)).toEqual({ since_time: '2026-11-24T07:00:00.000Z' });
    for (const bad of ['soon', '-3', '5 minutes', '2026-13-45', '', '999999999d'])
      expect(
        codeOf(() => parseSince(bad, now)),
        bad,
      ).toBe('GUARD_CLI_USAGE');
  });
});

describe('guardctl events (real process against a control socket serving events.list)', async () => {
  const socketDir = join(dir, 'run');
  const sockets = socketPaths(socketDir);
  const server = new ControlServer({ publicPath: sockets.public, adminPath: sockets.admin, methods, logger });
  await server.start();
  afterAll(() => server.stop());
  for (let i = 0; i < 5; i++) outbox.emit('agent.stopped', { reason: `r${i}` });
  const tamper = outbox.emit('agent.tamper', { reason: 'state_db_corrupt', detail: 'moved aside' });
  outbox.ack([(outbox.pending(1, 1e9)[0] as { id: string }).id]);

  test('--json lists what was recorded, exactly as stored, with its state', async () => {
    const r = await runGuardctl(['--socket-dir', socketDir, '--json', 'events']);
    expect(r.code, r.stderr).toBe(0);
    const out = r.json<{ events: ListedEvent[]; last_seq: number }>();
    expect(out.events.map((e) => e.event.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(out.events[0]?.state).toBe('shipped');
    expect(out.events[5]?.event).toEqual(tamper);
    expect(out.last_seq).toBe(6);
    expect(out).toMatchObject({ truncated: false });
  });

  test('--type, --since and --limit filter; text output has one line per event', async () => {
    const byType = await runGuardctl([
      '--socket-dir',
      socketDir,
      '--json',
      'events',
      '--type',
      'agent.tamper',
    ]);
    expect(byType.json<{ events: ListedEvent[] }>().events.map((e) => e.event.seq)).toEqual([6]);
    const since = await runGuardctl(['--socket-dir', socketDir, '--json', 'events', '--since', '4']);
    expect(since.json<{ events: ListedEvent[] }>().events.map((e) => e.event.seq)).toEqual([5, 6]);
    const limited = await runGuardctl(['--socket-dir', socketDir, 'events', '--limit', '2']);
    expect(limited.code).toBe(0);
    const lines = limited.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain('agent.tamper');
    expect(lines[1]).toContain('state_db_corrupt');
  });

  test('bad arguments exit 2 with GUARD_CLI_USAGE', async () => {
    for (const args of [
      ['--since', 'whenever'],
      ['--type', 'nope'],
      ['--limit', '0'],
    ]) {
      const r = await runGuardctl(['--socket-dir', socketDir, '--json', 'events', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.json<{ error: { code: string } }>().error.code).toBe('GUARD_CLI_USAGE');
    }
  });

  test('without a daemon: exit 3, GUARD_CONTROL_DAEMON_NOT_RUNNING', async () => {
    const r = await runGuardctl(['--socket-dir', join(dir, 'nothing'), '--json', 'events']);
    expect(r.code).toBe(3);
    expect(r.json<{ error: { code: string } }>().error.code).toBe('GUARD_CONTROL_DAEMON_NOT_RUNNING');
  });

  test('--follow prints new events as they are recorded', async () => {
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin/guardctl.js'),
        '--socket-dir',
        socketDir,
        '--json',
        'events',
        '--follow',
        '--limit',
        '1',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    try {
      await waitFor(() => out.includes('"seq":6'), 'the newest event first');
      const fresh = outbox.emit('agent.stopped', { reason: 'followed' });
      await waitFor(() => out.includes(`"id":"${fresh?.id}"`), 'the new event');
      const lines = out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as ListedEvent);
      expect(lines.map((l) => l.event.seq)).toEqual([6, 7]);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
