/**
 * Open marks with the real daemon (dist/, as root, pre-exec deny on, exec events): once guardd has
 * killed `node <pkg>/cli.js` of a banned package (script_packages rule) owned by a real
 * unprivileged user, the package's cli.js is marked, and every way that user then has node load it
 * (and its `bin` target inside the package) is refused before a line of it runs — the file's code
 * writes a marker file when it runs, and no
 * marker ever appears — with one `process.denied` event (`refused: open`) per attempt:
 * `import()` and `require()` from `-e`, `require()` from an innocuous script, stdin redirected
 * from it and `/dev/fd/3` (the shell's open is refused, EPERM), and `node <pkg>/cli.js` itself
 * (refused open or killed, whichever comes first). Also: an unrelated script still runs; a
 * package whose cli.js is a hard link the user made to their own file is not marked (nlink 2) and
 * their file still opens; guardd's own reads of the marked file are allowed (it still scans and
 * reports); a policy that no longer bans the package removes the mark (the file opens and runs).
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/control-client.js';
import type { PolicyRule } from '../../src/policy/policy-types.js';
import {
  type Collector,
  type Guardd,
  makeKey,
  policyBody,
  runGuardctl,
  type SigningKey,
  startCollectorProcess,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, spawnAs, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

interface DeniedEvent {
  pid?: number;
  ppid?: number;
  rule?: { id?: string };
  script_package?: { name?: string };
  outcome?: {
    action_taken?: string;
    details?: { refused?: string; file?: { path?: string; ino?: number } };
  };
}

interface OpenMarksStatus {
  exec_deny: {
    state: string;
    reason?: string;
    counters: Record<string, number>;
    open_marks: { marked: number; refused: Record<string, number>; flushes: number };
  };
}

interface Ran {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

describe.runIf(runnable)("guardd refuses opens of a banned package's marked files", () => {
  const dir = tempDir('tgom-');
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const pkgName = `tgom-banned-${run}`;
  const linkedName = `tgom-linked-${run}`;
  const foreignName = `tgom-foreign-${run}`;
  const auditMarker = `tgom-audit-marker-${run}`;
  let user: TestUser;
  let key: SigningKey;
  let policyFile: string;
  let collector: Collector;
  let guardd: Guardd;
  let cli: string;
  let binTarget: string;
  let outside: string;
  let markDir: string;

  const rules = (banned: readonly string[]): PolicyRule[] => [
    {
      id: 'tgom-banned',
      name: 'Banned CLI',
      action: 'block',
      message: 'this package is banned',
      process: { script_packages: [...banned] },
    },
    {
      // Makes guardd scan every node script it sees (markers), so it reads the marked file itself.
      id: 'tgom-audit',
      name: 'Audit marker',
      action: 'audit',
      message: 'seen',
      process: { markers: [[auditMarker]] },
    },
  ];

  /** Runs `command args` as the test user; resolves when it ended (bounded). */
  function runAsUser(
    command: string,
    args: readonly string[],
    env: Record<string, string> = {},
  ): Promise<Ran> {
    return new Promise((resolve, reject) => {
      const child: ChildProcess = spawnAs(user, command, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: user.home,
        env,
      });
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (b: Buffer) => {
        stdout += b.toString();
      });
      child.stderr?.on('data', (b: Buffer) => {
        stderr += b.toString();
      });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${command} ${args.join(' ')} did not end in 30 s`));
      }, 30_000);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ pid: child.pid as number, code, signal, stdout, stderr });
      });
    });
  }

  const config = () => ({
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policyFile,
    'collector.url': collector.url,
    'enforcement.exec_deny': 'auto',
  });

  async function status(): Promise<OpenMarksStatus> {
    return callDaemon<OpenMarksStatus>(join(guardd.socketDir, 'guardd.sock'), 'status');
  }

  async function listed(type: string): Promise<DeniedEvent[]> {
    const r = await callDaemon<{ events: { event: DeniedEvent }[] }>(
      join(guardd.socketDir, 'guardd.sock'),
      'events.list',
      { type, limit: 1000 },
    );
    return r.events.map((e) => e.event).filter((e) => e.rule?.id === 'tgom-banned');
  }

  /** The refused-open events of a process (or of a child it forked, for a shell). */
  async function refusedOpens(pid: number): Promise<DeniedEvent[]> {
    return (await listed('process.denied')).filter(
      (e) => (e.pid === pid || e.ppid === pid) && e.outcome?.details?.refused === 'open',
    );
  }

  function asUser(path: string): void {
    chownSync(path, user.uid, user.gid);
  }

  beforeAll(async () => {
    user = createTestUser('tgom');
    const pkg = join(user.home, 'lib', 'node_modules', pkgName);
    mkdirSync(pkg, { recursive: true });
    for (const d of ['lib', join('lib', 'node_modules'), join('lib', 'node_modules', pkgName)])
      asUser(join(user.home, d));
    // bin: one target inside the package (marked with it), one outside its root (never marked)
    writeFileSync(
      join(pkg, 'package.json'),
      JSON.stringify({
        name: pkgName,
        version: '1.0.0',
        bin: { tgom: 'bin/run.js', 'tgom-out': '../outside.js' },
      }),
    );
    cli = join(pkg, 'cli.js');
    mkdirSync(join(pkg, 'bin'));
    asUser(join(pkg, 'bin'));
    binTarget = join(pkg, 'bin', 'run.js');
    writeFileSync(binTarget, "require('node:fs').writeFileSync(process.env.TGOM_MARK, 'ran\\n');\n");
    asUser(binTarget);
    outside = join(user.home, 'lib', 'node_modules', 'outside.js');
    writeFileSync(outside, '// outside the package\n');
    asUser(outside);
    // What "the banned code ran" looks like: a marker file named by the caller.
    writeFileSync(
      cli,
      "const fs = require('node:fs');\nif (process.env.TGOM_MARK) fs.writeFileSync(process.env.TGOM_MARK, 'ran\\n');\nif (process.env.TGOM_STAY) setInterval(() => {}, 1e9);\n",
    );
    asUser(join(pkg, 'package.json'));
    asUser(cli);
    markDir = join(user.home, 'marks');
    mkdirSync(markDir);
    asUser(markDir);
    const work = join(user.home, 'work');
    mkdirSync(work);
    asUser(work);
    chmodSync(user.home, 0o755);

    key = makeKey();
    policyFile = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody(rules([pkgName, linkedName, foreignName]), { version: 1 }),
      key,
    );
    collector = await startCollectorProcess(join(dir, 'collector'), policyFile);
    guardd = await startGuardd(join(dir, 'agent'), config());
    const s = await status();
    expect(s.exec_deny.state, `exec_deny: ${s.exec_deny.reason}`).toBe('on');

    // guardd identifies the package once: killed after exec, as without marks; then it is marked.
    const first = await runAsUser(process.execPath, [cli], { TGOM_STAY: '1' });
    expect(first.signal).toBe('SIGKILL');
    await waitFor(
      async () => (await status()).exec_deny.open_marks.marked === 2,
      'the open marks on cli.js and the bin target',
    );
    expect((await status()).exec_deny.counters.file_marks).toBe(2);
    const text = runGuardctl(['--socket-dir', guardd.socketDir, 'status']);
    // any count of refusals: another guardd on this machine (another test's) scanning our node
    // scripts is refused like anyone else
    expect(text.stdout).toMatch(/open marks.*2 banned package files marked · \d+ opens refused/);
  });

  afterAll(async () => {
    await guardd?.stop('SIGKILL');
    await collector?.stop('SIGKILL');
  });

  const requireIt = (abs: string) =>
    `try { require(${JSON.stringify(abs)}); } catch (e) { console.log(e.code); process.exit(7); }`;

  type Form = (abs: string, mark: string) => { command: string; args: string[]; exit: number; says: RegExp };
  it.each<[string, Form]>([
    [
      'node -e "import(<abs>)"',
      (abs) => ({
        command: process.execPath,
        args: [
          '-e',
          `import(${JSON.stringify(abs)}).then(() => process.exit(0), (e) => { console.log(e.code); process.exit(7); })`,
        ],
        exit: 7,
        says: /^EPERM$/m,
      }),
    ],
    [
      'node -e "require(<abs>)"',
      (abs) => ({ command: process.execPath, args: ['-e', requireIt(abs)], exit: 7, says: /^EPERM$/m }),
    ],
    [
      'an innocuous script that requires it',
      (abs) => {
        const script = join(user.home, 'work', `innocuous-${Math.random().toString(36).slice(2)}.js`);
        writeFileSync(script, `${requireIt(abs)}\n`);
        asUser(script);
        return { command: process.execPath, args: [script], exit: 7, says: /^EPERM$/m };
      },
    ],
    [
      'node - < cli.js (the shell opens it)',
      (abs) => ({
        command: '/bin/sh',
        args: ['-c', `${process.execPath} - < "${abs}"`],
        exit: 2,
        says: /cannot open .*cli\.js: Operation not permitted/,
      }),
    ],
    [
      'node /dev/fd/3 3< cli.js (the shell opens it)',
      (abs) => ({
        command: '/bin/sh',
        args: ['-c', `${process.execPath} /dev/fd/3 3< "${abs}"`],
        exit: 2,
        says: /cannot open .*cli\.js: Operation not permitted/,
      }),
    ],
  ])('%s: refused before the banned code runs (EPERM), one process.denied event', async (_how, form) => {
    const mark = join(markDir, `m-${Math.random().toString(36).slice(2)}`);
    const f = form(cli, mark);
    const r = await runAsUser(f.command, f.args, { TGOM_MARK: mark });
    expect(r.code, r.stderr).toBe(f.exit);
    expect(`${r.stdout}${r.stderr}`).toMatch(f.says);
    expect(existsSync(mark), 'the banned code ran').toBe(false);
    const found = await waitFor(
      async () => ((await refusedOpens(r.pid)).length > 0 ? refusedOpens(r.pid) : undefined),
      'the process.denied event of the refused open',
    );
    // an unrelated program afterwards: a point after which no late duplicate can hide
    expect((await runAsUser('/bin/true', [])).code).toBe(0);
    expect(await refusedOpens(r.pid)).toHaveLength(1);
    expect(found[0]).toMatchObject({
      script_package: { name: pkgName },
      outcome: { action_taken: 'denied', details: { refused: 'open', file: { path: cli } } },
    });
  });

  it('node <pkg>/cli.js again: never runs (refused open or killed); guardd still reads the file itself', async () => {
    const mark = join(markDir, 'direct');
    const selfAllowed = (await status()).exec_deny.counters.open_self_allowed ?? 0;
    const r = await runAsUser(process.execPath, [cli], { TGOM_MARK: mark });
    expect(existsSync(mark), 'the banned code ran').toBe(false);
    if (r.signal === null) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/EPERM: operation not permitted, open '.*cli\.js'/);
    } else {
      expect(r.signal).toBe('SIGKILL');
    }
    // Reported either way: the refused open, or the kill (guardd resolved the package again).
    await waitFor(
      async () =>
        (await refusedOpens(r.pid)).length > 0 ||
        (await listed('process.blocked')).some((e) => e.pid === r.pid),
      'the event of the refused launch',
    );
    // guardd scanned cli.js for markers (a rule names markers): its own open was allowed.
    await waitFor(
      async () => ((await status()).exec_deny.counters.open_self_allowed ?? 0) > selfAllowed,
      "guardd's own open of the marked file allowed",
    );
  });

  it("the package's bin target is refused too; a bin entry outside the package root is not marked", async () => {
    const mark = join(markDir, 'bin-target');
    const r = await runAsUser(process.execPath, ['-e', requireIt(binTarget)], { TGOM_MARK: mark });
    expect(r.code, r.stderr).toBe(7);
    expect(r.stdout).toMatch(/^EPERM$/m);
    expect(existsSync(mark), 'the bin target ran').toBe(false);
    const found = await waitFor(
      async () => ((await refusedOpens(r.pid)).length > 0 ? refusedOpens(r.pid) : undefined),
      'the process.denied event of the bin target',
    );
    expect(found[0]).toMatchObject({ outcome: { details: { refused: 'open', file: { path: binTarget } } } });
    const cat = await runAsUser('/bin/cat', [outside]);
    expect(cat.code, cat.stderr).toBe(0);
  });

  it('an unrelated script still runs', async () => {
    const mark = join(markDir, 'unrelated');
    const script = join(user.home, 'work', 'unrelated.js');
    writeFileSync(script, "require('node:fs').writeFileSync(process.env.TGOM_MARK, 'ran\\n');\n");
    asUser(script);
    const r = await runAsUser(process.execPath, [script], { TGOM_MARK: mark });
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(mark)).toBe(true);
  });

  it('a hard link the user made to their own file is not marked (nlink 2): their file still opens', async () => {
    const own = join(user.home, 'work', 'own.js');
    writeFileSync(own, '// my own file\n');
    asUser(own);
    const pkg = join(user.home, 'lib', 'node_modules', linkedName);
    const made = spawnSync(
      '/bin/sh',
      [
        '-c',
        `mkdir "${pkg}" && printf '%s' '{"name":"${linkedName}","version":"1.0.0"}' > "${pkg}/package.json" && ln "${own}" "${pkg}/cli.js"`,
      ],
      { uid: user.uid, gid: user.gid, encoding: 'utf8' },
    );
    expect(made.status, made.stderr).toBe(0);
    const before = (await status()).exec_deny.open_marks.refused.linked ?? 0;
    const r = await runAsUser(process.execPath, [join(pkg, 'cli.js')], { TGOM_STAY: '1' });
    expect(r.signal).toBe('SIGKILL');
    await waitFor(
      async () => ((await status()).exec_deny.open_marks.refused.linked ?? 0) > before,
      'the mark refused as linked',
    );
    expect((await status()).exec_deny.open_marks.marked).toBe(2);
    const cat = await runAsUser('/bin/cat', [own]);
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout).toBe('// my own file\n');
  });

  it("a package.json of the user's beside root's file: the user's node on it is killed, root's file is not marked", async () => {
    // The attack: the user's own package.json (trusted for their own process) names a banned
    // package in a directory holding a file that is not theirs (root's here; in /tmp, anyone's);
    // `node <that file>` is killed as a banned script, and marking it would deny the file to its
    // owner and to everyone else on the machine.
    const shared = join(user.home, 'shared');
    mkdirSync(shared);
    asUser(shared);
    writeFileSync(join(shared, 'package.json'), JSON.stringify({ name: foreignName, version: '1.0.0' }));
    asUser(join(shared, 'package.json'));
    const rootFile = join(shared, 'root-owned.js');
    writeFileSync(rootFile, 'setInterval(() => {}, 1e9);\n');
    chmodSync(rootFile, 0o644);
    const before = (await status()).exec_deny.open_marks;
    const r = await runAsUser(process.execPath, [rootFile]);
    expect(r.signal).toBe('SIGKILL');
    await waitFor(async () => {
      const now = (await status()).exec_deny.open_marks;
      return now.marked !== before.marked || (now.refused.foreign ?? 0) > (before.refused.foreign ?? 0);
    }, 'the mark decided');
    const after = (await status()).exec_deny.open_marks;
    expect(after.marked).toBe(before.marked);
    expect(after.refused.foreign).toBe((before.refused.foreign ?? 0) + 1);
    // root (not a child of guardd) still opens its file
    const cat = spawnSync('/bin/cat', [rootFile], { encoding: 'utf8' });
    expect(cat.status, cat.stderr).toBe(0);
  });

  it('guardd SIGKILLed: its group closes, the mark goes, the file opens; restarted, it marks it again', async () => {
    await guardd.stop('SIGKILL');
    const cat = await runAsUser('/bin/cat', [cli]);
    expect(cat.code, cat.stderr).toBe(0);
    guardd = await startGuardd(join(dir, 'agent'), config());
    expect((await status()).exec_deny.open_marks.marked).toBe(0);
    const again = await runAsUser(process.execPath, [cli], { TGOM_STAY: '1' });
    expect(again.signal).toBe('SIGKILL');
    await waitFor(async () => (await status()).exec_deny.open_marks.marked === 2, 'the marks again');
    const refused = await runAsUser('/bin/cat', [cli]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/Operation not permitted/);
  });

  it('a policy that no longer bans the package removes the mark: the file opens and runs again', async () => {
    writeSignedPolicy(policyFile, policyBody(rules([`tgom-other-${run}`]), { version: 2 }), key);
    const reload = runGuardctl(['--socket-dir', guardd.socketDir, '--json', 'policy', 'reload']);
    expect(reload.code, reload.stderr).toBe(0);
    await waitFor(async () => {
      const s = await status();
      return s.exec_deny.open_marks.marked === 0 && s.exec_deny.counters.file_marks === 0;
    }, 'the marks flushed by the new policy');
    const mark = join(markDir, 'after-policy');
    const r = await runAsUser(process.execPath, ['-e', requireIt(cli)], { TGOM_MARK: mark });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(existsSync(mark)).toBe(true);
  });
});
