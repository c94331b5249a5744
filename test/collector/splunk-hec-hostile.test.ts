/**
 * Review finding: a broken or hostile HEC endpoint (or a proxy in front of it) that answers with a
 * body it never finishes — a byte now and then, or megabytes without end — held the delivery
 * forever: the request's `timeout` is the socket's idle time, which a trickle never trips, and the
 * body was read to its end however long. No error, no retry, no metric: forwarding just stopped.
 * The whole request now has `timeoutMs`, and an answer over 64 KiB fails at once.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { StoredEventRow } from '../../src/collector/collector-store.js';
import { SplunkHecSink } from '../../src/collector/forwarders/splunk-hec-sink.js';
import { heartbeatEvent } from '../helpers/collector.js';

const servers: Server[] = [];
const open = new Set<ServerResponse>();
afterAll(async () => {
  for (const res of open) res.destroy();
  for (const s of servers) await new Promise((r) => s.close(r));
});

/** An HTTP server that answers every request with `answer` (which may never end the response). */
async function endpoint(
  answer: (res: ServerResponse) => void,
): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    req.on('end', () => {
      open.add(res);
      res.on('close', () => open.delete(res));
      answer(res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
}

function rows(n: number): StoredEventRow[] {
  return Array.from({ length: n }, (_, i) => ({
    rid: i + 1,
    device_id: 'dev-x',
    enrollment: 1,
    received_at: new Date().toISOString(),
    body: JSON.stringify(heartbeatEvent('dev-x', i + 1)),
  }));
}

describe('Splunk HEC sink against an endpoint whose answer never ends', () => {
  it('a trickled answer (a byte every 20 ms, never finished) fails the delivery at timeoutMs', async () => {
    const hec = await endpoint((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const t = setInterval(() => res.write(' '), 20);
      res.on('close', () => clearInterval(t));
    });
    const sink = new SplunkHecSink({ url: hec.url, token: 't', timeoutMs: 300 });
    // Without the fix this never settles and the test times out.
    await expect(sink.deliver(rows(3))).rejects.toThrow(/timed out/);
    expect(hec.requests()).toBe(1);
    await sink.close();
  }, 15_000);

  it('an endless answer (megabytes, never finished) fails at once past 64 KiB, not read to its end', async () => {
    const chunk = ' '.repeat(16 * 1024);
    let written = 0;
    const hec = await endpoint((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk)) written += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    const sink = new SplunkHecSink({ url: hec.url, token: 't', timeoutMs: 60_000 });
    await expect(sink.deliver(rows(3))).rejects.toThrow(/longer than 65536 bytes/);
    expect(written).toBeLessThan(64 * 1024 * 1024);
    await sink.close();
  }, 15_000);
});
