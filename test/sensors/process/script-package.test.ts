/**
 * Finding the script an interpreter runs (flags skipped, table-driven) and the npm package it
 * belongs to (symlinks followed, nearest named package.json, hostile package.json skipped).
 */
import { mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ChainAnswer, lstatChainSequential } from '../../../src/sensors/safe-read.js';
import {
  isInterpreter,
  othersMayWrite,
  PACKAGE_JSON_MAX_BYTES,
  permits,
  ScriptPackageResolver,
  scriptArgument,
  stepPlaced,
} from '../../../src/sensors/script-package.js';
import { tempDir } from '../../helpers/tmp.js';
import { walkPrefixes } from '../../helpers/walk.js';

describe('scriptArgument', () => {
  const table: [string, string[], string | null][] = [
    ['/usr/bin/node', ['node', 'cli.js', '--x'], 'cli.js'],
    ['/usr/bin/node', ['node', '--inspect', '-r', 'ts-node/register', '--require', 'x', 'a.js'], 'a.js'],
    ['/usr/bin/node', ['node', '--experimental-vm-modules', '--max-old-space-size=4096', 'b.mjs'], 'b.mjs'],
    ['/usr/bin/node', ['node', '--import', 'tsx', '--', 'c.js'], 'c.js'],
    ['/usr/bin/node', ['node', '--', '-dash.js'], '-dash.js'],
    ['/usr/bin/node', ['node', '--experimental-default-type', 'module', 'd.js'], 'd.js'],
    [
      '/usr/bin/node',
      ['node', '--heapsnapshot-signal', 'SIGUSR2', '--disable-proto', 'delete', 'e.js'],
      'e.js',
    ],
    ['/usr/bin/node', ['node', '-e', 'require("x")'], null],
    ['/usr/bin/node', ['node', '--eval=1'], null],
    ['/usr/bin/node', ['node'], null],
    ['/usr/bin/node', ['node', '-'], null],
    ['/usr/local/bin/bun', ['bun', 'run', 'x.ts'], 'x.ts'],
    ['/usr/local/bin/bun', ['bun', './y.js'], './y.js'],
    ['/usr/bin/deno', ['deno', 'run', '-A', '--config', 'deno.json', 'main.ts'], 'main.ts'],
    ['/usr/bin/deno', ['deno', 'repl'], null],
    ['/usr/bin/python3.12', ['python3', '-u', '-W', 'ignore', 'tool.py'], 'tool.py'],
    ['/usr/bin/python3', ['python3', '-m', 'http.server'], null],
    ['/usr/bin/python3', ['python3', '-c', 'print(1)'], null],
    ['/usr/bin/ruby', ['ruby', '-I', 'lib', 'bin/x'], 'bin/x'],
    ['/usr/bin/perl', ['perl', '-e', 'print 1'], null],
  ];
  for (const [exe, argv, expected] of table) {
    it(`${argv.join(' ')} → ${expected}`, () => {
      expect(scriptArgument(exe, argv)).toBe(expected);
    });
  }

  it('knows interpreters and nothing else', async () => {
    for (const n of [
      'node',
      'nodejs',
      'bun',
      'deno',
      'python',
      'python3',
      'python3.12',
      'ruby',
      'perl',
      'node.exe',
    ]) {
      expect(isInterpreter(`/x/${n}`)).toBe(true);
    }
    for (const n of ['sh', 'bash', 'sleep', 'nodex', 'claude', 'npm'])
      expect(isInterpreter(`/x/${n}`)).toBe(false);
  });
});

