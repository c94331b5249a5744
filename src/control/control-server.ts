/**
 * Owns guardd's local control endpoints: the public socket (mode 0666, read-only methods) and the
 * admin socket (mode 0600, owner = the daemon's user, every method). Requests are hostile input:
 * size-capped, parsed defensively, answered with a stable error code, never able to stop the daemon.
 *
 * Every client gets bounded cost (docs/security.md, "Local control sockets"); both sockets share
 * this machinery, each with its own connection table so the public one cannot crowd out the admin one:
 * - one request at a time per connection: while a request is answered, or while the connection's
 *   unsent answers exceed PER_CONNECTION_UNSENT_BYTES, the server stops reading it, so pipelined
 *   requests wait in the client's kernel buffer, not in guardd's heap;
 * - every request line is capped (MAX_REQUEST_BYTES) and must be complete within REQUEST_DEADLINE_MS,
 *   every answer handed to the kernel within DELIVERY_DEADLINE_MS, every idle connection closed after
 *   IDLE_TIMEOUT_MS;
 * - all connections together hold at most TOTAL_UNSENT_BYTES of unsent answers: past that, the
 *   connection whose answer has waited longest (a client that does not read) is closed;
 * - a full table (MAX_CONNECTIONS_PER_SOCKET) never refuses a newcomer while an older connection is
 *   between requests: the longest-idle one is evicted;
 * - per peer uid (read from the kernel by the native addon, ./peer-credentials.ts): at most
 *   maxConnectionsPerUid connections, a newcomer at that cap evicts its own uid's longest-idle
 *   connection, never another uid's; a full table evicts from the uid holding the most connections;
 *   one uid's unread answers may hold at most perUidUnsentBytes, and over the total budget the uid
 *   holding the most unsent bytes loses its longest-waiting connection first. Root and guardd's own
 *   uid are exempt from the per-uid caps and never evicted for another uid's newcomer. Without the
 *   addon (Windows named pipes, a failed build) the limits are per connection only (logged once,
 *   stats say peer_uid: "unavailable").
 * A malformed request (oversized, not UTF-8, not JSON, wrong shape) is answered with
 * GUARD_CONTROL_BAD_REQUEST and the connection is closed: the framing can no longer be trusted.
 */
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { GuardError, isGuardError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { socketPaths } from '../common/platform-paths.js';
import { assertPrivateDir, makePrivateDir, type PrivateDirOptions } from '../common/private-dir.js';
import { loadPeerCredentials, type PeerCredentialsReader } from './peer-credentials.js';
import { type ControlMethods, type ControlResponse, MAX_REQUEST_BYTES } from './protocol.js';

export interface ControlServerOptions {
  readonly publicPath: string;
  readonly adminPath: string;
  readonly methods: ControlMethods;
  readonly logger: Logger;
  /** Overrides for the limits below (tests use small ones to reach them quickly). */
  readonly limits?: Partial<ControlLimits>;
  /**
   * Loads the peer credentials reader (default: the native addon). Throwing means "unavailable":
   * the server runs with per-connection limits only. Tests inject a failing loader.
   */
  readonly loadPeerCredentials?: () => PeerCredentialsReader;
}

/** The per-client bounds; defaults in DEFAULT_CONTROL_LIMITS. */
export interface ControlLimits {
  /** Connections per socket; at the cap a newcomer evicts the longest-idle connection. */
  readonly maxConnectionsPerSocket: number;
  /** A connection's unsent answer bytes above which its next request is not read. */
  readonly perConnectionUnsentBytes: number;
  /** Unsent answer bytes of all connections together; past it the longest-waiting one is closed. */
  readonly totalUnsentBytes: number;
  /** A connection with nothing in progress is closed this long (ms) after its last request or delivered answer. */
  readonly idleTimeoutMs: number;
  /**
   * A request's first byte to its newline (ms): a client trickling bytes is closed. Counted once
   * from the first byte; later chunks do not extend it.
   */
  readonly requestDeadlineMs: number;
  /** An answer written to how it is fully handed to the kernel (ms): a client that does not read is closed. */
  readonly deliveryDeadlineMs: number;
  /** Connections of one peer uid per socket; at the cap its newcomer evicts its own longest-idle one. */
  readonly maxConnectionsPerUid: number;
  /** Unsent answer bytes of one peer uid; past it that uid's longest-waiting connection is closed. */
  readonly perUidUnsentBytes: number;
}

export const DEFAULT_CONTROL_LIMITS: ControlLimits = {
  // 64 per socket: far more than the handful of guardctl/doctor/MDM probes a machine runs at once;
  // each costs a descriptor and at most ~210 KiB of read buffers (MAX_REQUEST_BYTES, one 64 KiB
  // read and the paused stream's own buffer).
  maxConnectionsPerSocket: 64,
  // 256 KiB: a status answer is ~2 KiB, so pipelined small requests still flow; a large events page
  // (≤ 8 MiB) stops the next read until it is delivered.
  perConnectionUnsentBytes: 256 * 1024,
  // 16 MiB: two full events pages (8 MiB each) waiting at once; the whole control budget is in
  // docs/security.md ("Local control sockets") and stays far below the unit's 512 MiB MemoryMax.
  totalUnsentBytes: 16 * 1024 * 1024,
  // 30 s: guardctl sends its request at once and closes after the answer; anything idle longer is a leak.
  idleTimeoutMs: 30_000,
  // 5 s: a request is one short line written at once; 5 s tolerates a loaded 2-core machine.
  requestDeadlineMs: 5_000,
  // 10 s: the control client's own call timeout; a reader that has not taken an answer by then never will.
  deliveryDeadlineMs: 10_000,
  // 16 connections per uid (a quarter of the 64): a user's own guardctl/doctor/IDE probes fit easily,
  // and at least three other users (plus root, exempt) still find free slots.
  maxConnectionsPerUid: 16,
  // 8 MiB per uid (half the 16 MiB total): one full events page; another uid's page always fits.
  perUidUnsentBytes: 8 * 1024 * 1024,
};

/** State of one accepted connection. */
interface Connection {
  readonly socket: Socket;
  readonly admin: boolean;
  /** The peer's uid from the kernel, null when peer credentials are unavailable or unreadable. */
  readonly uid: number | null;
  /** Bytes read and not yet consumed as a request line. */
  pending: Buffer;
  /** A request of this connection is being answered. */
  busy: boolean;
  /** Last time a request was taken or an answer fully delivered (ms since epoch). */
  lastActivity: number;
  /** When the oldest unsent answer byte was written (ms since epoch), null when nothing is unsent. */
  unsentSince: number | null;
  /**
   * When guardd started waiting for the current request's newline (ms since epoch): its first byte,
   * or for bytes that arrived behind a previous request, when that one was answered. Null between
   * requests. Set once per request, so a trickle cannot push the request deadline back.
   */
  requestSince: number | null;
  timer: NodeJS.Timeout | null;
  closed: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A refusal or eviction is logged at most once per this many ms (with a count): a client flood must not flood the log. */
const LIMIT_LOG_INTERVAL_MS = 60_000;

export class ControlServer {
  private readonly servers: Server[] = [];
  private readonly connections = new Set<Connection>();
  private readonly limits: ControlLimits;
  /** Limit hits since they were last logged, by kind. */
  private readonly limitHits = new Map<string, number>();
  private lastLimitLog = 0;
  /** Null when peer credentials are unavailable: limits are per connection only. */
  private readonly peerCredentials: PeerCredentialsReader | null;
  /** uids never capped nor evicted for another uid: root and the daemon's own user. */
  private readonly exemptUids: ReadonlySet<number>;

  constructor(private readonly options: ControlServerOptions) {
    this.limits = { ...DEFAULT_CONTROL_LIMITS, ...options.limits };
    this.exemptUids = new Set([0, process.getuid?.() ?? 0]);
    let reader: PeerCredentialsReader | null = null;
    try {
      reader = (options.loadPeerCredentials ?? (() => loadPeerCredentials()))();
    } catch (err) {
      options.logger.warn(
        { err },
        'peer credentials unavailable: control socket limits stay per connection, not per uid',
      );
    }
    this.peerCredentials = reader;
  }

  /** Listens on both sockets. Fails with GuardError if another daemon already answers there. */
  async start(): Promise<void> {
    await this.listen(this.options.publicPath, false, 0o666);
    await this.listen(this.options.adminPath, true, 0o600);
  }

  /** Closes both sockets and every open connection, and removes the socket files. Idempotent. */
  async stop(): Promise<void> {
    const servers = this.servers.splice(0);
    for (const c of [...this.connections]) this.close(c);
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  /** Open connections and unsent answer bytes, for status and tests. */
  stats(): {
    connections: number;
    unsent_bytes: number;
    peer_uid: 'available' | 'unavailable';
    by_uid: Record<string, { connections: number; unsent_bytes: number }>;
  } {
    const byUid: Record<string, { connections: number; unsent_bytes: number }> = {};
    for (const c of this.connections) {
      const key = c.uid === null ? 'unknown' : String(c.uid);
      byUid[key] ??= { connections: 0, unsent_bytes: 0 };
      const e = byUid[key];
      e.connections++;
      e.unsent_bytes += c.socket.writableLength;
    }
    return {
      connections: this.connections.size,
      unsent_bytes: this.totalUnsent(),
      peer_uid: this.peerCredentials ? 'available' : 'unavailable',
      by_uid: byUid,
    };
  }

  private async listen(path: string, admin: boolean, mode: number): Promise<void> {
    const isPipe = path.startsWith('\\\\.\\pipe\\');
    if (!isPipe) {
      makePrivateDir(dirname(path), 0o755, SOCKET_DIR);
      if (existsSync(path)) {
        if (await answers(path)) {
          throw new GuardError('GUARD_CONTROL_SOCKET_IN_USE', `another guardd already listens on ${path}`, {
            path,
          });
        }
        unlinkSync(path); // stale socket of a daemon that died
      }
    }
    const server = createServer((socket) => this.accept(socket, admin));
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

  private accept(socket: Socket, admin: boolean): void {
    const now = Date.now();
    const conn: Connection = {
      socket,
      admin,
      uid: this.peerUid(socket),
      pending: Buffer.alloc(0),
      busy: false,
      lastActivity: now,
      unsentSince: null,
      requestSince: null,
      timer: null,
      closed: false,
    };
    socket.on('error', () => this.close(conn));
    socket.on('close', () => this.close(conn));
    if (!this.makeRoom(admin, conn.uid)) {
      // every slot is answering a request right now: tell the newcomer instead of letting it hang
      this.limitHit('refused_busy');
      this.finish(conn, fail(null, busyError()));
      return;
    }
    this.connections.add(conn);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('drain', () => this.onDrain(conn));
    this.arm(conn);
  }

  /** The peer's uid, or null (no addon, or the kernel did not say: per-connection limits apply). */
  private peerUid(socket: Socket): number | null {
    if (!this.peerCredentials) return null;
    try {
      return this.peerCredentials(socket).uid;
    } catch {
      this.limitHit('peer_uid_unreadable');
      return null;
    }
  }

  /** True when `uid` is subject to the per-uid limits (known, and neither root nor the daemon's user). */
  private capped(uid: number | null): uid is number {
    return uid !== null && !this.exemptUids.has(uid);
  }

  /**
   * Frees a slot for a newcomer of `uid` by closing a connection that is not answering a request
   * and was active longest ago (a client that does not read its answer counts from when it was
   * written). A capped uid at maxConnectionsPerUid loses its own longest-idle connection; on a full
   * table the victim comes from the capped uid holding the most connections (exempt uids only for an
   * exempt or unknown newcomer when no capped uid has an idle one). False when no slot can be freed.
   */
  private makeRoom(admin: boolean, uid: number | null): boolean {
    const onSocket = [...this.connections].filter((c) => c.admin === admin);
    if (this.capped(uid)) {
      const own = onSocket.filter((c) => c.uid === uid);
      if (own.length >= this.limits.maxConnectionsPerUid) {
        const victim = longestIdle(own);
        if (victim === null) return false;
        this.limitHit('evicted_own_uid');
        this.evict(victim);
        return true;
      }
    }
    if (onSocket.length < this.limits.maxConnectionsPerSocket) return true;
    let victim: Connection | null;
    if (this.peerCredentials) {
      // the capped uid with the most connections gives one up (ties: the longest-idle among them)
      const counts = new Map<number, number>();
      for (const c of onSocket) if (this.capped(c.uid)) counts.set(c.uid, (counts.get(c.uid) ?? 0) + 1);
      const byCount = [...counts.entries()].sort((a, b) => b[1] - a[1]);
      victim = null;
      for (let i = 0; i < byCount.length && victim === null; ) {
        const n = byCount[i]?.[1];
        const tied = new Set<number>();
        while (i < byCount.length && byCount[i]?.[1] === n) tied.add(byCount[i++]?.[0] as number);
        victim = longestIdle(onSocket.filter((c) => c.uid !== null && tied.has(c.uid)));
      }
      if (victim === null) {
        // only exempt or unknown connections are idle: a capped newcomer is not served at their cost
        victim = this.capped(uid) ? null : longestIdle(onSocket);
      }
    } else {
      victim = longestIdle(onSocket);
    }
    if (victim === null) return false;
    this.limitHit('evicted_idle');
    this.evict(victim);
    return true;
  }

  /** Closes `conn` with a GUARD_CONTROL_BUSY line when it can still take one. */
  private evict(conn: Connection): void {
    this.finish(conn, conn.unsentSince === null ? fail(null, busyError()) : null);
  }

  /**
   * Takes `conn` out of the table and closes it after a last answer, when one is given and the
   * client reads; a client with unread answers is cut at once.
   */
  private finish(conn: Connection, last: ControlResponse | null): void {
    const { socket } = conn;
    this.clear(conn);
    this.connections.delete(conn);
    conn.closed = true;
    conn.pending = Buffer.alloc(0);
    if (socket.destroyed) return;
    if (last && socket.writableLength === 0) socket.write(line(last));
    if (socket.writableLength === 0) socket.destroySoon();
    else socket.destroy();
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closed) return;
    conn.pending = conn.pending.length === 0 ? chunk : Buffer.concat([conn.pending, chunk]);
    this.pump(conn);
  }

  private onDrain(conn: Connection): void {
    if (conn.closed) return;
    conn.unsentSince = null;
    conn.lastActivity = Date.now();
    this.pump(conn);
  }

  /** Takes the next complete request of `conn` when the connection may have one answered now. */
  private pump(conn: Connection): void {
    if (conn.closed || conn.busy) return;
    if (conn.socket.writableLength > this.limits.perConnectionUnsentBytes) {
      conn.socket.pause(); // resumed by 'drain' → pump
      this.arm(conn);
      return;
    }
    const nl = conn.pending.indexOf(0x0a);
    const lineLength = nl < 0 ? conn.pending.length : nl;
    if (lineLength > MAX_REQUEST_BYTES) {
      this.protocolError(
        conn,
        new GuardError('GUARD_CONTROL_BAD_REQUEST', `request larger than ${MAX_REQUEST_BYTES} bytes`),
      );
      return;
    }
    if (nl < 0) {
      conn.socket.resume();
      this.arm(conn);
      return;
    }
    const raw = conn.pending.subarray(0, nl);
    conn.requestSince = null; // the line is complete: the next one gets its own deadline
    conn.pending = conn.pending.subarray(nl + 1);
    if (conn.pending.length === 0) conn.pending = Buffer.alloc(0); // let the chunk go
    let text: string;
    try {
      text = utf8.decode(raw);
    } catch {
      this.protocolError(conn, new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request is not UTF-8 text'));
      return;
    }
    if (text.trim() === '') {
      this.pump(conn);
      return;
    }
    conn.busy = true;
    conn.lastActivity = Date.now();
    conn.socket.pause(); // one request at a time: the rest wait in the client's kernel buffer
    this.arm(conn);
    void this.answer(text, conn.admin).then(({ response, protocolError }) => {
      conn.busy = false;
      if (conn.closed) return;
      if (protocolError) {
        this.finish(conn, response);
        return;
      }
      this.send(conn, response);
      // the next pipelined request waits for a turn of the event loop: one connection cannot monopolise it
      setImmediate(() => this.pump(conn));
    });
  }

  private async answer(
    text: string,
    admin: boolean,
  ): Promise<{ response: ControlResponse; protocolError: boolean }> {
    let id: number | null = null;
    let req: Record<string, unknown>;
    let params: object;
    try {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request is not JSON');
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request must be a JSON object');
      req = parsed as Record<string, unknown>;
      if (typeof req.id === 'number' && Number.isSafeInteger(req.id)) id = req.id;
      if (typeof req.method !== 'string')
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request.method must be a string');
      const p = req.params ?? {};
      if (typeof p !== 'object' || p === null || Array.isArray(p))
        throw new GuardError('GUARD_CONTROL_BAD_REQUEST', 'request.params must be an object');
      params = p;
    } catch (err) {
      return { response: fail(id, err), protocolError: true };
    }
    try {
      const name = req.method as string;
      const method = Object.hasOwn(this.options.methods, name) ? this.options.methods[name] : undefined;
      if (!method)
        throw new GuardError('GUARD_CONTROL_UNKNOWN_METHOD', `unknown method "${name.slice(0, 100)}"`);
      if (method.admin && !admin)
        throw new GuardError(
          'GUARD_CONTROL_FORBIDDEN',
          `"${name.slice(0, 100)}" is answered only on the admin socket (run as root)`,
        );
      const result = await method.handle(params as Record<string, unknown>);
      return { response: { id, ok: true, result: result ?? null }, protocolError: false };
    } catch (err) {
      if (!isGuardError(err)) this.options.logger.error({ err }, 'control method failed');
      return { response: fail(id, err), protocolError: false };
    }
  }

  private protocolError(conn: Connection, err: GuardError): void {
    this.finish(conn, fail(null, err));
  }

  /** Writes one answer, first closing readers that do not read when all unsent answers would pass the total budget. */
  private send(conn: Connection, response: ControlResponse): void {
    let bytes: Buffer;
    try {
      bytes = Buffer.from(line(response));
    } catch (err) {
      // not serialisable (a method bug) or too large for one string
      this.options.logger.error({ err }, 'control answer could not be serialised');
      bytes = Buffer.from(line(fail(response.id, new Error('answer could not be serialised'))));
    }
    // One uid's share first: its own longest-waiting readers are closed, never another uid's.
    if (this.capped(conn.uid)) {
      const uid = conn.uid;
      let own = this.unsentOf(uid);
      while (own + bytes.length > this.limits.perUidUnsentBytes) {
        const victim = longestWaiting([...this.connections].filter((c) => c !== conn && c.uid === uid));
        if (!victim) break;
        this.limitHit('closed_uid_unsent');
        own -= victim.socket.writableLength;
        this.close(victim);
      }
    }
    let total = this.totalUnsent();
    while (total + bytes.length > this.limits.totalUnsentBytes) {
      const others = [...this.connections].filter((c) => c !== conn && c.unsentSince !== null);
      let victim: Connection | null = null;
      if (this.peerCredentials) {
        // the capped uid holding the most unsent bytes pays first; exempt/unknown ones last
        let heaviest: number | null = null;
        let most = -1;
        for (const c of others) {
          if (!this.capped(c.uid)) continue;
          const u = this.unsentOf(c.uid);
          if (u > most) {
            most = u;
            heaviest = c.uid;
          }
        }
        victim = longestWaiting(others.filter((c) => heaviest !== null && c.uid === heaviest));
      }
      victim ??= longestWaiting(others);
      if (!victim) break;
      this.options.logger.warn(
        { admin: victim.admin, uid: victim.uid },
        'control answers over budget, closing a client that does not read',
      );
      total -= victim.socket.writableLength;
      this.close(victim);
    }
    if (conn.socket.write(bytes)) {
      conn.unsentSince = null;
      conn.lastActivity = Date.now();
    } else if (conn.unsentSince === null) conn.unsentSince = Date.now();
    this.arm(conn);
  }

  /** Counts a limit that was hit and logs the counts at most once per LIMIT_LOG_INTERVAL_MS. */
  private limitHit(kind: string): void {
    this.limitHits.set(kind, (this.limitHits.get(kind) ?? 0) + 1);
    const now = Date.now();
    if (now - this.lastLimitLog < LIMIT_LOG_INTERVAL_MS) return;
    this.lastLimitLog = now;
    this.options.logger.warn({ hits: Object.fromEntries(this.limitHits) }, 'control socket limits hit');
    this.limitHits.clear();
  }

  private unsentOf(uid: number): number {
    let total = 0;
    for (const c of this.connections) if (c.uid === uid) total += c.socket.writableLength;
    return total;
  }

  private totalUnsent(): number {
    let total = 0;
    for (const c of this.connections) total += c.socket.writableLength;
    return total;
  }

  /**
   * (Re)starts the timer of the one deadline that applies to the connection's state. Each deadline
   * counts from a fixed point (the oldest unsent byte, the request's first byte, the last activity),
   * so re-arming on every chunk or event never extends it.
   */
  private arm(conn: Connection): void {
    this.clear(conn);
    if (conn.closed) return;
    let ms: number;
    let why: string;
    if (conn.unsentSince !== null) {
      ms = this.limits.deliveryDeadlineMs - (Date.now() - conn.unsentSince);
      why = 'timeout_unread';
    } else if (conn.busy) {
      return; // the method's own deadlines apply
    } else if (conn.pending.length > 0) {
      conn.requestSince ??= Date.now();
      ms = this.limits.requestDeadlineMs - (Date.now() - conn.requestSince);
      why = 'timeout_request';
    } else {
      // from the last request or delivered answer: blank lines trickled in do not keep it open
      ms = this.limits.idleTimeoutMs - (Date.now() - conn.lastActivity);
      why = 'timeout_idle';
    }
    conn.timer = setTimeout(
      () => {
        this.limitHit(why);
        this.close(conn);
      },
      Math.max(0, ms),
    );
    conn.timer.unref();
  }

  private clear(conn: Connection): void {
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = null;
  }

  private close(conn: Connection): void {
    this.clear(conn);
    this.connections.delete(conn);
    conn.pending = Buffer.alloc(0);
    if (!conn.socket.destroyed) conn.socket.destroy();
    conn.closed = true;
  }
}

/** The connection not answering a request that was active longest ago; null when all are busy. */
function longestIdle(conns: readonly Connection[]): Connection | null {
  let victim: Connection | null = null;
  let best = Number.POSITIVE_INFINITY;
  for (const c of conns) {
    if (c.busy) continue;
    const since = Math.min(c.lastActivity, c.unsentSince ?? Number.POSITIVE_INFINITY);
    if (since < best) {
      best = since;
      victim = c;
    }
  }
  return victim;
}

/** The connection whose unsent answer has waited longest; null when none has one. */
function longestWaiting(conns: readonly Connection[]): Connection | null {
  let victim: Connection | null = null;
  for (const c of conns)
    if (c.unsentSince !== null && (!victim || c.unsentSince < (victim.unsentSince as number))) victim = c;
  return victim;
}

function busyError(): GuardError {
  return new GuardError('GUARD_CONTROL_BUSY', 'guardd has too many control connections; try again');
}

function line(response: ControlResponse): string {
  return `${JSON.stringify(response)}\n`;
}

function fail(id: number | null, err: unknown): ControlResponse {
  if (isGuardError(err)) return { id, ok: false, error: { code: err.code, message: err.message } };
  return {
    id,
    ok: false,
    error: { code: 'GUARD_INTERNAL', message: (err as Error)?.message ?? String(err) },
  };
}

/**
 * How the socket dir is vetted (private-dir.ts): root binds its sockets there, removes a stale one
 * and chmods the new ones by path, and guardctl trusts whoever answers there, so a directory another
 * user could change is refused (GUARD_CONFIG_UNSAFE_DIR) — found in review: a socket_dir under a
 * user's directory was made and used as it was, and its owner could swap guardd's sockets for
 * their own listeners (guardctl then talks to them) or a socket for a link between guardd's bind
 * and its chmod (root then chmods the link's target 0666).
 */
const SOCKET_DIR: PrivateDirOptions = {
  key: 'paths.socket_dir',
  hint: 'set paths.socket_dir to a directory only root can change (default /run/toolguard)',
};

/**
 * Throws GUARD_CONFIG_UNSAFE_DIR when another user could change `socketDir` (SOCKET_DIR), and
 * GUARD_CONTROL_SOCKET_IN_USE when a guardd answers on either control socket of `socketDir`: what a second guardd checks before it touches anything (state database, quarantine,
 * pre-exec listener, local mode's files), so starting one twice cannot disturb the one running.
 */
export async function assertNoDaemonAnswers(socketDir: string): Promise<void> {
  assertPrivateDir(socketDir, process.geteuid?.() ?? -1, process.getegid?.() ?? -1, SOCKET_DIR);
  const paths = socketPaths(socketDir);
  for (const path of [paths.public, paths.admin])
    if (await answers(path))
      throw new GuardError('GUARD_CONTROL_SOCKET_IN_USE', `another guardd already listens on ${path}`, {
        path,
      });
}

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
