/**
 * guardctl's text for people: `status` in sections with relative times and human sizes within
 * 100 columns, internal counters only with --verbose; events wrapped to 100 columns; colour only
 * when asked for by a terminal and never with NO_COLOR; --json unchanged. Times are built from
 * one base and passed as `now`, so the tests hold on any date.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { formatEventLine } from '../../src/cli/commands/events.js';
import { formatStatus } from '../../src/cli/commands/status.js';
import { humanBytes, relativeTime, wrap } from '../../src/cli/format.js';
import { colourWanted, createStyle } from '../../src/cli/render.js';
import type { DaemonStatus } from '../../src/control/status.js';
import type { ListedEvent } from '../../src/store/outbox-store.js';

const BASE = Date.now();
const iso = (offsetMs: number): string => new Date(BASE + offsetMs).toISOString();
const MIN = 60_000;
const DAY = 86_400_000;

function status(): DaemonStatus {
  return {
    running: true,
    pid: 4242,
    version: '0.1.0',
    started_at: iso(-3 * 60 * MIN),
    local_mode: false,
    device_id: '01a24376-9a2c-7000-bfda-06e8d297d66b',
    hostname: 'dev-laptop-17',
    policy: {
      state: 'ok',
      version: 12,
      issued_at: iso(-2 * DAY),
      expires_at: iso(12 * DAY + 60 * MIN),
      sha256: 'ab'.repeat(32),
      mode: 'enforce',
      rules: 3,
      source: 'https://collector.example/v1/policy',
      last_fetch_at: iso(-3 * MIN),
      last_error: null,
    },
    sensors: [
      {
        name: 'process',
        running: true,
        details: {
          source: 'exec-events',
          exec_events: 'active',
          observed: 812,
          ticks: 187,
          unchanged_listings: 28,
        },
        skipped: { exited: 2 },
      },
      { name: 'install', running: true, details: { watched_dirs: 14, reported: 1, scans: 5 }, skipped: {} },
    ],
    enforcement: { blocked: 2, quarantined: 1, denied: 5, warned: 1, audited: 0, failed: 0 },
    exec_deny: {
      state: 'on',
      deadline_ms: 200,
      marked: ['/', '/home'],
      skipped: [{ mount: '/mnt/share', fstype: 'nfs4' }],
      mark_failures: 0,
      counters: { events: 10234, denied: 5, cache_hits: 9000, deadline_misses: 0, overflow: 0 },
      decided: 1234,
      decide_errors: 0,
      watchdog_stalls: 0,
      file_reads: { sha256: { hashed: 3 }, markers: { scanned: 4 } },
    },
    outbox: { depth: 3, bytes: 4300, dropped_total: 0 },
    shipper: {
      collector_url: 'https://collector.example',
      enrolled: true,
      last_success_at: iso(-12_000),
      last_error: null,
      shipped_total: 120,
    },
  };
}

const plain = createStyle(false);
const cols = (text: string): number[] => text.split('\n').map((l) => [...l].length);

afterEach(() => {
  delete process.env.NO_COLOR;
});

describe('readable output', () => {
  it('status: sections, relative times, human sizes, within 100 columns', () => {
    const text = formatStatus(status(), { now: BASE, verbose: false, style: plain });
    for (const title of [
      'Daemon',
      'Policy',
      'Enforcement coverage',
      'Counts since start',
      'Outbox',
      'Collector',
    ])
      expect(text).toMatch(new RegExp(`^${title}$`, 'm'));
    expect(text).toContain('up 3 h');
    expect(text).toContain('issued 2 d ago · expires in 12 d');
    expect(text).toContain('fetched 3 min ago');
    expect(text).toContain('3 events (4.2 KiB)');
    expect(text).toContain('last success 12 s ago');
    expect(text).toContain('/mnt/share (nfs4)');
    expect(text).toContain('2 blocked · 5 denied before exec · 1 quarantined');
    expect(Math.max(...cols(text))).toBeLessThanOrEqual(100);
    // internal counters only with --verbose
    expect(text).not.toMatch(/ticks=|unchanged_listings=|cache_hits=/);
    expect(text).not.toContain('\x1b[');
    const verbose = formatStatus(status(), { now: BASE, verbose: true, style: plain });
    expect(verbose).toMatch(/ticks=187/);
    expect(verbose).toMatch(/cache_hits=9000/);
    expect(verbose).toContain('ab'.repeat(32));
    expect(Math.max(...cols(verbose))).toBeLessThanOrEqual(100);
  });

  it('status: a stale policy and a failing collector stand out, in colour on a terminal', () => {
    const s = status();
    const bad: DaemonStatus = {
      ...s,
      policy: { ...s.policy, state: 'stale', expires_at: iso(-DAY) },
      shipper: { ...s.shipper, enrolled: false, last_error: 'enroll: 401' },
    };
    const text = formatStatus(bad, { now: BASE, verbose: false, style: createStyle(true) });
    expect(text).toContain('\x1b[1;31mSTALE');
    expect(text).toContain('\x1b[1;31mnot enrolled');
    expect(formatStatus(bad, { now: BASE, verbose: false, style: plain })).toContain('expires 24 h ago');
  });

  it('colour only on a terminal, never with --json or NO_COLOR', () => {
    expect(colourWanted(false, { isTTY: true })).toBe(true);
    expect(colourWanted(false, { isTTY: false })).toBe(false);
    expect(colourWanted(true, { isTTY: true })).toBe(false);
    process.env.NO_COLOR = '1';
    expect(colourWanted(false, { isTTY: true })).toBe(false);
  });

  it('events: on a terminal wrapped to 100 columns under the description; piped one line each', () => {
    const listed = {
      state: 'queued',
      event: {
        id: 'x',
        seq: 5,
        time: '2026-12-04T23:50:43.123Z',
        type: 'process.blocked',
        name: 'claude',
        pid: 11451,
        user: 'alice',
        exe: '/home/alice/.local/share/claude/versions/2.0.14/claude-with-a-long-name',
        rule: { id: 'claude-code' },
        outcome: { action_taken: 'killed' },
      },
    } as unknown as ListedEvent;
    expect(formatEventLine(listed).split('\n')).toHaveLength(1); // a pipe: one line per event
    const text = formatEventLine(listed, plain, true);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(
      /^12-04 23:50:43 #5 {6}queued {2}process\.blocked {5}claude \(pid 11451, user alice\)/,
    );
    expect(lines.length).toBeGreaterThan(1);
    // continuation lines align under the description; a path too long for that moves left to fit
    for (const l of lines.slice(1)) expect(l).toMatch(/^ {51}\S|^ {1,50}\/home\/alice\//);
    expect(lines.at(-1)?.trim()).toBe('rule claude-code → killed'); // the decision on a line of its own
    expect(formatEventLine(listed)).toContain(' — rule claude-code → killed');
    expect(Math.max(...cols(text))).toBeLessThanOrEqual(100);
    expect(formatEventLine(listed, createStyle(true), true)).toContain('\x1b[1;31mprocess.blocked');
    // "not acted on" says why, in words; --json keeps the schema's value
    const as = (action_taken: string, details?: object): string =>
      formatEventLine({
        ...listed,
        event: { ...listed.event, outcome: { action_taken, details } },
      } as ListedEvent);
    expect(as('warn_suppressed')).toContain('→ not warned again (warned recently)');
    expect(as('warn_suppressed', { scope: 'started before guardd' })).toContain(
      '→ recorded only (outside the enforcement scope)',
    );
    expect(as('would_block')).toContain('→ would block (monitor mode)');
    expect(as('killed')).toContain('→ killed');
  });

  it('helpers: relative times both ways, binary sizes, wrapping without cutting words', () => {
    expect(relativeTime(iso(-5_000), BASE)).toBe('just now');
    expect(relativeTime(iso(-90 * MIN), BASE)).toBe('1 h ago');
    expect(relativeTime(iso(3 * DAY), BASE)).toBe('in 3 d');
    expect(relativeTime(null, BASE)).toBe('never');
    expect(humanBytes(0)).toBe('0 B');
    expect(humanBytes(13 * 1024 * 1024)).toBe('13 MiB');
    const long = `a ${'x'.repeat(120)} b`;
    expect(wrap(long, 4)).toEqual(['    a', 'x'.repeat(120), '    b']);
    expect(wrap(`a ${'y'.repeat(90)}`, 20)).toEqual([
      `${' '.repeat(20)}a`,
      `${' '.repeat(10)}${'y'.repeat(90)}`,
    ]);
  });
});