describe('ScriptPackageResolver', () => {
  const dir = tempDir('tg-sp-');
  const pkgRoot = join(dir, 'prefix', 'lib', 'node_modules', '@scope', 'tool');
  mkdirSync(join(pkgRoot, 'dist', 'esm'), { recursive: true });
  writeFileSync(join(pkgRoot, 'package.json'), JSON.stringify({ name: '@scope/tool', version: '2.1.0' }));
  // A nested package.json without a name (common in dist folders) is not the package root.
  writeFileSync(join(pkgRoot, 'dist', 'package.json'), '{"type":"module"}');
  writeFileSync(join(pkgRoot, 'dist', 'esm', 'cli.js'), '');
  mkdirSync(join(dir, 'bin'));
  symlinkSync(join(pkgRoot, 'dist', 'esm', 'cli.js'), join(dir, 'bin', 'innocent'));

  it('follows symlinks and skips nameless package.json files up to the named one', async () => {
    const r = new ScriptPackageResolver();
    const got = await r.resolve('/usr/bin/node', 'node', ['node', join(dir, 'bin', 'innocent')], null);
    expect(got).toEqual({
      name: '@scope/tool',
      version: '2.1.0',
      root: pkgRoot,
      script: join(pkgRoot, 'dist', 'esm', 'cli.js'),
      scriptFile: {
        ...(({ dev, ino, uid }) => ({ dev, ino, owner: uid }))(
          statSync(join(pkgRoot, 'dist', 'esm', 'cli.js')),
        ),
        packageOwner: statSync(join(pkgRoot, 'package.json')).uid,
      },
    });
    // Relative to the process's working directory; found through the cache the second time.
    expect((await r.resolve('/usr/bin/node', 'node', ['node', 'bin/innocent'], dir))?.name).toBe(
      '@scope/tool',
    );
    expect(r.counts.resolved).toBe(2);
  });

  it('takes the steps read ahead after the exec before asking the pool, and walks on from them', async () => {
    // Two packages; the answers read ahead say the way to the first is a link to the second (a
    // step changed between the read ahead and now, as far as the resolver can tell): it follows
    // what it was given, so the answers are used, and walks the rest itself.
    const other = join(dir, 'other');
    mkdirSync(join(other, 'lib'), { recursive: true });
    writeFileSync(join(other, 'package.json'), JSON.stringify({ name: 'other-tool', version: '1.0.0' }));
    writeFileSync(join(other, 'lib', 'cli.js'), '');
    const viaBin = join(dir, 'bin', 'innocent');
    const ahead = new Map<string, ChainAnswer>(
      (await lstatChainSequential(walkPrefixes(join(dir, 'bin')))).map((a, i, all) => [
        walkPrefixes(join(dir, 'bin'))[i] as string,
        i === all.length - 1 && a.ok ? { ok: true, step: { ...a.step, mode: 0o120777, link: other } } : a,
      ]),
    );
    const r = new ScriptPackageResolver();
    const argv = ['node', join(dir, 'bin', 'lib', 'cli.js')];
    const got = await r.resolveOutcome('/usr/bin/node', 'node', argv, null, 0, null, ahead);
    expect(got.pkg).toMatchObject({ name: 'other-tool', script: join(other, 'lib', 'cli.js') });
    // Without them, the same command line names a file that is not there.
    expect((await r.resolveOutcome('/usr/bin/node', 'node', argv, null, 0, null)).pkg).toBeNull();
    expect((await r.resolve('/usr/bin/node', 'node', ['node', viaBin], null))?.name).toBe('@scope/tool');
  });

  it('resolves the script the way node does: no extension, a package directory, an unknown value flag', async () => {
    const r = new ScriptPackageResolver();
    const cli = join(pkgRoot, 'dist', 'esm', 'cli');
    // `node …/cli` runs cli.js; `node <package dir>` runs its main.
    expect(await r.resolve('/usr/bin/node', 'node', ['node', cli], null)).toMatchObject({
      name: '@scope/tool',
      script: `${cli}.js`,
    });
    expect(await r.resolve('/usr/bin/node', 'node', ['node', pkgRoot], null)).toMatchObject({
      name: '@scope/tool',
      root: pkgRoot,
    });
    // A value flag missing from the table: its value names no file, so the next argument is the script.
    expect(
      (await r.resolve('/usr/bin/node', 'node', ['node', '--some-future-flag', 'value', `${cli}.js`], dir))
        ?.name,
    ).toBe('@scope/tool');
    expect(
      (
        await r.resolve(
          '/usr/bin/node',
          'node',
          ['node', '--some-future-flag', 'v'.repeat(5000), `${cli}.js`],
          dir,
        )
      )?.name,
    ).toBe('@scope/tool');
    // …but an existing script is never passed over for a banned file among its arguments.
    const mine = join(tempDir('tg-sp3-'), 'mine.js');
    writeFileSync(mine, '');
    expect(await r.resolve('/usr/bin/node', 'node', ['node', mine, `${cli}.js`], null)).toBeNull();
  });

  it('does not trust a cached directory answer from the future (clock stepped back)', async () => {
    let now = 1_000_000_000;
    const r = new ScriptPackageResolver({ now: () => now });
    const d = join(tempDir('tg-sp4-'), 'later');
    mkdirSync(d);
    writeFileSync(join(d, 'cli.js'), '');
    expect(await r.resolve('/usr/bin/node', 'node', ['node', join(d, 'cli.js')], null)).toBeNull();
    // The package is installed there afterwards.
    writeFileSync(join(d, 'package.json'), JSON.stringify({ name: 'late-pkg' }));
    now += 1000;
    expect(await r.resolve('/usr/bin/node', 'node', ['node', join(d, 'cli.js')], null)).toBeNull(); // cached
    now -= 3_600_000;
    expect((await r.resolve('/usr/bin/node', 'node', ['node', join(d, 'cli.js')], null))?.name).toBe(
      'late-pkg',
    );
  });

  it('returns null for non-interpreters, missing scripts, and scripts outside any package', async () => {
    const r = new ScriptPackageResolver();
    expect(await r.resolve('/usr/bin/sleep', 'sleep', ['sleep', 'x'], dir)).toBeNull();
    expect(await r.resolve('/usr/bin/node', 'node', ['node', 'missing.js'], dir)).toBeNull();
    expect(await r.resolve('/usr/bin/node', 'node', ['node', 'rel.js'], null)).toBeNull();
    const lone = join(tempDir('tg-sp2-'), 'lone.js');
    writeFileSync(lone, '');
    expect(await r.resolve('/usr/bin/node', 'node', ['node', lone], null)).toBeNull();
  });

  it('skips hostile package.json files (too large, not JSON, not an object, bad name) and walks on', async () => {
    const base = join(dir, 'hostile');
    const cases: [string, string | Buffer][] = [
      ['huge', Buffer.alloc(PACKAGE_JSON_MAX_BYTES + 1, 0x20)],
      ['notjson', '{"name": "x",'],
      ['array', '["name"]'],
      ['badname', JSON.stringify({ name: 42 })],
      ['binary', Buffer.from([0xff, 0xfe, 0x00, 0x7b])],
    ];
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'outer-pkg' }));
    const r = new ScriptPackageResolver();
    for (const [name, content] of cases) {
      const d = join(base, name);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, 'package.json'), content);
      writeFileSync(join(d, 'x.js'), '');
      expect((await r.resolve('/usr/bin/node', 'node', ['node', join(d, 'x.js')], null))?.name).toBe(
        'outer-pkg',
      );
    }
    expect(r.counts.bad_package_json).toBe(4); // the nameless-number one is simply not a package root
  });
});

