/**
 * The native peer credentials addon (native/peercred) on real Unix sockets: the peer of a
 * connection from this process is this process; a client run as a real unprivileged user (created
 * here, removed after) shows that user's uid/gid and the client's pid. Needs root to create the
 * user, like CI; Linux/macOS only (Windows named pipes have no addon).
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isGuardError } from '../../src/common/errors.js';
import {
  loadPeerCredentials,
  type PeerCredentials,
  type PeerCredentialsReader,
  socketFd,
} from '../../src/control/peer-credentials.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, spawnAs } from '../helpers/unix-user.js';

const dir = tempDir('tgpu-');
chmodSync(dir, 0o755);
const servers: Server[] = [];
afterAll(() => Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))));

/** A server whose next accepted connection's credentials (read by `reader`) the promise gives. */
async function serve(
  name: string,
  reader: PeerCredentialsReader,
): Promise<{ path: string; next: Promise<PeerCredentials> }> {
  const path = join(dir, `${name}.sock`);
  let resolveNext!: (c: PeerCredentials) => void;
  let rejectNext!: (e: unknown) => void;
  const next = new Promise<PeerCredentials>((res, rej) => {
    resolveNext = res;
    rejectNext = rej;
  });
  const server = createServer((socket: Socket) => {
    try {
      resolveNext(reader(socket));
    } catch (err) {
      rejectNext(err);
    }
    socket.destroy();
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, () => r()));
  chmodSync(path, 0o666);
  return { path, next };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return isGuardError(err) ? err.code : `not a GuardError: ${err}`;
  }
  return 'returned';
}

describe('peerCredentials', () => {
  const read = loadPeerCredentials();

  it("reads this process's own pid, uid and gid as the peer of its own connection", async () => {
    const { path, next } = await serve('self', read);
    const client = createConnection(path);
    client.on('error', () => undefined);
    const cred = await next;
    client.destroy();
    expect(cred).toEqual({ pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  });

  it("reads an unprivileged user's uid, gid and the client's pid", async () => {
    const user = createTestUser('tgpu');
    expect(user.uid).toBeGreaterThan(0);
    const { path, next } = await serve('user', read);
    const script = join(dir, 'client.mjs');
    writeFileSync(
      script,
      `import { createConnection } from 'node:net';
       const s = createConnection(process.argv[2]); s.on('error', () => {}); s.on('close', () => process.exit(0));`,
    );
    chmodSync(script, 0o644);
    const child = spawnAs(user, process.execPath, [script, path]);
    const cred = await next;
    expect(cred).toEqual({ pid: child.pid, uid: user.uid, gid: user.gid });
  });

  it('fails with a typed error for a socket without a descriptor, and a missing addon', async () => {
    const { path, next } = await serve('closed', (socket) => {
      socket.destroy();
      expect(socketFd(socket)).toBeNull();
      return read(socket);
    });
    createConnection(path).on('error', () => undefined);
    const code = await next.then(
      () => 'resolved',
      (err) => (isGuardError(err) ? err.code : String(err)),
    );
    expect(code).toBe('GUARD_PEERCRED_FAILED');
    expect(codeOf(() => loadPeerCredentials(join(dir, 'nope.node')))).toBe('GUARD_PEERCRED_UNAVAILABLE');
  });
});
