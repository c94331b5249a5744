/**
 * Durability of OutboxStore.emit with a real process: a child appends events as fast as it can and
 * prints each id only after `emit` returned; it is killed with SIGKILL at random moments. Every id
 * it printed must be in the DB afterwards, and seq must stay gap-free and never reused.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, test } from 'vitest';
import { ROOT } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tg-dur-');
const AGENT = join(ROOT, 'test/fixtures/shipping/ship-agent.js');

describe('OutboxStore durability (kill -9)', () => {
  test('every event emit() returned for survives kill -9 at 10 random moments; seq never reused', async () => {
    const db = join(dir, 'dur.db');
    const printed = new Map<number, string>();
    for (let k = 0; k < 10; k++) {
      const child = spawn(
        process.execPath,
        [
          AGENT,
          '--db',
          db,
          '--no-ship',
          '--print-emitted',
          '--produce',
          '1000000',
          '--per-tick',
          '50',
          '--tick-ms',
          '1',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      const exited = new Promise((r) => child.once('exit', r));
      await waitFor(() => out.includes('\nE ') || out.startsWith('E '), 'appends to start');
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 200)));
      child.kill('SIGKILL');
      await exited;
      for (const line of out.split('\n')) {
        const m = /^E (\d+) (\S+)$/.exec(line);
        if (!m) continue;
        const seq = Number(m[1]);
        expect(printed.has(seq), `seq ${seq} handed out twice`).toBe(false);
        printed.set(seq, m[2] as string);
      }
    }
    const conn = new Database(db, { readonly: true });
    const rows = conn.prepare('SELECT seq, id FROM outbox ORDER BY seq').all() as {
      seq: number;
      id: string;
    }[];
    conn.close();
    const stored = new Map(rows.map((r) => [r.seq, r.id]));
    expect(printed.size).toBeGreaterThan(100);
    for (const [seq, id] of printed) expect(stored.get(seq), `seq ${seq}`).toBe(id);
    // seqs are gap-free: an append either committed with its seq or never took one
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
  });
});
