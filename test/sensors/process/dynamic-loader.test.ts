/**
 * The dynamic loader run as a program (`ld-linux-x86-64.so.2 ./tool`) is not a way around the
 * rules (issue 13, item 4): the kernel execs the loader, so the process's exe and name are the
 * loader's and the tool's file raises no exec event of its own. The process sensor observes the
 * program the loader was given (src/sensors/dynamic-loader.ts). Unit tests of the argv parsing,
 * then the real daemon (dist/, as root) killing a banned program started through the real loader
 * by name, by hash and by content markers, from an absolute path and a relative one, after
 * options.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDynamicLoader, loadedProgram } from '../../../src/sensors/dynamic-loader.js';
import {
  type Guardd,
  type ListedProcessEvent,
  makeKey,
  policyBody,
  ruleEvents,
  runGuardctl,
  startGuardd,
  writeSignedPolicy,
} from '../../helpers/daemon.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { alive, launch } from './harness.js';

describe('dynamic loader argv', () => {
  it('recognises glibc and musl loaders by file name, nothing else', () => {
    for (const p of [
      '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
      '/lib/ld-linux-aarch64.so.1',
      '/lib/ld-musl-x86_64.so.1',
      '/lib/ld-2.31.so',
      '/lib64/ld64.so.2',
    ])
      expect(isDynamicLoader(p), p).toBe(true);
    for (const p of [
      '/usr/bin/ld',
      '/usr/bin/ld.bfd',
      '/usr/bin/ld.gold',
      '/home/u/ld-linux-tool',
      '/lib/libc.so.6',
      '/tmp/ld-notes.txt',
      null,
    ])
      expect(isDynamicLoader(p), String(p)).toBe(false);
  });

  it('finds the program after the options and their values, or after --', () => {
    expect(loadedProgram(['ld.so', '/tmp/tool', '-x'])).toEqual({
      index: 1,
      path: '/tmp/tool',
    });
    expect(
      loadedProgram([
        'ld.so',
        '--inhibit-cache',
        '--argv0',
        'innocent',
        '--preload',
        '/a.so',
        './tool',
        'arg',
      ]),
    ).toEqual({ index: 6, path: './tool' });
    expect(loadedProgram(['ld.so', '--library-path', '/x:/y', 'tool'])).toEqual({ index: 3, path: 'tool' });
    expect(loadedProgram(['ld.so', '--inhibit-cache', '--', '--tool'])).toEqual({ index: 3, path: '--tool' });
    expect(loadedProgram(['ld.so', '--help'])).toBeNull();
    // ldd runs `ld.so --list tool`: the tool is mapped, not run
    expect(loadedProgram(['ld.so', '--list', './tool'])).toBeNull();
    expect(loadedProgram(['ld.so', '--verify', './tool'])).toBeNull();
    // after the program, --list is the program's own argument
    expect(loadedProgram(['ld.so', './tool', '--list'])).toEqual({ index: 1, path: './tool' });
    expect(loadedProgram(['ld.so', '--argv0'])).toBeNull();
    expect(loadedProgram(['ld.so'])).toBeNull();
  });
});

const LOADER = (() => {
  for (const p of ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-linux-aarch64.so.1']) {
    try {
      return realpathSync(p);
    } catch {
      // not this architecture
    }
  }
  return null;
})();
const runnable = process.platform === 'linux' && process.getuid?.() === 0 && LOADER !== null;

describe.runIf(runnable)(
  'guardd and a banned program started through the dynamic loader (real loader)',
  () => {
    const dir = tempDir('tgld-');
    const tag = Date.now().toString(36);
    const NAME = `tgld-name-${tag}`;
    const MARKERS = [`tgld-marker-one-${tag}`, `tgld-marker-two-${tag}`];
    const SLEEP = realpathSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim());
    let hashed: string;
    let marked: string;
    let guardd: Guardd;

    beforeAll(async () => {
      hashed = join(dir, 'hashed-src');
      copyFileSync(SLEEP, hashed);
      appendFileSync(hashed, `\n${tag}-unique-bytes\n`);
      const hash = createHash('sha256').update(readFileSync(hashed)).digest('hex');
      marked = join(dir, 'marked-src');
      copyFileSync(SLEEP, marked);
      appendFileSync(marked, `\n${MARKERS.join('\n')}\n`);
      execFileSync('chmod', ['755', hashed, marked]);
      const key = makeKey();
      const policyFile = writeSignedPolicy(
        join(dir, 'policy.dsse.json'),
        policyBody([
          {
            id: `tgld-${tag}`,
            name: 'tgld banned',
            action: 'block',
            message: 'not approved',
            process: { names: [NAME], sha256: [hash], markers: [MARKERS] },
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

    function blocked(pid: number): ListedProcessEvent[] {
      return ruleEvents(guardd, 'process.blocked', `tgld-${tag}`).filter((e) => e.pid === pid);
    }

    const cases: [string, () => { args: string[]; cwd?: string; exe: string; reason: string }][] = [
      [
        'by name, absolute path',
        () => {
          const exe = join(dir, 'abs', NAME);
          mkdirSync(join(dir, 'abs'), { recursive: true });
          copyFileSync(SLEEP, exe);
          return { args: [exe, '30'], exe, reason: 'name' };
        },
      ],
      [
        'by hash, a renamed copy given relative to the working directory',
        () => {
          mkdirSync(join(dir, 'rel'), { recursive: true });
          const exe = join(dir, 'rel', 'innocent');
          copyFileSync(hashed, exe);
          return { args: ['./innocent', '30'], cwd: join(dir, 'rel'), exe, reason: 'sha256' };
        },
      ],
      [
        'by content markers, a renamed copy after options (another hash: only the markers identify it)',
        () => {
          mkdirSync(join(dir, 'opts'), { recursive: true });
          const exe = join(dir, 'opts', 'harmless');
          copyFileSync(marked, exe);
          appendFileSync(exe, 'x');
          return {
            args: [
              '--inhibit-cache',
              '--argv0',
              'innocent',
              '--library-path',
              `/nonexistent-${tag}`,
              exe,
              '30',
            ],
            exe,
            reason: 'content',
          };
        },
      ],
    ];

    it.each(cases)('%s: killed, one process.blocked naming the program', async (_what, setup) => {
      const { args, cwd, exe, reason } = setup();
      execFileSync('chmod', ['755', exe]);
      const l = launch(LOADER as string, args, undefined, cwd);
      expect(await l.exited).toBe('SIGKILL');
      const pid = l.child.pid as number;
      const events = await waitFor(() => {
        const e = blocked(pid);
        return e.length > 0 ? e : undefined;
      }, `process.blocked for ${exe}`);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ exe, reason });
    });

    it('a banned program exec’d from a memfd (no file on disk, no exec permission event) is killed by its content', async () => {
      // Python copies the marked program into a memfd and execs /proc/self/fd/N: the exe is
      // "/memfd:… (deleted)", which names and paths cannot match; its markers still can.
      const script = [
        'import os, sys',
        'fd = os.memfd_create("innocent", 0)',
        'os.write(fd, open(sys.argv[1], "rb").read())',
        'os.execv(f"/proc/self/fd/{fd}", ["innocent", "30"])',
      ].join('\n');
      const l = launch('python3', ['-c', script, marked]);
      expect(await l.exited).toBe('SIGKILL');
      const pid = l.child.pid as number;
      const events = await waitFor(() => {
        const e = blocked(pid);
        return e.length > 0 ? e : undefined;
      }, 'process.blocked for the memfd program');
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ reason: 'content' });
      expect(events[0]?.exe).toMatch(/^\/memfd:innocent/);
    });

    it('an unrelated program through the loader runs on', async () => {
      const l = launch(LOADER as string, [SLEEP, '30']);
      const pid = l.child.pid as number;
      await waitFor(
        () => runGuardctl(['--socket-dir', guardd.socketDir, '--json', 'status']).code === 0,
        'status',
      );
      // give the exec event its round trip through guardd, observed by a second launch's kill
      const probe = launch(LOADER as string, [join(dir, 'abs', NAME), '30']);
      expect(await probe.exited).toBe('SIGKILL');
      expect(alive(pid)).toBe(true);
      l.child.kill('SIGKILL');
    });
  },
);
