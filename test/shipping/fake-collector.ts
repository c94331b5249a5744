/**
 * A tiny collector on 127.0.0.1 for shipper/client tests: real HTTP, real gzip NDJSON, idempotent
 * by event id like guard-collector, with a per-request hook that can answer 401/413/429/503/5xx,
 * hang, or reject chosen events — the faults the shipper must survive.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export interface FakeRequest {
  readonly path: string;
  readonly auth: string | undefined;
  readonly events: Record<string, unknown>[];
  readonly bytes: number;
}

/** Return true when the hook answered the request itself. */
export type Hook = (req: FakeRequest, res: ServerResponse) => boolean;

export class FakeCollector {
  readonly stored = new Map<string, Record<string, unknown>>();
  readonly requests: FakeRequest[] = [];
  storeCount = 0;
  duplicateCount = 0;
  enrollCount = 0;
  tokens = new Set<string>();
  hook: Hook | null = null;
  /** Events whose id is here are rejected as invalid (400 with rejected[]), the rest stored. */
  poison = new Set<string>();
  private server: Server | null = null;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let raw = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
      const text = raw.toString('utf8');
      const path = req.url ?? '';
      const events =
        path === '/v1/events'
          ? text
              .split('\n')
              .filter((l) => l.trim())
              .map((l) => JSON.parse(l) as Record<string, unknown>)
          : [];
      const fr: FakeRequest = { path, auth: req.headers.authorization, events, bytes: raw.length };
      this.requests.push(fr);
      if (this.hook?.(fr, res)) return;
      const json = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (path === '/v1/enroll') {
        const body = JSON.parse(text) as { enroll_secret: string };
        if (body.enroll_secret !== 'sekret')
          return json(401, { error: { code: 'GUARD_COLLECTOR_ENROLL_DENIED' } });
        this.enrollCount++;
        const token = `tok-${this.enrollCount}`;
        this.tokens.add(token);
        return json(200, { device_token: token });
      }
      if (path !== '/v1/events') return json(404, { error: 'not found' });
      const token = /^Bearer (.+)$/.exec(fr.auth ?? '')?.[1];
      if (!token || !this.tokens.has(token))
        return json(401, { error: { code: 'GUARD_COLLECTOR_UNAUTHORIZED' } });
      let accepted = 0;
      let duplicates = 0;
      const rejected: { id: string; reason: string }[] = [];
      for (const e of events) {
        const id = e.id as string;
        if (this.poison.has(id)) {
          rejected.push({ id, reason: 'schema: /x: bad' });
          continue;
        }
        if (this.stored.has(id)) {
          duplicates++;
          this.duplicateCount++;
        } else {
          accepted++;
          this.storeCount++;
          this.stored.set(id, e);
        }
      }
      if (rejected.length)
        return json(400, {
          error: { code: 'GUARD_COLLECTOR_INVALID_EVENTS' },
          accepted,
          duplicates,
          rejected,
        });
      return json(200, { accepted, duplicates });
    });
  }
}
