/** The collector's settings table: loader precedence, parsing, and docs/collector.md listing every key. */
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  COLLECTOR_SETTINGS,
  collectorEnvVar,
  loadCollectorConfig,
  parseCollectorArgs,
  parseListen,
} from '../../src/collector/collector-config.js';
import { optionsFromConfig } from '../../src/collector/collector-main.js';
import { isGuardError } from '../../src/common/errors.js';
import { collectorTempDir } from '../helpers/collector.js';

describe('collector config', () => {
  it('applies defaults < file < env < flags', () => {
    const file = join(collectorTempDir('tg-ccfg-'), 'c.json');
    writeFileSync(file, JSON.stringify({ rate_limit: 5, rate_burst: 7, silent_after_s: 60 }));
    const cfg = loadCollectorConfig(parseCollectorArgs(['--config', file, '--rate-limit=9']), {
      [collectorEnvVar('rate_limit')]: '8',
      [collectorEnvVar('rate_burst')]: '6',
    });
    expect(cfg.rate_limit).toBe(9);
    expect(cfg.rate_burst).toBe(6);
    expect(cfg.silent_after_s).toBe(60);
    expect(cfg.listen).toBe('127.0.0.1:8443');
    expect(Object.isFrozen(cfg)).toBe(true);
  });

  it.each([
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:8443', { host: '::1', port: 8443 }],
    ['collector.internal:443', { host: 'collector.internal', port: 443 }],
  ])('parses --listen %s', (listen, expected) => {
    expect(parseListen(listen)).toEqual(expected);
  });

  it.each(['8443', ':8443', 'host:70000', 'a b:1'])(
    'refuses --listen %s with GUARD_CONFIG_INVALID_VALUE',
    (listen) => {
      try {
        parseListen(listen);
        expect.unreachable();
      } catch (err) {
        expect(isGuardError(err, 'GUARD_CONFIG_INVALID_VALUE')).toBe(true);
      }
    },
  );

  it('ingest_workers defaults to CPUs - 1 (at most 2) and refuses values outside 0-16', () => {
    const cpus = availableParallelism();
    expect(loadCollectorConfig(parseCollectorArgs([]), {}).ingest_workers).toBe(Math.min(2, cpus - 1));
    expect(loadCollectorConfig(parseCollectorArgs(['--ingest-workers', '0']), {}).ingest_workers).toBe(0);
    for (const bad of ['17', '-1', 'two'])
      try {
        loadCollectorConfig(parseCollectorArgs([`--ingest-workers=${bad}`]), {});
        expect.unreachable();
      } catch (err) {
        expect(isGuardError(err, 'GUARD_CONFIG_INVALID_VALUE')).toBe(true);
      }
  });

  it('forwarder formats and the HEC settings reach the sinks; a bad channel or format is refused', () => {
    const env = {
      [collectorEnvVar('enroll_secret')]: 'e'.repeat(24),
      [collectorEnvVar('admin_token')]: 'a'.repeat(24),
      [collectorEnvVar('splunk_hec_token')]: 'hec-token',
    };
    const flags = [
      ...['--ndjson-out', '/tmp/x.ndjson', '--ndjson-format', 'ecs'],
      ...['--splunk-hec-url', 'https://splunk.test:8088', '--splunk-format', 'ocsf'],
      ...['--splunk-index', 'endpoint', '--splunk-source', 'tg', '--splunk-hec-ack', 'on'],
      ...['--splunk-hec-channel', '0f0e0d0c-0b0a-4908-8706-050403020100', '--splunk-hec-ack-timeout-s', '30'],
      ...['--splunk-hec-gzip', 'off'],
    ];
    const o = optionsFromConfig(loadCollectorConfig(parseCollectorArgs(flags), env));
    expect(o.forwarders?.ndjson?.format).toBe('ecs');
    expect(o.forwarders?.splunkHec).toMatchObject({
      format: 'ocsf',
      index: 'endpoint',
      source: 'tg',
      sourcetype: 'toolguard:event',
      ack: true,
      channel: '0f0e0d0c-0b0a-4908-8706-050403020100',
      ackTimeoutMs: 30_000,
      gzip: false,
    });
    const defaults = optionsFromConfig(
      loadCollectorConfig(parseCollectorArgs(['--splunk-hec-url', 'https://splunk.test:8088']), env),
    );
    expect(defaults.forwarders?.splunkHec).toMatchObject({ ack: false, gzip: true, index: undefined });
    expect(() =>
      optionsFromConfig(
        loadCollectorConfig(
          parseCollectorArgs(['--splunk-hec-url', 'https://s.test', '--splunk-hec-channel', 'not-a-guid']),
          env,
        ),
      ),
    ).toThrow(/splunk_hec_channel/);
    try {
      loadCollectorConfig(parseCollectorArgs(['--ndjson-format', 'cef']), {});
      expect.unreachable();
    } catch (err) {
      expect(isGuardError(err, 'GUARD_CONFIG_INVALID_VALUE')).toBe(true);
    }
  });

  it('reads the console viewer token from its file and refuses one that is short or equals another secret', () => {
    const dir = collectorTempDir('tg-ccfg-');
    const env = {
      [collectorEnvVar('enroll_secret')]: 'e'.repeat(24),
      [collectorEnvVar('admin_token')]: 'a'.repeat(24),
    };
    const viewerFile = join(dir, 'viewer');
    writeFileSync(viewerFile, `${'v'.repeat(24)}\n`);
    const o = optionsFromConfig(
      loadCollectorConfig(
        parseCollectorArgs(['--console-viewer-token-file', viewerFile, '--console-session-ttl-s', '600']),
        env,
      ),
    );
    expect(o.consoleViewerToken).toBe('v'.repeat(24));
    expect(o.consoleSessionTtlS).toBe(600);
    expect(optionsFromConfig(loadCollectorConfig(parseCollectorArgs([]), env)).consoleViewerToken).toBe('');
    for (const viewer of ['short', 'a'.repeat(24), 'e'.repeat(24)]) {
      const cfg = loadCollectorConfig(parseCollectorArgs([]), {
        ...env,
        [collectorEnvVar('console_viewer_token')]: viewer,
      });
      expect(() => optionsFromConfig(cfg)).toThrow(
        expect.objectContaining({
          code: 'GUARD_CONFIG_INVALID_VALUE',
          details: { key: 'console_viewer_token' },
        }),
      );
    }
    expect(() => parseCollectorArgs(['--console-viewer-token', 'x'.repeat(24)])).toThrow(
      expect.objectContaining({ code: 'GUARD_CONFIG_INVALID_VALUE' }),
    );
    expect(() => loadCollectorConfig(parseCollectorArgs(['--console-session-ttl-s', '5']), env)).toThrow(
      expect.objectContaining({ code: 'GUARD_CONFIG_INVALID_VALUE' }),
    );
  });

  it('docs/collector.md lists every setting with its environment variable', () => {
    const doc = readFileSync(new URL('../../docs/collector.md', import.meta.url), 'utf8');
    for (const key of Object.keys(COLLECTOR_SETTINGS)) {
      expect(doc).toContain(`| \`${key}\` |`);
      expect(doc).toContain(collectorEnvVar(key));
    }
  });
});
