/**
 * The real daemon (dist/, as root) against files a user controls next to the scripts it looks at
 * (issue 12, item 2): a FIFO in place of package.json beside a script run by node, and a script on
 * a FUSE mount that never answers. Meanwhile guardd keeps answering `guardctl status` and keeps
 * killing a banned process; the processes whose files stall are left unattributed and counted.
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
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
import { mountStalled, type StalledMount } from '../hostile-fs.js';
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
  const pkg = `@tg-hf/banned-${Date.now().toString(36)}`;

  beforeAll(async () => {
    tool = `tghf${Date.now().toString(36).slice(-6)}`;
    binary = join(dir, tool);
    copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), binary);
    execFileSync('chmod', ['755', binary]);
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
