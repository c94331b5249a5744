/**
 * The session notifier's contract on every platform: the desktop command for Linux (notify-send
 * as the user over the session bus), macOS (launchctl asuser … osascript) and Windows (PowerShell
 * toast), with the command runner faked — and hostile message text that must not escape its
 * quoting or reach a terminal as an escape sequence. A hung helper never delays `notify`.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/logger.js';
import type { CommandOutcome, CommandSpec } from '../../src/enforcement/notify/command-runner.js';
import { spawnRunner } from '../../src/enforcement/notify/command-runner.js';
import { clean, SessionNotifier } from '../../src/enforcement/notify/session-notifier.js';
import { tempDir } from '../helpers/tmp.js';

const HOSTILE = `it's "quoted" \\ back\u001b[2J\u0007 $(rm -rf /) \`x\` '; Remove-Item C:\\ -Recurse; '`;
const message = { title: 'blocked Banned Tool', body: HOSTILE, url: 'https://intranet.example/ai' };

function fakeRunner(outcome: CommandOutcome | 'hang' = { ok: true, error: null }) {
  const specs: CommandSpec[] = [];
  const runner = (spec: CommandSpec): Promise<CommandOutcome> => {
    specs.push(spec);
    return outcome === 'hang' ? new Promise(() => undefined) : Promise.resolve(outcome);
  };
  return { specs, runner };
}

describe('SessionNotifier desktop commands (runner faked)', () => {
  const logger = silentLogger();

  it('macOS: launchctl asuser <uid> osascript with the text escaped for AppleScript', async () => {
    const { specs, runner } = fakeRunner();
    const n = new SessionNotifier({ logger, platform: 'darwin', desktop: true, terminal: false, runner });
    const r = await n.notify({ uid: 501, user: 'alice', tty: null }, message);
    expect(r).toEqual({ terminal: false, desktop: true, error: null });
    const [spec] = specs;
    expect(spec?.command).toBe('/bin/launchctl');
    expect(spec?.args.slice(0, 4)).toEqual(['asuser', '501', '/usr/bin/osascript', '-e']);
    const script = spec?.args[4] as string;
    expect(script.startsWith('display notification "')).toBe(true);
    // Every double quote inside the literal is escaped, so the literal ends only where we end it.
    const body = script.slice('display notification "'.length, script.indexOf('" with title "'));
    expect(body).not.toMatch(/(?<!\\)"/);
    expect(body).toContain('\\"quoted\\"');
    expect(script).not.toContain('\u001b');
    expect(script.endsWith('with title "blocked Banned Tool"')).toBe(true);
  });

  it('Windows: a PowerShell toast passed as -EncodedCommand with single quotes doubled', async () => {
    const { specs, runner } = fakeRunner();
    const n = new SessionNotifier({ logger, platform: 'win32', desktop: true, terminal: false, runner });
    const r = await n.notify({ uid: 1000, user: 'bob', tty: null }, message);
    expect(r.desktop).toBe(true);
    const [spec] = specs;
    expect(spec?.command).toBe('powershell.exe');
    expect(spec?.args).toContain('-NonInteractive');
    const encoded = spec?.args[spec.args.indexOf('-EncodedCommand') + 1] as string;
    const script = Buffer.from(encoded, 'base64').toString('utf16le');
    expect(script).toContain('ToastNotificationManager');
    const open = "$x.Item(1).AppendChild($t.CreateTextNode('";
    const start = script.indexOf(open) + open.length;
    const literal = script.slice(start, script.indexOf("')) > $null", start));
    // Inside a single-quoted PowerShell string only a doubled quote may appear.
    expect(literal.replace(/''/g, '')).not.toContain("'");
    expect(literal).toContain("it''s");
    expect(literal).toContain("''; Remove-Item");
    expect(literal.endsWith('https://intranet.example/ai')).toBe(true);
  });

  it('does not repeat the same desktop notification to the same user within the repeat interval', async () => {
    const { specs, runner } = fakeRunner();
    let now = 0;
    const n = new SessionNotifier({
      logger,
      platform: 'darwin',
      desktop: true,
      terminal: false,
      runner,
      now: () => now,
    });
    const alice = { uid: 501, user: 'alice', tty: null };
    expect((await n.notify(alice, message)).desktop).toBe(true);
    expect(await n.notify(alice, message)).toEqual({
      terminal: false,
      desktop: false,
      error: 'desktop:repeat_suppressed',
    });
    expect((await n.notify({ ...alice, uid: 502 }, message)).desktop).toBe(true);
    now += 10_000;
    expect((await n.notify(alice, message)).desktop).toBe(true);
    expect(specs.length).toBe(3);
    // The wall clock stepped back an hour: the next notification is not held back for an hour.
    now -= 3_600_000;
    expect((await n.notify(alice, message)).desktop).toBe(true);
    expect(specs.length).toBe(4);
  });

  it('reports a failed helper and never waits on a hung one', async () => {
    const failing = fakeRunner({ ok: false, error: 'spawn:ENOENT' });
    const n1 = new SessionNotifier({
      logger,
      platform: 'darwin',
      desktop: true,
      terminal: false,
      runner: failing.runner,
    });
    expect(await n1.notify({ uid: 501, user: 'a', tty: null }, message)).toEqual({
      terminal: false,
      desktop: false,
      error: 'desktop:spawn:ENOENT',
    });
    const hung = fakeRunner('hang');
    const n2 = new SessionNotifier({
      logger,
      platform: 'win32',
      desktop: true,
      terminal: false,
      runner: hung.runner,
      desktopWaitMs: 5,
    });
    // Resolves (dispatched) although the helper never finishes.
    expect((await n2.notify({ uid: 1, user: 'b', tty: null }, message)).desktop).toBe(true);
  });

  describe.runIf(process.platform === 'linux')('Linux: notify-send over the user session bus', () => {
    const runtime = tempDir('tg-rt-');
    const servers: Server[] = [];
    afterAll(() => {
      for (const s of servers) s.close();
    });

    async function bus(uid: number): Promise<void> {
      mkdirSync(join(runtime, String(uid)), { recursive: true });
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(join(runtime, String(uid), 'bus'), resolve));
    }

    it('runs notify-send as the user with DBUS_SESSION_BUS_ADDRESS when the bus socket exists', async () => {
      await bus(1234);
      const { specs, runner } = fakeRunner();
      const n = new SessionNotifier({
        logger,
        platform: 'linux',
        desktop: true,
        terminal: false,
        runner,
        runtimeDir: runtime,
        selfUid: 0,
      });
      const r = await n.notify({ uid: 1234, user: 'carol', tty: null }, message);
      expect(r).toEqual({ terminal: false, desktop: true, error: null });
      const [spec] = specs;
      expect(spec?.command).toBe('notify-send');
      expect(spec?.uid).toBe(1234);
      expect(typeof spec?.gid).toBe('number');
      expect(spec?.env.DBUS_SESSION_BUS_ADDRESS).toBe(`unix:path=${join(runtime, '1234', 'bus')}`);
      expect(spec?.env.XDG_RUNTIME_DIR).toBe(join(runtime, '1234'));
      // Title and body are separate argv entries after `--`: nothing is parsed as an option.
      const dd = spec?.args.indexOf('--') as number;
      expect(spec?.args[dd + 1]).toBe('blocked Banned Tool');
      expect(spec?.args[dd + 2]).toContain('https://intranet.example/ai');
      expect(spec?.args[dd + 2]).not.toContain('\u001b');
    });

    it('says why when there is no session or no permission', async () => {
      const { specs, runner } = fakeRunner();
      const asRoot = new SessionNotifier({
        logger,
        platform: 'linux',
        desktop: true,
        terminal: false,
        runner,
        runtimeDir: runtime,
        selfUid: 0,
      });
      expect((await asRoot.notify({ uid: 4321, user: 'x', tty: null }, message)).error).toBe(
        'desktop:no_session',
      );
      await bus(2345);
      const asOther = new SessionNotifier({
        logger,
        platform: 'linux',
        desktop: true,
        terminal: false,
        runner,
        runtimeDir: runtime,
        selfUid: 1000,
      });
      expect((await asOther.notify({ uid: 2345, user: 'y', tty: null }, message)).error).toBe(
        'desktop:not_permitted',
      );
      expect(specs).toEqual([]);
    });

    it('the real spawn runner reports a missing helper and a timeout without throwing', async () => {
      expect(
        await spawnRunner({ command: '/nonexistent/notify', args: [], env: {}, timeoutMs: 1000 }),
      ).toEqual({
        ok: false,
        error: 'spawn:ENOENT',
      });
      expect(
        await spawnRunner({ command: 'sleep', args: ['30'], env: { PATH: '/usr/bin:/bin' }, timeoutMs: 50 }),
      ).toEqual({
        ok: false,
        error: 'timeout',
      });
      expect(
        await spawnRunner({
          command: 'sh',
          args: ['-c', 'exit 3'],
          env: { PATH: '/usr/bin:/bin' },
          timeoutMs: 5000,
        }),
      ).toEqual({
        ok: false,
        error: 'exit:3',
      });
    });
  });
});

describe('SessionNotifier terminal channel', () => {
  const logger = silentLogger();
  it('refuses anything that is not a terminal device path', async () => {
    const n = new SessionNotifier({ logger, platform: 'linux', desktop: false, terminal: true });
    for (const [tty, error] of [
      [null, 'terminal:no_tty'],
      ['/etc/passwd', 'terminal:bad_tty_path'],
      ['/dev/pts/../../etc/passwd', 'terminal:bad_tty_path'],
      ['/dev/pts/9999999', 'terminal:ENOENT'],
    ] as const) {
      expect(await n.notify({ uid: 0, user: 'root', tty }, message)).toEqual({
        terminal: false,
        desktop: false,
        error,
      });
    }
  });

  it('cleans control characters out of shown text', () => {
    expect(clean('a\u001b[2Jb\u0007c\nd')).toBe('a [2Jb c d');
    expect(clean('x\ny', true)).toBe('x\ny');
    expect(clean('z'.repeat(5000)).length).toBe(1000);
  });
});
