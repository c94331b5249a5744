/**
 * The verdict cache's hash is keyed (native/execperm SipHash-2-4, a key from getrandom at every
 * start), with the real addon (root, Linux): unkeyed, a user could compute a name whose hash equals
 * another path's (a second name of one inode sharing that path's verdict) or identities that fall
 * into a cached deny's slot (found in review). What is visible of it: the path part of a request's
 * key (`identity.key`, its last field) is the same for every exec within one start and another
 * after a restart, while the file's own fields stay the same. On a tmpfs of this test's own, so
 * only its execs are asked.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ExecPermEvent, loadExecPermAddon } from '../../src/enforcement/exec-deny.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tgkh-');
const mnt = join(dir, 'mnt');
const prog = join(mnt, 'prog');
const addon = loadExecPermAddon();
const keys: string[] = [];
let mounted = false;

function start(): void {
  addon.start({ deadlineMs: 2000 }, (ev: ExecPermEvent) => {
    if (ev.kind !== 'decide') return;
    if (ev.path === prog) keys.push(ev.identity.key);
    addon.respond(ev.id, true, false); // not cacheable: every exec is asked
  });
  addon.mark(mnt, 'mount');
}

/** Execs the program once; resolves the key its request carried. */
async function keyOfExec(): Promise<string> {
  const before = keys.length;
  const code = await new Promise<number | null>((resolve) => {
    // as nobody: this process plays guardd, whose own children's execs are allowed unasked
    const child = spawn(prog, [], { stdio: 'ignore', uid: 65534, gid: 65534 });
    child.on('exit', (c) => resolve(c));
    child.on('error', () => resolve(null));
  });
  expect(code).toBe(0);
  expect(keys.length).toBe(before + 1);
  return keys[keys.length - 1] as string;
}

/** [the file's fields, the path's hash] of a key. */
const parts = (key: string): [string, string] => {
  const at = key.lastIndexOf(':');
  return [key.slice(0, at), key.slice(at + 1)];
};

beforeAll(() => {
  expect(process.getuid?.()).toBe(0);
  chmodSync(dir, 0o755);
  mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'tgkh', mnt], {
    encoding: 'utf8',
  });
  expect(m.status, m.stderr).toBe(0);
  mounted = true;
  copyFileSync(realpathSync('/bin/true'), prog);
  chmodSync(prog, 0o755);
});

afterAll(() => {
  addon.stop();
  if (mounted) spawnSync('umount', [mnt]);
});

describe('execperm: the verdict cache hash is keyed at every start (root, Linux, fanotify)', () => {
  it('the same path hashes alike within one start and otherwise after a restart; the file fields stay', async () => {
    start();
    const first = await keyOfExec();
    expect(await keyOfExec()).toBe(first);
    addon.stop();
    start();
    const second = await keyOfExec();
    const [file1, path1] = parts(first);
    const [file2, path2] = parts(second);
    expect(file2).toBe(file1);
    expect(path1).toMatch(/^[0-9a-f]{16}$/);
    expect(path2).toMatch(/^[0-9a-f]{16}$/);
    expect(path2).not.toBe(path1);
  });
});
