/**
 * Review finding: `guardctl policy test` is often run by root on a path a user controls. The user
 * can put a FIFO where the file was (or the admin names it with --kind file): reading the shebang
 * opened it blocking, so guardctl hung for good (no writer ever comes). It must answer instead.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PolicyTestReport } from '../../src/cli/commands/policy-test.js';
import { policyBody, runGuardctl } from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tgrv-pt-');
const policyFile = join(dir, 'policy.json');
writeFileSync(
  policyFile,
  JSON.stringify(
    policyBody([
      { id: 'tgrv-name', name: 'named', action: 'block', message: 'no', process: { names: ['tgrv-fifo'] } },
    ]),
  ),
);

describe('guardctl policy test on a hostile target', () => {
  it('a FIFO read as a file answers (not hangs): decided by its name, nothing read from it', () => {
    const fifo = join(dir, 'tgrv-fifo');
    execFileSync('mkfifo', [fifo]);
    // runGuardctl kills guardctl after 30 s: a hang shows as no exit code
    const r = runGuardctl(['--json', 'policy', 'test', '--policy', policyFile, '--kind', 'file', fifo]);
    expect(r.code, `guardctl did not finish: ${r.stderr}`).toBe(0);
    const report = r.json<PolicyTestReport>();
    const program = report.results.find((x) => x.as === 'process');
    expect(program?.verdict?.rule.id).toBe('tgrv-name');
    expect(program?.facts).toMatchObject({ exe: fifo, sha256: null, argv: [fifo] });
  });
});