describe('what a process’s user may reach and who may place a step (mode bits)', () => {
  const U = 1000;
  const cred = { uid: U, groups: [100, 27] };
  // [perms, read?, search?]: the kernel's class choice — owner, else group, else other.
  const table: [{ uid: number; gid: number; mode: number }, boolean, boolean][] = [
    [{ uid: U, gid: 5, mode: 0o40700 }, true, true],
    [{ uid: U, gid: 100, mode: 0o40070 }, false, false], // the owner class wins even when group would allow
    [{ uid: 0, gid: 27, mode: 0o40750 }, true, true], // through a supplementary group
    [{ uid: 0, gid: 28, mode: 0o40750 }, false, false],
    [{ uid: 2000, gid: 100, mode: 0o40705 }, false, false], // the group class wins over other
    [{ uid: 2000, gid: 5, mode: 0o40755 }, true, true],
    [{ uid: 2000, gid: 5, mode: 0o40700 }, false, false],
  ];
  it.each(table)('%o → read %s, search %s', (f, read, search) => {
    expect(permits(f, cred, 4)).toBe(read);
    expect(permits(f, cred, 1)).toBe(search);
  });

  it('root reaches anything; an unknown uid gets the other class; unknown groups give no group class', () => {
    expect(permits({ uid: 2000, gid: 5, mode: 0o40700 }, { uid: 0, groups: null }, 1)).toBe(true);
    expect(permits({ uid: 2000, gid: 5, mode: 0o40701 }, { uid: null, groups: null }, 1)).toBe(true);
    expect(permits({ uid: 2000, gid: 100, mode: 0o40750 }, { uid: U, groups: null }, 1)).toBe(false);
  });

  it('a step is placed when only root and the user may write the directory, or the entry is theirs', () => {
    expect(othersMayWrite({ uid: 0, gid: 0, mode: 0o41777 }, U)).toBe(true);
    expect(othersMayWrite({ uid: 2000, gid: 2000, mode: 0o40755 }, U)).toBe(true);
    expect(othersMayWrite({ uid: 0, gid: 50, mode: 0o42775 }, U)).toBe(true);
    expect(othersMayWrite({ uid: 0, gid: 0, mode: 0o40775 }, U)).toBe(false);
    expect(othersMayWrite({ uid: U, gid: 100, mode: 0o40755 }, U)).toBe(false);
    const sticky = { uid: 0, gid: 0, mode: 0o41777 };
    expect(stepPlaced(sticky, { uid: 2000 }, U)).toBe(false);
    expect(stepPlaced(sticky, { uid: U }, U)).toBe(true);
    expect(stepPlaced(sticky, { uid: 0 }, U)).toBe(true);
    // Another user's own directory: their entries are theirs to swap; an unknown uid trusts root only.
    expect(stepPlaced({ uid: 2000, gid: 2000, mode: 0o40755 }, { uid: 2000 }, U)).toBe(false);
    expect(stepPlaced(sticky, { uid: 2000 }, null)).toBe(false);
  });
});
