/**
 * A process that rewrites its own program-image fields (start_code … arg_start in
 * /proc/<pid>/stat) without exec'ing: prctl(PR_SET_MM, PR_SET_MM_MAP) needs no privilege when it
 * does not change the exe link. A banned program whose preloaded shim keeps changing them looked
 * to the sensor as if it had exec'd again every time it checked (`execedSince`): it skipped reading
 * the file (`gone`) or dropped the hash and markers it had read (`hash_after_exec`,
 * `markers_after_exec`), so hash and marker rules never matched it. Real unprivileged user, real
 * processes, the real pipeline on /proc.
 */

import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/common/logger.js';
import type { PolicyRule } from '../../../src/policy/policy-types.js';
import { ExecEventsSource } from '../../../src/sensors/process-sources/exec-events-source.js';
import type { ProcessSource } from '../../../src/sensors/process-sources/process-source.js';
import { tempDir } from '../../helpers/tmp.js';
import { waitFor } from '../../helpers/wait.js';
import { compileC, createUser, removeUser, type TestUser } from '../hostile-fs.js';
import { alive, launch, type Pipeline, policy, startPipeline } from './harness.js';

const runnable = process.platform === 'linux' && process.getuid?.() === 0;

/** Moves its start_stack every 200 µs for up to 60 s (never the same value twice in a row) (the marker string is in its bytes). */
const FLIPPER_C = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <linux/prctl.h>
const char *marker = "MARKER";
int main(void) {
  char b[4096];
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f) return 1;
  size_t n = fread(b, 1, sizeof b - 1, f);
  fclose(f);
  b[n] = 0;
  unsigned long v[64] = {0};
  int k = 0;
  for (char *t = strtok(strrchr(b, ')') + 2, " "); t && k < 64; t = strtok(NULL, " ")) v[k++] = strtoul(t, 0, 10);
  struct prctl_mm_map m;
  memset(&m, 0, sizeof m);
  m.start_code = v[23]; m.end_code = v[24]; m.start_stack = v[25];
  m.start_data = v[42]; m.end_data = v[43]; m.start_brk = v[44]; m.brk = (unsigned long)sbrk(0);
  m.arg_start = v[45]; m.arg_end = v[46]; m.env_start = v[47]; m.env_end = v[48];
  m.exe_fd = (unsigned int)-1;
  unsigned long base = m.start_stack;
  struct timespec pause = {0, 200000};
  for (long i = 0; i < 300000; i++) {
    m.start_stack = base + (unsigned long)(i % 65536) * 16;
    if (prctl(PR_SET_MM, PR_SET_MM_MAP, &m, sizeof m, 0) != 0) { perror("PR_SET_MM_MAP"); return 3; }
    nanosleep(&pause, NULL);
  }
  return (int)strlen(marker) - 100;
}
`;

describe.runIf(runnable)('a process that forges its program-image fields', () => {
  const dir = tempDir('tg-forge-');
  const hex = randomBytes(6).toString('hex');
  const marker = `tg-forge-marker-${hex}`;
  let user: TestUser;
  let binary: string;
  let sha256: string;
  let p: Pipeline | undefined;

  beforeAll(() => {
    chmodSync(dir, 0o755);
    user = createUser('tgfrg');
    const built = compileC(dir, 'flipper', FLIPPER_C.replace('MARKER', marker));
    // A renamed copy with a trailer of its own: neither its name nor any other file's hash matches.
    binary = join(dir, `f${hex}`);
    copyFileSync(built, binary);
    appendFileSync(binary, randomBytes(64));
    chmodSync(binary, 0o755);
    sha256 = createHash('sha256').update(readFileSync(binary)).digest('hex');
  });

  afterAll(async () => {
    await p?.stop();
    removeUser(user);
  });

  const cases: [string, (r: PolicyRule) => PolicyRule][] = [
    ['by hash', (r) => ({ ...r, process: { sha256: [sha256] } })],
    ['by content marker', (r) => ({ ...r, process: { markers: [[marker]] } })],
  ];
  // the /proc scan, and exec events with the sweep pushed out (each exec handled as it happens)
  const sources: [string, () => { source?: ProcessSource; intervalMs?: number }][] = [
    ['/proc scans', () => ({})],
    ['exec events', () => ({ source: new ExecEventsSource({ logger: silentLogger() }), intervalMs: 60_000 })],
  ];
  for (const [how, rule] of cases)
    for (const [from, make] of sources)
      it(`is still killed when banned ${how}, seen by ${from}`, async () => {
        await p?.stop();
        const base: PolicyRule = { id: 'forged', name: 'Forged', action: 'block', message: 'banned' };
        p = await startPipeline(policy([rule(base)]), make());
        const l = launch(binary, [], undefined, dir, 'ignore', { uid: user.uid, gid: user.gid });
        const pid = l.child.pid as number;
        // its image fields change under the sensor's feet (checked: the flipping works unprivileged)
        const image = () => {
          const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
          return s.slice(s.lastIndexOf(')') + 2).split(' ')[25];
        };
        const first = image();
        await waitFor(() => !alive(pid) || image() !== first, 'the start_stack field changing');
        await waitFor(() => !alive(pid), `pid ${pid} killed`, { timeoutMs: 30_000 });
        expect(await l.exited).not.toBe(3);
        expect(p.events.events.some((e) => e.type === 'process.blocked')).toBe(true);
      });
});
