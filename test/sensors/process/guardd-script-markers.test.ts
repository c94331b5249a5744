/**
 * The real daemon (dist/, as root) kills node running a banned bundle identified by content
 * markers in the file node was told to run, however the bundle reaches node's command line: a
 * renamed copy outside any package, a package whose package.json name was edited, `--require`
 * of the bundle, `--import` of an ESM copy (path and `file:` URL). Each kill is one
 * `process.blocked` event with reason `content`. An unrelated node script carrying one marker of
 * the set keeps running (an audit rule on its own marker proves guardd scanned and decided it).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../../src/control/control-client.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  ruleEvents,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { alive, launch } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

describe.runIf(runnable)('guardd kills node running a bundle found by its content markers', () => {
  const dir = tempDir('tgsc-gsm-');
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  // Unique per run: other suites' daemons on this machine never carry these markers.
  const markerA = `tgsc-script-marker-A-${run}`;
  const markerB = `tgsc-script-marker-B-${run}`;
  const markerC = `tgsc-script-marker-C-${run}`;
  const forever = 'setInterval(() => {}, 1e9);';
  const bundle = join(dir, 'bundle.js');
  const esm = join(dir, 'bundle.mjs');
  const other = join(dir, 'elsewhere');
  let guardd: Guardd;

  beforeAll(async () => {
    const text = `// a fake banned bundle\nconst MARKS = [${JSON.stringify(markerA)}, ${JSON.stringify(markerB)}];\nvoid MARKS;\n${forever}\n`;
    writeFileSync(bundle, text);
    writeFileSync(
      esm,
      `export const MARKS = [${JSON.stringify(markerA)}, ${JSON.stringify(markerB)}];\n${forever}\n`,
    );
    mkdirSync(other);
    const key = makeKey();
    const policyFile = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody([
        {
          id: 'tgsc-bundle',
          name: 'Banned bundle',
          action: 'block',
          message: 'banned by content',
          process: { markers: [[markerA, markerB]] },
        },
        {
          // Records the unrelated script: its event proves guardd scanned it and decided.
          id: 'tgsc-unrelated',
          name: 'Unrelated script',
          action: 'audit',
          message: 'seen',
          process: { markers: [[markerC]] },
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
    await guardd?.stop('SIGKILL');
  });

  function events(type: string, rule: string): { pid: number; reason: string }[] {
    return ruleEvents(guardd, type, rule).map((e) => ({ pid: e.pid ?? -1, reason: e.reason ?? '' }));
  }

  type Launch = { args: string[]; cwd?: string };
  it.each<[string, () => Launch]>([
    [
      'a renamed copy outside any package',
      (): Launch => {
        const p = join(other, 'copied.js');
        copyFileSync(bundle, p);
        return { args: [p] };
      },
    ],
    [
      'a package whose package.json name was edited (relative script, cwd)',
      (): Launch => {
        const pkg = join(other, 'innocent-tool');
        mkdirSync(pkg);
        writeFileSync(join(pkg, 'package.json'), '{"name":"innocent-tool","version":"1.0.0"}\n');
        copyFileSync(bundle, join(pkg, 'cli.js'));
        return { args: ['./cli.js'], cwd: pkg };
      },
    ],
    ['--require of the bundle', () => ({ args: ['--require', bundle, '-e', forever] })],
    ['--import of an ESM copy', () => ({ args: ['--import', esm, '-e', forever] })],
    [
      '--import= of an ESM copy as a file: URL',
      () => ({ args: [`--import=${pathToFileURL(esm).href}`, '-e', forever] }),
    ],
  ])('%s is killed, one process.blocked event with reason content', async (_how, make) => {
    const { args, cwd } = make();
    const l = launch(process.execPath, args, undefined, cwd);
    expect(await l.exited).toBe('SIGKILL');
    const pid = l.child.pid as number;
    const found = await waitFor(() => {
      const e = events('process.blocked', 'tgsc-bundle').filter((x) => x.pid === pid);
      return e.length > 0 ? e : undefined;
    }, 'the process.blocked event');
    expect(found).toEqual([{ pid, reason: 'content' }]);
  });

  it('an unrelated node script with one marker of the set keeps running', async () => {
    const script = join(other, 'unrelated.js');
    writeFileSync(
      script,
      `const S = [${JSON.stringify(markerA)}, ${JSON.stringify(markerC)}];\nvoid S;\n${forever}\n`,
    );
    const l = launch(process.execPath, [script]);
    const pid = l.child.pid as number;
    await waitFor(
      () => events('process.audited', 'tgsc-unrelated').some((e) => e.pid === pid),
      'the unrelated script decided (audited)',
    );
    expect(alive(pid)).toBe(true);
    expect(events('process.blocked', 'tgsc-bundle').some((e) => e.pid === pid)).toBe(false);
    l.child.kill('SIGKILL');
  });
});

describe.runIf(runnable)("guardd denies a banned bundle exec'd through its #! line (pre-exec)", () => {
  const dir = tempDir('tgsc-gsd-');
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const markerA = `tgsc-script-marker-A-${run}`;
  const markerB = `tgsc-script-marker-B-${run}`;
  let guardd: Guardd;

  beforeAll(async () => {
    const key = makeKey();
    const policyFile = writeSignedPolicy(
      join(dir, 'policy.dsse.json'),
      policyBody([
        {
          id: 'tgsc-bundle-pre',
          name: 'Banned bundle',
          action: 'block',
          message: 'banned by content',
          process: { markers: [[markerA, markerB]] },
        },
      ]),
      key,
    );
    guardd = await startGuardd(join(dir, 'agent'), {
      'policy.trusted_keys': [key.publicKeyPem],
      'paths.bootstrap_policy': policyFile,
      'enforcement.exec_deny': 'auto',
    });
    const s = await callDaemon<{ exec_deny: { state: string; reason?: string } }>(
      join(guardd.socketDir, 'guardd.sock'),
      'status',
    );
    expect(s.exec_deny.state, `exec_deny: ${s.exec_deny.reason}`).toBe('on');
  });

  afterAll(async () => {
    await guardd?.stop('SIGKILL');
  });

  it('the kernel execs the script file itself: its markers deny it (126), one process.denied event', async () => {
    const tool = join(dir, 'renamed-tool');
    writeFileSync(
      tool,
      `#!/usr/bin/env node\nconst M = [${JSON.stringify(markerA)}, ${JSON.stringify(markerB)}];\nvoid M;\n`,
    );
    chmodSync(tool, 0o755);
    const r = spawnSync('sh', ['-c', `"${tool}"`], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(126);
    const denied = async () =>
      (
        await callDaemon<{ events: { event: { exe?: string; rule?: { id?: string } } }[] }>(
          join(guardd.socketDir, 'guardd.sock'),
          'events.list',
          { type: 'process.denied', limit: 1000 },
        )
      ).events.filter((e) => e.event.exe === tool && e.event.rule?.id === 'tgsc-bundle-pre');
    await waitFor(async () => ((await denied()).length > 0 ? true : undefined), 'the process.denied event');
    // An unrelated program runs afterwards, and is a point after which no late duplicate can hide.
    expect(spawnSync('/bin/true').status).toBe(0);
    expect(await denied()).toHaveLength(1);
  });
});
