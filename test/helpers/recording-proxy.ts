/**
 * A recording reverse proxy on 127.0.0.1 between guardd and a real collector: every request is
 * forwarded unchanged and recorded (method, path, header names and values, body bytes), so a test
 * can hold the agent's real traffic against what `guardctl explain` lists. `down()` answers 503
 * without forwarding (the collector seems unreachable) until `up()`.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export interface RecordedRequest {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  /** Header names as sent, lower-case, with their values. */
  readonly headers: readonly (readonly [string, string])[];
  /** The body as sent (gzip still applied). */
  readonly body: Buffer;
  /** Status the client got. */
  status: number;
}

export interface RecordingProxy {
  readonly url: string;
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const base = new URL(target);
  const requests: RecordedRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: [string, string][] = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
        headers.push([(req.rawHeaders[i] as string).toLowerCase(), req.rawHeaders[i + 1] as string]);
      const rec: RecordedRequest = {
        method: req.method ?? '',
        path: (req.url ?? '').split('?')[0] ?? '',
        headers,
        body: Buffer.concat(chunks),
        status: 0,
      };
      requests.push(rec);
      const fwd = request(
        { host: base.hostname, port: base.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          rec.status = up.statusCode ?? 0;
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      fwd.on('error', () => {
        rec.status = 502;
        res.writeHead(502).end();
      });
      fwd.end(rec.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The body as text: gunzipped when the request said gzip. */
export function bodyText(r: RecordedRequest): string {
  const gz = r.headers.some(([k, v]) => k === 'content-encoding' && v === 'gzip');
  return (gz ? gunzipSync(r.body) : r.body).toString('utf8');
}

/** The events of a recorded `POST /v1/events`. */
export function eventsOf(r: RecordedRequest): Record<string, unknown>[] {
  return bodyText(r)
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * Every leaf path of `value` with its value: objects descended with `.`, arrays of objects with
 * `[]` (so a nested object anywhere is seen); an array of scalars is one leaf at its own path.
 */
export function leafPaths(value: unknown, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  if (Array.isArray(value)) {
    if (value.some((v) => typeof v === 'object' && v !== null))
      for (const v of value) out.push(...leafPaths(v, `${prefix}[]`));
    else out.push([prefix, value]);
    return out;
  }
  if (typeof value === 'object' && value !== null) {
    if (prefix) out.push([prefix, value]);
    for (const [k, v] of Object.entries(value)) out.push(...leafPaths(v, prefix ? `${prefix}.${k}` : k));
    return out;
  }
  out.push([prefix, value]);
  return out;
}
