/**
 * Review finding: what a user names their files and processes reaches root's terminal through
 * `guardctl events` (and `policy test`, error messages) byte for byte. A user who runs a banned
 * tool from a directory whose name holds terminal escapes (clear the screen, set the title, OSC 52
 * clipboard writes on terminals that allow it, a line that fakes another event) has them played
 * on the admin's terminal. Control characters must be shown, not sent.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyRule } from '../../src/policy/policy-types.js';
import {
  type Guardd,
  makeKey,
  policyBody,
  ruleEvents,
  runGuardctl,
  startGuardd,
  writeSignedPolicy,
} from '../helpers/daemon.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestUser, type TestUser } from '../helpers/unix-user.js';
import { waitFor } from '../helpers/wait.js';

const dir = tempDir('tgrv-esc-');
const TAG = randomBytes(4).toString('hex');
/** A copy of `sleep` with bytes of this run appended: a hash only this test's rule names. */
const BANNED = join(dir, `banned-${TAG}`);
const RULE = `tgrv-esc-${TAG}`;
/** Clear screen, set the window title, and a carriage return that overwrites the line. */
const EVIL = '\x1b[2J\x1b]0;tgrv-owned\x07\rfake\x1b[8m';
/** Any C0 control but newline, DEL, or a C1 control (0x80–0x9f). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the point of the test
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;

let user: TestUser;
let g: Guardd;

beforeAll(async () => {
  expect(process.getuid?.()).toBe(0);
  user = createTestUser('tgrv');
  writeFileSync(BANNED, Buffer.concat([readFileSync(realpathSync('/bin/sleep')), randomBytes(64)]));
  chmodSync(dir, 0o755);
  chmodSync(BANNED, 0o644);
  const hash = createHash('sha256').update(readFileSync(BANNED)).digest('hex');
  const rules: PolicyRule[] = [
    { id: RULE, name: 'tgrv banned', action: 'block', message: 'no', process: { sha256: [hash] } },
  ];
  const key = makeKey();
  const policy = writeSignedPolicy(join(dir, 'policy.dsse.json'), policyBody(rules), key);
  g = await startGuardd(join(dir, 'guardd'), {
    'policy.trusted_keys': [key.publicKeyPem],
    'paths.bootstrap_policy': policy,
  });
});

afterAll(async () => {
  await g?.stop('SIGTERM');
});

describe('terminal escapes in what guardctl prints', () => {
  it("a blocked tool run from a directory named with escapes: `guardctl events` shows them, root's terminal does not run them", async () => {
    // The user copies the banned tool under a name of their choosing and runs it.
    const script = [
      'd="$HOME/x$EVIL"',
      'mkdir -p "$d"',
      `cp "${BANNED}" "$d/tool" && chmod 755 "$d/tool"`,
      '"$d/tool" 30; echo rc=$?',
    ].join('\n');
    const r = spawnSync('sh', ['-c', script], {
      uid: user.uid,
      gid: user.gid,
      cwd: user.home,
      env: { PATH: '/usr/bin:/bin', HOME: user.home, EVIL },
      encoding: 'utf8',
      timeout: 40_000,
    });
    expect(r.stdout, r.stderr).toMatch(/rc=137/); // killed by guardd
    const [event] = await waitFor(() => {
      const e = ruleEvents(g, 'process.blocked', RULE);
      return e.length > 0 ? e : undefined;
    }, 'the process.blocked event');
    expect(event?.exe).toContain(EVIL); // stored and shipped exactly (JSON escapes it)
    const out = runGuardctl(['--socket-dir', g.socketDir, 'events', '--type', 'process.blocked']);
    expect(out.code, out.stderr).toBe(0);
    const line = out.stdout.split('\n').find((l) => l.includes(RULE)) ?? '';
    expect(line).toContain('tool');
    expect(CONTROL.test(out.stdout), JSON.stringify(line)).toBe(false);
    expect(line).toContain('\\x1b[2J'); // shown, readable
  });

  it('policy test on a path named with escapes, and an error quoting what was typed: shown, not run', () => {
    const policyFile = join(dir, 'plain-policy.json');
    writeFileSync(
      policyFile,
      JSON.stringify(
        policyBody([{ id: 'tgrv-p', name: 'p', action: 'warn', message: 'm', paths: [`${dir}/*`] }]),
      ),
    );
    // \x9b is the one-byte CSI of C1: some terminals take it like ESC [
    const target = join(dir, `p${EVIL}\x9b2J`);
    const t = runGuardctl(['policy', 'test', '--policy', policyFile, '--kind', 'path', target]);
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toContain('tgrv-p');
    expect(CONTROL.test(t.stdout), JSON.stringify(t.stdout)).toBe(false);
    const e = runGuardctl(['events', '--since', EVIL]);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain('GUARD_CLI_USAGE');
    expect(CONTROL.test(e.stderr), JSON.stringify(e.stderr)).toBe(false);
  });
});
