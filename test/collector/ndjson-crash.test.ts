/**
 * The NDJSON file sink leaves whole lines only: a torn last line (what a crash in the middle of a
 * write leaves) is cut off and the file rotated at the next open; and the real collector process,
 * killed with SIGKILL while it forwards, restarted on the same database and file, ends with every
 * event in the output, every line parseable, and duplicates only as identical copies of one id.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StoredEventRow } from '../../src/collector/collector-store.js';
import { NdjsonFileSink } from '../../src/collector/forwarders/ndjson-file-sink.js';
import {
  blockedEvent,
  collectorTempDir,
  enrollDevice,
  ndjson,
  spawnCollectorProcess,
} from '../helpers/collector.js';
import { waitFor } from '../helpers/wait.js';

const rows = (events: readonly Record<string, unknown>[]): StoredEventRow[] =>
  events.map((e) => ({ body: JSON.stringify(e) }) as unknown as StoredEventRow);

/** Every line of the live file and its rotations, oldest first; throws on a line that does not parse. */
function outputLines(file: string, keep: number): { id: string; line: string }[] {
  const out: { id: string; line: string }[] = [];
  for (const f of [...Array.from({ length: keep }, (_, i) => `${file}.${keep - i}`), file]) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    if (text.length) expect(text.endsWith('\n'), `${f} ends with a whole line`).toBe(true);
    for (const line of text.split('\n').filter(Boolean))
      out.push({ id: (JSON.parse(line) as { id: string }).id, line });
  }
  return out;
}

describe('NDJSON file sink: whole lines only', () => {
  it('cuts a torn last line off at open and rotates, so new lines never join it', async () => {
    const file = join(collectorTempDir('tg-ndj-torn-'), 'events.ndjson');
    const whole = [blockedEvent('dev-t', 1), blockedEvent('dev-t', 2)];
    writeFileSync(file, `${ndjson(whole)}${JSON.stringify(blockedEvent('dev-t', 3)).slice(0, 57)}`);
    const sink = new NdjsonFileSink({ file, maxBytes: 1024 * 1024, keep: 3 });
    const fresh = [blockedEvent('dev-t', 3), blockedEvent('dev-t', 4)];
    await sink.deliver(rows(fresh));
    await sink.close();
    expect(sink.tornLinesRepaired).toBe(1);
    expect(readFileSync(`${file}.1`, 'utf8')).toBe(ndjson(whole));
    expect(readFileSync(file, 'utf8')).toBe(ndjson(fresh));
    expect(outputLines(file, 3).map((l) => l.id)).toEqual([...whole, ...fresh].map((e) => e.id));
  });

  it('a file holding only a torn line is emptied in place (nothing whole to keep)', async () => {
    const file = join(collectorTempDir('tg-ndj-torn-'), 'events.ndjson');
    writeFileSync(file, '{"id":"0192f5e0-0000-7000-8000-00000000');
    const sink = new NdjsonFileSink({ file, maxBytes: 1024 * 1024, keep: 3 });
    const fresh = [blockedEvent('dev-t', 1)];
    await sink.deliver(rows(fresh));
    await sink.close();
    expect(existsSync(`${file}.1`)).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe(ndjson(fresh));
  });

  it('a clean file is appended to as before (no repair, no rotation)', async () => {
    const file = join(collectorTempDir('tg-ndj-torn-'), 'events.ndjson');
    const old = [blockedEvent('dev-t', 1)];
    writeFileSync(file, ndjson(old));
    const sink = new NdjsonFileSink({ file, maxBytes: 1024 * 1024, keep: 3 });
    await sink.deliver(rows([blockedEvent('dev-t', 2)]));
    await sink.close();
    expect(sink.tornLinesRepaired).toBe(0);
    expect(existsSync(`${file}.1`)).toBe(false);
    expect(outputLines(file, 3)).toHaveLength(2);
  });
});

describe('kill -9 of the collector while it writes the NDJSON file', () => {
  const BATCHES = 30;
  const PER_BATCH = 100;
  const KEEP = 50;

  it('after restart: every event in the output, every line parses, duplicates only by id', {
    timeout: 180_000,
  }, async () => {
    const dir = collectorTempDir('tg-ndj-crash-');
    const file = join(dir, 'events.ndjson');
    const args = ['--ndjson-out', file, '--ndjson-keep', String(KEEP)];
    // long command lines make each forwarded batch a large write, so the kill can land inside one
    const pad = 'x'.repeat(4000);
    const batches = Array.from({ length: BATCHES }, (_, b) =>
      Array.from(
        { length: PER_BATCH },
        (_, i): Record<string, unknown> => ({
          ...blockedEvent('dev-crash', b * PER_BATCH + i + 1),
          argv: ['claude', `--pad=${pad}`],
        }),
      ),
    );
    const first = await spawnCollectorProcess({ args });
    const token = await enrollDevice(first.url, first.enrollSecret, 'dev-crash');
    const post = (url: string, events: readonly unknown[]): Promise<Response> =>
      fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
        body: ndjson(events),
      });

    let next = 0;
    let killing = false;
    const sender = async (): Promise<void> => {
      while (next < BATCHES && !killing) {
        const b = next++;
        try {
          if ((await post(first.url, batches[b] as unknown[])).status !== 200) return;
        } catch {
          return; // the collector died: the agent keeps this batch and re-sends it
        }
      }
    };
    const senders = Promise.all([sender(), sender()]);
    // kill once the sink has written part of the stream (observed in the file), while batches still flow
    await waitFor(
      () => existsSync(file) && readFileSync(file).length > 20 * PER_BATCH * pad.length,
      'the NDJSON sink to have written ~20 batches',
      { intervalMs: 1, timeoutMs: 60_000 },
    );
    killing = true;
    await first.kill();
    await senders;
    const before = readFileSync(file, 'utf8');
    const tornByTheKill = !before.endsWith('\n');
    // the kill may or may not have landed inside a write; leave a torn line either way, as it would
    if (!tornByTheKill) appendFileSync(file, before.slice(0, before.indexOf('\n') - 100));

    const second = await spawnCollectorProcess({
      args,
      dbFile: first.dbFile,
      enrollSecret: first.enrollSecret,
      adminToken: first.adminToken,
    });
    try {
      for (const batch of batches) expect((await post(second.url, batch)).status).toBe(200);
      const all = batches.flat();
      const lines = await waitFor(
        () => {
          const l = outputLines(file, KEEP);
          return new Set(l.map((x) => x.id)).size >= all.length ? l : undefined;
        },
        'every event in the NDJSON output',
        { timeoutMs: 60_000 },
      );
      expect(new Set(lines.map((l) => l.id))).toEqual(new Set(all.map((e) => e.id as string)));
      const byId = new Map<string, string>();
      for (const { id, line } of lines) {
        const seen = byId.get(id);
        if (seen !== undefined) expect(line, `duplicate of ${id}`).toBe(seen);
        byId.set(id, line);
      }
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});
