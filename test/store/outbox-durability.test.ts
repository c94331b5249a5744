/**
 * Durability of OutboxStore.emit with a real process: a child appends events as fast as it can and
 * prints each id only after `emit` returned; it is killed with SIGKILL while appending, after a number
 * of appends it observed that differs from run to run (not after a random delay). Every id
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
  test('every event emit() returned for survives kill -9 mid-append (10 times); seq never reused', async () => {
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
      // 'close', not 'exit': every line the child wrote has been read by then.
      const exited = new Promise((r) => child.once('close', r));
      // The child keeps appending while the kill is delivered; waiting for a count that differs per
      // run moves the kill across the child's batches without depending on the machine's speed.
      const appends = 20 + 37 * k;
      await waitFor(() => (out.match(/^E /gm)?.length ?? 0) >= appends, `${appends} appends`);
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
    expect(printed.size).toBeGreaterThanOrEqual(10 * 20 + 37 * 45);
    for (const [seq, id] of printed) expect(stored.get(seq), `seq ${seq}`).toBe(id);
    // seqs are gap-free: an append either committed with its seq or never took one
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
  });
});
