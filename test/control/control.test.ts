import { statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuardError, isGuardError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { callDaemon } from '../../src/control/control-client.js';
import { ControlServer } from '../../src/control/control-server.js';
import { MAX_REQUEST_BYTES } from '../../src/control/protocol.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tgc-');
const pub = join(dir, 'guardd.sock');
const admin = join(dir, 'admin.sock');
let server: ControlServer;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return isGuardError(err) ? err.code : `not a GuardError: ${err}`;
  }
  return 'resolved';
}

function rawRequest(path: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf = '';
    s.on('connect', () => s.write(payload));
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) {
        s.destroy();
        resolve(buf.slice(0, buf.indexOf('\n')));
      }
    });
    s.on('error', reject);
  });
}

beforeAll(async () => {
  server = new ControlServer({
    publicPath: pub,
    adminPath: admin,
    logger: silentLogger(),
    methods: {
      status: { admin: false, summary: 's', handle: () => ({ ok: 1 }) },
      echo: { admin: false, summary: 'e', handle: (p) => p },
      reload: { admin: true, summary: 'r', handle: () => 'reloaded' },
      fail: {
        admin: false,
        summary: 'f',
        handle: () => {
          throw new GuardError('GUARD_QUARANTINE_NOT_FOUND', 'no such id');
        },
      },
    },
  });
  await server.start();
});
afterAll(() => server.stop());

describe('control socket', () => {
  it('answers read-only methods on the public socket, every method on the admin socket', async () => {
    expect(await callDaemon(pub, 'status')).toEqual({ ok: 1 });
    expect(await callDaemon(pub, 'echo', { a: [1, 'x'] })).toEqual({ a: [1, 'x'] });
    expect(await callDaemon(admin, 'reload')).toBe('reloaded');
    expect(await codeOf(callDaemon(pub, 'reload'))).toBe('GUARD_CONTROL_FORBIDDEN');
  });

  it('creates the public socket world-connectable and the admin socket owner-only', () => {
    expect(statSync(pub).mode & 0o777).toBe(0o666);
    expect(statSync(admin).mode & 0o777).toBe(0o600);
  });

  it('passes method errors through with their code', async () => {
    expect(await codeOf(callDaemon(pub, 'fail'))).toBe('GUARD_QUARANTINE_NOT_FOUND');
    expect(await codeOf(callDaemon(pub, 'nope'))).toBe('GUARD_CONTROL_UNKNOWN_METHOD');
    expect(await codeOf(callDaemon(pub, '__proto__'))).toBe('GUARD_CONTROL_UNKNOWN_METHOD');
  });

  const hostile: [string, string][] = [
    ['not JSON', 'hello\n'],
    ['an array', '[1,2]\n'],
    ['method not a string', '{"id":1,"method":5}\n'],
    ['params not an object', '{"id":1,"method":"echo","params":[1]}\n'],
    ['oversized line', `${'x'.repeat(MAX_REQUEST_BYTES + 10)}\n`],
  ];
  it.each(hostile)('refuses %s with GUARD_CONTROL_BAD_REQUEST and keeps serving', async (_n, payload) => {
    const res = JSON.parse(await rawRequest(pub, payload));
    expect(res.ok).toBe(false);
    expect(res.error.code).toBe('GUARD_CONTROL_BAD_REQUEST');
    expect(await callDaemon(pub, 'status')).toEqual({ ok: 1 });
  });

  it('reports a missing daemon as GUARD_CONTROL_DAEMON_NOT_RUNNING', async () => {
    expect(await codeOf(callDaemon(join(dir, 'absent.sock'), 'status'))).toBe(
      'GUARD_CONTROL_DAEMON_NOT_RUNNING',
    );
  });

  it('refuses to start a second server on a socket that answers', async () => {
    const second = new ControlServer({
      publicPath: pub,
      adminPath: join(dir, 'a2.sock'),
      logger: silentLogger(),
      methods: {},
    });
    expect(await codeOf(second.start())).toBe('GUARD_CONTROL_SOCKET_IN_USE');
  });
});
