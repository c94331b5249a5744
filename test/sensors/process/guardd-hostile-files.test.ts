/**
 * The real daemon (dist/, as root) against files a user controls next to the scripts it looks at
 * (issue 12, item 2): a FIFO in place of package.json beside a script run by node, and a script on
 * a FUSE mount that never answers. Meanwhile guardd keeps answering `guardctl status` and keeps
 * killing a banned process; the processes whose files stall are left unattributed and counted.
 * Another user's script on that mount pins the exec-events walker (one thread for every user's
 * read-ahead) and their execs overflow its queue: root's banned script package is still found
 * through the pool and killed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Guardd,
  makeKey,
  policyBody,
  runGuardctl,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { createUser, mountStalled, removeUser, type StalledMount, type TestUser } from '../hostile-fs.js';
import { alive, launch } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

interface ScriptCounts {
  bad_package_json?: number;
  stalled?: number;
}

describe.runIf(runnable)('guardd with hostile files beside scripts', () => {
  const dir = tempDir('tg-hf-');
  let guardd: Guardd;
  let tool: string;
  let binary: string;
  let mnt: StalledMount;
  let attacker: TestUser;
  const pkg = `@tg-hf/banned-${Date.now().toString(36)}`;

  beforeAll(async () => {
    tool = `tghf${Date.now().toString(36).slice(-6)}`;
    binary = join(dir, tool);
    copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), binary);
    execFileSync('chmod', ['755', binary]);
    chmodSync(dir, 0o755);
    attacker = createUser('tghf');
    mnt = await mountStalled(dir);
    const key = makeKey();
    const policyFile = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody([
        {
          id: 'hf-banned',
          name: 'Banned',
          action: 'block',
          message: 'banned',
          process: { names: [tool], script_packages: [pkg] },
        },
      ]),
      key,
    );
    guardd = await startGuardd(join(dir, 'agent'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
    });
  });

  afterAll(async () => {
    await mnt?.release();
    await guardd?.stop('SIGKILL');
    removeUser(attacker);
  });

  function status(): { code: number | null; scripts: ScriptCounts } {
    const r = runGuardctl(['--socket-dir', guardd.socketDir, 'status', '--json']);
    if (r.code !== 0) return { code: r.code, scripts: {} };
    const s = r.json<{ sensors: { name: string; details: { script_packages?: ScriptCounts } }[] }>();
    const proc = s.sensors.find((x) => x.name === 'process');
    return { code: r.code, scripts: proc?.details.script_packages ?? {} };
  }

  /** Launches the banned binary and waits until guardd killed it. */
  async function bannedIsKilled(): Promise<void> {
    const l = launch(binary, ['30']);
    expect(await l.exited).toBe('SIGKILL');
  }

  it('a FIFO as package.json: never waited on, status answers, a banned process is killed meanwhile', async () => {
    const app = join(dir, 'fifo-app');
    mkdirSync(app);
    execFileSync('mkfifo', [join(app, 'package.json')]);
    writeFileSync(join(app, 'cli.js'), 'setTimeout(() => {}, 60000);\n');
    const before = status().scripts.bad_package_json ?? 0;
    const node = launch(process.execPath, [join(app, 'cli.js')]);
    try {
      // guardd looked at the FIFO (and refused it as not a file) …
      await waitFor(
        () => (status().scripts.bad_package_json ?? 0) > before,
        'the FIFO counted as a bad package.json',
      );
      // … and no writer ever opened it: a blocking open would still be waiting, the loop frozen.
      expect(status().code).toBe(0);
      await bannedIsKilled();
      expect(alive(node.child.pid as number)).toBe(true);
    } finally {
      node.child.kill('SIGKILL');
    }
  });

  it("another user pins exec events' walker on the mount and fills its queue: a banned script package is still killed", async () => {
    // The banned package: node_modules/<pkg>/cli.js with its package.json, run by root.
    const root = join(dir, 'prefix', 'lib', 'node_modules', pkg);
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'package.json'), JSON.stringify({ name: pkg, version: '1.0.0' }));
    writeFileSync(join(root, 'cli.js'), 'setTimeout(() => {}, 60000);\n');
    // `node` for the filler execs: sleep under that name (comm `node`: an interpreter's exec).
    const fake = join(dir, 'fake');
    mkdirSync(fake);
    const fakeNode = join(fake, 'node');
    copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), fakeNode);
    chmodSync(fakeNode, 0o755);
    const walkDrops = () => {
      const r = runGuardctl(['--socket-dir', guardd.socketDir, 'status', '--json']);
      if (r.code !== 0) return null;
      const s = r.json<{ sensors: { name: string; details: { exec_events_walk_drops?: number } }[] }>();
      return s.sensors.find((x) => x.name === 'process')?.details.exec_events_walk_drops ?? null;
    };
    // guardd as root reads exec events, with the walker on (the rule needs script packages)
    const drops0 = walkDrops();
    expect(drops0).toBeTypeOf('number');
    // The other user's node on the stalled mount pins the walker (and that user's own pool slot);
    // 70 more of their interpreter execs fill its queue (64) and spill over.
    const as = { uid: attacker.uid, gid: attacker.gid, stdio: 'ignore' as const };
    const stuck = [spawn(process.execPath, [join(mnt.path, 's.js')], as)];
    for (let i = 0; i < 70; i++) stuck.push(spawn(fakeNode, ['60', join(fake, `s${i}.js`)], as));
    try {
      await waitFor(
        () => (walkDrops() ?? 0) > (drops0 ?? 0),
        'walk requests dropped behind the pinned walker',
      );
      // No read-ahead for this one: the resolver walks through the pool and finds the package.
      const banned = launch(process.execPath, [join(root, 'cli.js')]);
      expect(await banned.exited).toBe('SIGKILL');
      expect(status().code).toBe(0);
    } finally {
      for (const c of stuck) c.kill('SIGKILL');
    }
  });

  it('a script on a stalled mount: unattributed after its deadline, status answers, banned processes are killed meanwhile', async () => {
    // node itself blocks reading the script; guardd sees its argv and must not block with it.
    const stuck = [1, 2, 3].map(() =>
      spawn(process.execPath, [join(mnt.path, 'cli.js')], { stdio: 'ignore', detached: false }),
    );
    try {
      await bannedIsKilled();
      expect(status().code).toBe(0);
      await waitFor(() => (status().scripts.stalled ?? 0) >= 1, 'the stalled resolution counted');
      await bannedIsKilled();
      const s = status();
      expect(s.code).toBe(0);
    } finally {
      for (const c of stuck) c.kill('SIGKILL');
      await mnt.release();
    }
  });
});
