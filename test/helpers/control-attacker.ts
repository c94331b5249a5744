/**
 * The public control socket's attacker, shared by the tests that drive it (control-attack.test.ts,
 * guardd-memory.test.ts): a plain Node script with no toolguard code, run with an unprivileged
 * user's uid/gid; a guardd state DB seeded so `events.list` answers a full 8 MiB page; guardd's
 * memory read from /proc (VmHWM: the peak RSS, so no sampling is needed).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../src/common/logger.js';
import { openDatabase } from '../../src/store/database.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { OutboxStore } from '../../src/store/outbox-store.js';

const MiB = 1024 * 1024;

/**
 * Modes: `pipeline <socket> <conns> <requests>`: conns connections, each pipelining requests
 * events.list calls and never reading past a first chunk (one line per connection: answered or
 * closed); `idle <socket> <n>`: n connections that send nothing; `hostile <socket> '' <base64>`:
 * send raw bytes and print what came back when guardd closes.
 */
const ATTACKER = String.raw`
import { createConnection } from 'node:net';
const [mode, path, a, b] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
if (mode === 'pipeline') {
  let seen = 0;
  for (let c = 0; c < Number(a); c++) {
    const s = createConnection(path);
    let done = false;
    const report = (how) => { if (!done) { done = true; out({ conn: c, how, seen: ++seen }); } };
    s.on('error', () => report('closed'));
    s.on('close', () => report('closed'));
    s.once('data', () => { s.pause(); report('answered'); });
    s.on('connect', () => {
      for (let i = 0; i < Number(b); i++) s.write(JSON.stringify({ id: i + 1, method: 'events.list', params: { limit: 5000 } }) + '\n');
    });
  }
} else if (mode === 'idle') {
  let open = 0;
  for (let c = 0; c < Number(a); c++) {
    const s = createConnection(path);
    s.on('error', () => {});
    s.on('connect', () => { if (++open === Number(a)) out({ connected: open }); });
  }
} else if (mode === 'hostile') {
  const s = createConnection(path);
  let buf = '';
  s.on('data', (d) => { buf += d; });
  s.on('error', () => {});
  s.on('close', () => { out({ answer: buf }); process.exit(0); });
  s.on('connect', () => s.write(Buffer.from(b, 'base64')));
}
setInterval(() => {}, 1 << 30); // stay until killed
`;

export interface Attack {
  readonly child: ChildProcess;
  /** The JSON lines the attacker printed so far. */
  lines(): Record<string, unknown>[];
}

/** Runs attacker processes as `uid`/`gid` from `dir` (which that user must be able to read). */
export class ControlAttacker {
  private readonly running = new Set<ChildProcess>();
  private readonly script: string;

  constructor(
    private readonly dir: string,
    private readonly uid: number,
    private readonly gid: number,
  ) {
    this.script = join(dir, 'attacker.mjs');
    writeFileSync(this.script, ATTACKER, { mode: 0o644 });
  }

  start(args: string[]): Attack {
    const child = spawn(process.execPath, [this.script, ...args], {
      uid: this.uid,
      gid: this.gid,
      cwd: this.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.running.add(child);
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
    });
    return {
      child,
      lines: () =>
        out
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>),
    };
  }

  /** Kills one attacker (by its pid) and resolves once it has exited. */
  stop(child: ChildProcess): Promise<void> {
    this.running.delete(child);
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  stopAll(): Promise<void> {
    return Promise.all([...this.running].map((c) => this.stop(c))).then(() => undefined);
  }
}

/** Current and peak RSS of `pid`, in bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1]) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

/**
 * Creates guardd's state DB in `stateDir` holding 5,000 events of ~1.6 KB, so that
 * `events.list` with limit 5000 answers a full 8 MiB page.
 */
export function seedFullEventsPage(stateDir: string): void {
  const { db } = openDatabase(join(stateDir, 'guardd.db'), { migrations: MIGRATIONS });
  const outbox = new OutboxStore({
    db,
    deviceId: 'attack-test',
    hostname: 'attack-test',
    maxBytes: 64 * MiB,
    logger: silentLogger(),
  });
  db.transaction(() => {
    for (let i = 0; i < 5000; i++) outbox.emit('agent.stopped', { reason: 'r'.repeat(1600) });
  })();
  db.close();
}
