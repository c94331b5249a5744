/** package.json reading as hostile input, and root discovery for every manager on every OS. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expandHome } from '../../../src/policy/matcher.js';
import {
  binDirsFor,
  discoverRoots,
  npmrcPrefix,
  rootPatterns,
  shimDirsFor,
} from '../../../src/sensors/install-roots.js';
import {
  MAX_PACKAGE_JSON_BYTES,
  parseManifest,
  readPackageJson,
  readPackageJsonAsync,
} from '../../../src/sensors/package-reader.js';
import { ReadGate } from '../../../src/sensors/safe-read.js';
import { tempDir } from '../../helpers/tmp.js';
import { mountStalled, type StalledMount } from '../hostile-fs.js';

const base = tempDir('tg-rr-');
let n = 0;
const fresh = (): string => {
  const d = join(base, `t${++n}`);
  mkdirSync(d, { recursive: true });
  return d;
};

describe('parseManifest', () => {
  it.each([
    ['not JSON', '{"name": "x",', { ok: false, reason: 'not_json' }],
    ['array', '[1,2]', { ok: false, reason: 'not_object' }],
    ['null', 'null', { ok: false, reason: 'not_object' }],
    ['numeric name', '{"name": 42}', { ok: false, reason: 'no_name' }],
    ['empty name', '{"name": ""}', { ok: false, reason: 'no_name' }],
    ['overlong name', JSON.stringify({ name: 'a'.repeat(215) }), { ok: false, reason: 'no_name' }],
  ])('%s → %o', (_what, text, expected) => {
    expect(parseManifest(text)).toEqual(expected);
  });

  it('keeps only what it needs, typed: invalid version → null, bin string named after the unscoped name', () => {
    expect(parseManifest('\uFEFF{"name":"@a/b-c","version":{"x":1},"bin":"cli.js"}')).toEqual({
      ok: true,
      info: { name: '@a/b-c', version: null, bin: { 'b-c': 'cli.js' } },
    });
    const r = parseManifest(
      JSON.stringify({
        name: 'x',
        version: '1.2.3',
        bin: { ok: 'a.js', '../evil': 'b.js', 'a/b': 'c', n: 5 },
      }),
    );
    expect(r).toEqual({ ok: true, info: { name: 'x', version: '1.2.3', bin: { ok: 'a.js' } } });
    expect(parseManifest('{"name":"x","bin":[1,2]}')).toEqual({
      ok: true,
      info: { name: 'x', version: null, bin: {} },
    });
  });

  // found by test/fuzz/package-reader.fuzz.test.ts: the string form skipped the bin-name check
  it.each([
    ['a bare dot', '{"name":".","bin":""}'],
    ['a path in the name', '{"name":"a/../../etc/x","bin":"c.js"}'],
    ['a scoped dot-dot', '{"name":"@s/..","bin":"c.js"}'],
  ])('string-form bin named after %s is dropped like the object form', (_what, text) => {
    expect(parseManifest(text)).toMatchObject({ ok: true, info: { bin: {} } });
  });

  it('bin names __proto__ and constructor are own keys, and Object.prototype is untouched', () => {
    const r = parseManifest('{"name":"x","bin":{"__proto__":"a.js","constructor":"b.js"}}');
    expect(r.ok).toBe(true);
    const bin = (r as { info: { bin: Record<string, string> } }).info.bin;
    expect(Object.keys(bin).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(bin, '__proto__')?.value).toBe('a.js');
    expect(Object.getPrototypeOf(bin)).toBe(Object.prototype);
    expect(parseManifest('{"name":"__proto__","bin":"c.js"}')).toMatchObject({
      ok: true,
      info: { name: '__proto__' },
    });
  });
});

describe('readPackageJson', () => {
  it('refuses missing, huge, FIFO and symlinked package.json with a reason, never hanging', () => {
    const d = fresh();
    expect(readPackageJson(join(d, 'none'))).toMatchObject({ ok: false, reason: 'missing' });
    mkdirSync(join(d, 'huge'));
    writeFileSync(
      join(d, 'huge', 'package.json'),
      `{"name":"x","pad":"${'a'.repeat(MAX_PACKAGE_JSON_BYTES)}"}`,
    );
    expect(readPackageJson(join(d, 'huge'))).toMatchObject({ ok: false, reason: 'too_large' });
    mkdirSync(join(d, 'fifo'));
    execFileSync('mkfifo', [join(d, 'fifo', 'package.json')]);
    expect(readPackageJson(join(d, 'fifo'))).toMatchObject({ ok: false, reason: 'not_file' });
    mkdirSync(join(d, 'zero'));
    symlinkSync('/dev/zero', join(d, 'zero', 'package.json'));
    expect(readPackageJson(join(d, 'zero'))).toMatchObject({ ok: false, reason: 'not_file' });
    mkdirSync(join(d, 'dir'));
    mkdirSync(join(d, 'dir', 'package.json'));
    expect(readPackageJson(join(d, 'dir'))).toMatchObject({ ok: false });
    mkdirSync(join(d, 'good'));
    writeFileSync(join(d, 'good', 'package.json'), '{"name":"good","version":"1.0.0"}');
    expect(readPackageJson(join(d, 'good'))).toMatchObject({
      ok: true,
      info: { name: 'good', version: '1.0.0' },
    });
  });

  it('reports EACCES as permission_denied (injected fs: CI runs as root, which bypasses modes)', () => {
    const throwing = {
      ...fs,
      openSync: (): number => {
        throw Object.assign(new Error('denied'), { code: 'EACCES' });
      },
    };
    expect(readPackageJson('/x', throwing)).toMatchObject({ ok: false, reason: 'permission_denied' });
  });
});

describe('readPackageJsonAsync (what the daemon uses)', () => {
  it('gives the same answers as the sync reader, off the event loop', async () => {
    const d = fresh();
    mkdirSync(join(d, 'fifo'));
    execFileSync('mkfifo', [join(d, 'fifo', 'package.json')]);
    mkdirSync(join(d, 'zero'));
    symlinkSync('/dev/zero', join(d, 'zero', 'package.json'));
    mkdirSync(join(d, 'good'));
    writeFileSync(join(d, 'good', 'package.json'), '{"name":"good","version":"1.0.0"}');
    expect(await readPackageJsonAsync(join(d, 'none'), 0)).toMatchObject({ ok: false, reason: 'missing' });
    expect(await readPackageJsonAsync(join(d, 'fifo'), 0)).toMatchObject({ ok: false, reason: 'not_file' });
    expect(await readPackageJsonAsync(join(d, 'zero'), 0)).toMatchObject({ ok: false, reason: 'not_file' });
    expect(await readPackageJsonAsync(join(d, 'good'), 0)).toMatchObject({
      ok: true,
      info: { name: 'good', version: '1.0.0' },
    });
  });
});

describe.runIf(process.platform === 'linux' && process.getuid?.() === 0)(
  'discovery with a stalled home',
  () => {
    const dir = tempDir('tg-rrs-');
    let mnt: StalledMount | undefined;

    afterAll(async () => {
      await mnt?.release();
    });

    it('skips the home that does not answer (counted), finds the others, and never blocks the loop', async () => {
      mnt = await mountStalled(dir);
      const good = fresh();
      mkdirSync(join(good, '.npm-global/lib/node_modules'), { recursive: true });
      writeFileSync(join(good, '.npmrc'), 'prefix=~/.npm-global\n');
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 5);
      try {
        const found = await discoverRoots({
          platform: 'linux',
          homes: [mnt.path, good],
          extraRoots: [],
          systemRoots: false,
          gate: new ReadGate('test-discovery', 2, 1),
        });
        expect(found.stalled).toEqual([mnt.path]);
        expect(found.roots.map((r) => r.path)).toEqual([join(good, '.npm-global/lib/node_modules')]);
        expect(ticks).toBeGreaterThan(0);
      } finally {
        clearInterval(ticker);
        await mnt.release();
      }
    });
  },
);

describe('npmrcPrefix', () => {
  it('reads only prefix=, expands ~, refuses relative, oversized and symlinked files', async () => {
    const home = fresh();
    const rc = join(home, '.npmrc');
    writeFileSync(rc, 'registry=https://r.example\n//r.example/:_authToken=secret\nprefix = "~/custom"\n');
    expect(await npmrcPrefix(rc, home, 'linux')).toBe(join(home, 'custom'));
    writeFileSync(rc, 'prefix=relative/dir\n');
    expect(await npmrcPrefix(rc, home, 'linux')).toBeNull();
    writeFileSync(rc, `prefix=/opt/x\n${'#'.repeat(70 * 1024)}`);
    expect(await npmrcPrefix(rc, home, 'linux')).toBeNull();
    const home2 = fresh();
    symlinkSync('/etc/shadow', join(home2, '.npmrc'));
    expect(await npmrcPrefix(join(home2, '.npmrc'), home2, 'linux')).toBeNull();
  });
});

describe('discoverRoots', () => {
  it('finds every manager root in a home, dedupes by inode, and anchors where roots can appear', async () => {
    const home = fresh();
    const roots: Record<string, string> = {
      npm: '.npm-global/lib/node_modules',
      nvm: '.nvm/versions/node/v22.11.0/lib/node_modules',
      fnm: '.local/share/fnm/node-versions/v20.18.0/installation/lib/node_modules',
      volta: '.volta/tools/image/packages/@anthropic-ai/claude-code/lib/node_modules',
      asdf: '.asdf/installs/nodejs/20.18.0/lib/node_modules',
      mise: '.local/share/mise/installs/node/22/lib/node_modules',
      pnpm: '.local/share/pnpm/global/5/node_modules',
      yarn: '.config/yarn/global/node_modules',
      bun: '.bun/install/global/node_modules',
      npx: '.npm/_npx/0123abcd/node_modules',
    };
    for (const rel of Object.values(roots)) mkdirSync(join(home, rel), { recursive: true });
    mkdirSync(join(home, '.volta/tools/image/node/20.18.0/lib/node_modules'), { recursive: true });
    mkdirSync(join(home, '.cache/pnpm/dlx/key1/19a2b3-1234/node_modules'), { recursive: true });
    mkdirSync(join(home, 'custom/lib/node_modules'), { recursive: true });
    writeFileSync(join(home, '.npmrc'), 'prefix=~/custom\n');
    const extra = join(home, 'alias-of-npm-global');
    symlinkSync(join(home, roots.npm as string), extra);
    const found = await discoverRoots({
      platform: 'linux',
      homes: [home],
      extraRoots: [extra],
      systemRoots: false,
    });
    const byPath = new Map(found.roots.map((r) => [r.path, r.manager]));
    for (const [manager, rel] of Object.entries(roots)) {
      if (manager === 'npm') continue; // deduplicated: the extra root (same inode) came first
      expect(byPath.get(join(home, rel)), rel).toBe(manager);
    }
    expect(byPath.get(extra)).toBe('other');
    expect(byPath.has(join(home, roots.npm as string))).toBe(false);
    expect(byPath.get(join(home, '.volta/tools/image/node/20.18.0/lib/node_modules'))).toBe('volta');
    expect(byPath.get(join(home, '.cache/pnpm/dlx/key1/19a2b3-1234/node_modules'))).toBe('npx');
    expect(byPath.get(join(home, 'custom/lib/node_modules'))).toBe('npm');
    expect(found.anchors).toContain(join(home, '.nvm/versions/node'));
    const empty = fresh();
    expect(
      await discoverRoots({ platform: 'linux', homes: [empty], extraRoots: [], systemRoots: false }),
    ).toEqual({
      roots: [],
      anchors: [empty],
      // Watched as the home's (its user's gate key).
      anchorKeys: new Map([[empty, empty]]),
      stalled: [],
      truncated: [],
      // Fixed-path roots that are missing (their bin dirs may hold links of a reverted install).
      absent: [
        { path: join(empty, '.npm-global/lib/node_modules'), manager: 'npm', layout: 'npm', home: empty },
        {
          path: join(empty, '.config/yarn/global/node_modules'),
          manager: 'yarn',
          layout: 'yarn',
          home: empty,
        },
        { path: join(empty, '.bun/install/global/node_modules'), manager: 'bun', layout: 'bun', home: empty },
      ],
    });
    // A missing extra root (and a missing base) is anchored at its nearest existing ancestor.
    const extraLater = join(empty, 'later', 'prefix', 'lib', 'node_modules');
    const later = await discoverRoots({
      platform: 'linux',
      homes: [],
      extraRoots: [extraLater],
      systemRoots: false,
    });
    expect(later).toMatchObject({
      roots: [],
      anchors: [empty],
      absent: [{ path: extraLater, manager: 'other' }],
    });
    // A `.npmrc` prefix out of the home not made yet: its anchor is that home's to watch (its
    // user's gate key), not the system's, though it lies out of every home.
    const rcHome = fresh();
    const away = fresh();
    writeFileSync(join(rcHome, '.npmrc'), `prefix=${join(away, 'later', 'prefix')}\n`);
    const claimed = await discoverRoots({
      platform: 'linux',
      homes: [rcHome],
      extraRoots: [],
      systemRoots: false,
    });
    expect(claimed.anchorKeys.get(away)).toBe(rcHome);
  });

  it('knows the macOS and Windows locations', () => {
    const mac = rootPatterns({ platform: 'darwin', homes: ['/Users/a'], extraRoots: [] }).map(
      (p) => `${p.base}/${p.segments.join('/')}`,
    );
    expect(mac).toEqual(
      expect.arrayContaining([
        '/opt/homebrew/lib/node_modules',
        '/usr/local/lib/node_modules',
        '/Users/a/Library/pnpm/global/*/node_modules',
        '/Users/a/Library/Application Support/fnm/node-versions/*/installation/lib/node_modules',
      ]),
    );
    const win = rootPatterns({
      platform: 'win32',
      homes: ['C:\\Users\\a'],
      extraRoots: [],
      programFiles: 'C:\\Program Files',
    }).map((p) => `${p.base}\\${p.segments.join('\\')}`);
    expect(win).toEqual(
      expect.arrayContaining([
        'C:\\Program Files\\nodejs\\node_modules',
        'C:\\Users\\a\\AppData\\Roaming\\npm\\node_modules',
        'C:\\Users\\a\\AppData\\Local\\pnpm\\global\\*\\node_modules',
        'C:\\Users\\a\\AppData\\Local\\Yarn\\Data\\global\\node_modules',
      ]),
    );
  });

  it('derives bin and shim dirs from the root path', () => {
    const h = '/home/u';
    expect(
      binDirsFor(
        { path: `${h}/.nvm/versions/node/v22/lib/node_modules`, manager: 'nvm', layout: 'npm', home: h },
        'linux',
      ),
    ).toEqual([`${h}/.nvm/versions/node/v22/lib/node_modules/.bin`, `${h}/.nvm/versions/node/v22/bin`]);
    expect(
      binDirsFor(
        { path: `${h}/.local/share/pnpm/global/5/node_modules`, manager: 'pnpm', layout: 'pnpm', home: h },
        'linux',
      ),
    ).toContain(`${h}/.local/share/pnpm`);
    expect(
      binDirsFor(
        { path: `${h}/.config/yarn/global/node_modules`, manager: 'yarn', layout: 'yarn', home: h },
        'linux',
      ),
    ).toContain(`${h}/.yarn/bin`);
    expect(
      binDirsFor(
        { path: `${h}/.bun/install/global/node_modules`, manager: 'bun', layout: 'bun', home: h },
        'linux',
      ),
    ).toContain(`${h}/.bun/bin`);
    expect(
      shimDirsFor(
        {
          path: `${h}/.volta/tools/image/packages/x/lib/node_modules`,
          manager: 'volta',
          layout: 'npm',
          home: h,
        },
        'linux',
      ),
    ).toEqual([`${h}/.volta/bin`]);
    expect(
      shimDirsFor(
        { path: `${h}/.asdf/installs/nodejs/20/lib/node_modules`, manager: 'asdf', layout: 'npm', home: h },
        'linux',
      ),
    ).toEqual([`${h}/.asdf/shims`]);
  });
});

describe('expandHome (path globs with ~)', () => {
  it('expands ~/ and ~\\ for every home, keeps other globs and escapes', () => {
    expect(expandHome('~/.local/share/claude/versions/*', ['/home/a', '/root/'])).toEqual([
      '/home/a/.local/share/claude/versions/*',
      '/root/.local/share/claude/versions/*',
    ]);
    expect(expandHome('~\\AppData\\Local\\AnthropicClaude\\*', ['C:\\Users\\a'])).toEqual([
      'C:/Users/a/AppData/Local/AnthropicClaude/*',
    ]);
    expect(expandHome('~/odd\\*name', ['/home/a'])).toEqual(['/home/a/odd\\*name']);
    expect(expandHome('/opt/claude/**', ['/home/a'])).toEqual(['/opt/claude/**']);
    expect(expandHome('~user/x', ['/home/a'])).toEqual(['~user/x']);
  });
});
