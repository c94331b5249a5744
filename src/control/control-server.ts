/**
 * Owns guardd's local control endpoints: the public socket (mode 0666, read-only methods) and the
 * admin socket (mode 0600, owner = the daemon's user, every method). Requests are hostile input:
 * size-capped, parsed defensively, answered with a stable error code, never able to stop the daemon.
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { GuardError, isGuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { type ControlMethods, type ControlResponse, MAX_REQUEST_BYTES } from './protocol.js';

export interface ControlServerOptions {
  readonly publicPath: string;
  readonly adminPath: string;
  readonly methods: ControlMethods;
  readonly logger: Logger;
}

/** Connections idle longer than this are closed: a stuck client must not hold a descriptor forever. */
const IDLE_TIMEOUT_MS = 60_000;
/** At most this many concurrent connections per socket. */
const MAX_CONNECTIONS = 64;

export class ControlServer {
  private readonly servers: Server[] = [];

  constructor(private readonly options: ControlServerOptions) {}

  /** Listens on both sockets. Fails with GuardError if another daemon already answers there. */
  async start(): Promise<void> {
    await this.listen(this.options.publicPath, false, 0o666);
    await this.listen(this.options.adminPath, true, 0o600);
  }

  /** Closes both sockets and removes their files. Idempotent. */
  async stop(): Promise<void> {
    const servers = this.servers.splice(0);
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private async listen(path: string, admin: boolean, mode: number): Promise<void> {
    const isPipe = path.startsWith('\\\\.\\pipe\\');
    if (!isPipe) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
      if (existsSync(path)) {
        if (await answers(path)) {
          throw new GuardError('GUARD_CONTROL_SOCKET_IN_USE', `another guardd already listens on ${path}`, {
            path,
          });
        }
        unlinkSync(path); // stale socket of a daemon that died
      }
    }
    const server = createServer((socket) => this.serve(socket, admin));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.options.logger.error({ err, path }, 'control socket error'));
    if (!isPipe) chmodSync(path, mode);
    this.servers.push(server);
  }

  private serve(socket: Socket, admin: boolean): void {
    let buffer = '';
    let queue = Promise.resolve();
    socket.setEncoding('utf8');
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.length > MAX_REQUEST_BYTES && !buffer.includes('\n')) {
        this.write(
          socket,
          fail(
            null,
            new GuardError('GUARD_CONTROL_BAD_REQUEST', `request larger than ${MAX_REQUEST_BYTES} bytes`),
          ),
        );
        socket.end();
        buffer = '';
        return;
      }
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim())
          queue = queue.then(() => this.answer(line, admin).then((r) => this.write(socket, r)));
        nl = buffer.indexOf('\n');
      }
    });
  }

  private async answer(line: string, admin: boolean): Promise<ControlResponse> {
    let id: number | null = null;
    try {
      if (line.length > MAX_REQUEST_BYTES)
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', `request larger than ${MAX_REQUEST_BYTES} bytes`);
      let req: unknown;
      try {
        req = JSON.parse(line);
      } catch {
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request is not JSON');
      }
      if (typeof req !== 'object' || req === null || Array.isArray(req))
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request must be a JSON object');
      const r = req as Record<string, unknown>;
      if (typeof r.id === 'number' && Number.isSafeInteger(r.id)) id = r.id;
      if (typeof r.method !== 'string')
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request.method must be a string');
      const params = r.params ?? {};
      if (typeof params !== 'object' || params === null || Array.isArray(params))
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request.params must be an object');
      const method = Object.hasOwn(this.options.methods, r.method)
        ? this.options.methods[r.method]
        : undefined;
      if (!method)
        throw new GuardError('GUARD_CONTROL_UNKNOWN_METHOD', `unknown method "${r.method.slice(0, 100)}"`);
      if (method.admin && !admin)
        throw new GuardError(
          'GUARD_CONTROL_FORBIDDEN',
          `"${r.method}" is answered only on the admin socket (run as root)`,
        );
      const result = await method.handle(params as Record<string, unknown>);
      return { id, ok: true, result: result ?? null };
    } catch (err) {
      if (!isGuardError(err)) this.options.logger.error({ err }, 'control method failed');
      return fail(id, err);
    }
  }

  private write(socket: Socket, response: ControlResponse): void {
    if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
  }
}

function fail(id: number | null, err: unknown): ControlResponse {
  if (isGuardError(err)) return { id, ok: false, error: { code: err.code, message: err.message } };
  return {
    id,
    ok: false,
    error: { code: 'GUARD_INTERNAL', message: (err as Error)?.message ?? String(err) },
  };
}

/** True when something accepts connections on `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
