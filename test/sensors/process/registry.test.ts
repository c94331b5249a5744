/** The sensor registry: sorted, one entry per sensor, and the process sensor built from the config. */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/common/logger.js';
import { UserDirectory } from '../../../src/common/users.js';
import { loadConfig } from '../../../src/config/load-config.js';
import { ProcessSensor } from '../../../src/sensors/process-sensor.js';
import { ExecEventsSource } from '../../../src/sensors/process-sources/exec-events-source.js';
import { ExecStreamSource } from '../../../src/sensors/process-sources/exec-stream-source.js';
import { ProcfsSource } from '../../../src/sensors/process-sources/procfs-source.js';
import { PsListSource } from '../../../src/sensors/process-sources/pslist-source.js';
import { processSourceFor, SENSORS } from '../../../src/sensors/registry.js';

describe('sensor registry', () => {
  it('is sorted by name with unique names and includes the process sensor', () => {
    const names = SENSORS.map((s) => s.name);
    expect(names).toEqual([...names].sort());
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain('process');
  });

  it('picks the process source from the config and platform', () => {
    const cfg = (overrides: Record<string, unknown>) =>
      loadConfig({ env: {}, managedPreferencesFile: null, overrides });
    const log = silentLogger();
    expect(processSourceFor(cfg({}), 'linux', log)).toBeInstanceOf(ExecEventsSource);
    expect(processSourceFor(cfg({ 'sensors.process.source': 'procfs' }), 'linux', log)).toBeInstanceOf(
      ExecEventsSource,
    );
    expect(processSourceFor(cfg({ 'sensors.process.exec_events': 'off' }), 'linux', log)).toBeInstanceOf(
      ProcfsSource,
    );
    // macOS and Windows: the streamed exec sources (ps-list underneath until their program runs).
    expect(processSourceFor(cfg({}), 'darwin', log)).toBeInstanceOf(ExecStreamSource);
    expect(processSourceFor(cfg({}), 'darwin', log).details()).toMatchObject({ exec_source: 'eslogger' });
    expect(processSourceFor(cfg({}), 'win32', log).details()).toMatchObject({ exec_source: 'windows-start' });
    expect(processSourceFor(cfg({}), 'darwin', log).kind).toBe('ps-list');
    expect(processSourceFor(cfg({ 'sensors.process.exec_events': 'off' }), 'darwin', log)).toBeInstanceOf(
      PsListSource,
    );
    expect(processSourceFor(cfg({ 'sensors.process.exec_events': 'off' }), 'win32', log)).toBeInstanceOf(
      PsListSource,
    );
    expect(
      processSourceFor(cfg({ 'sensors.process.source': 'eslogger' }), 'linux', log).details(),
    ).toMatchObject({ exec_source: 'eslogger', exec_events: 'idle' });
    expect(processSourceFor(cfg({ 'sensors.process.source': 'ps-list' }), 'linux', log)).toBeInstanceOf(
      PsListSource,
    );

    const config = cfg({ 'sensors.process.interval_ms': 250 });
    const reg = SENSORS.find((s) => s.name === 'process');
    expect(reg?.enabled(config)).toBe(true);
    expect(reg?.enabled(cfg({ 'sensors.process.enabled': false }))).toBe(false);
    const sensor = reg?.create({
      config,
      users: new UserDirectory({ platform: 'linux' }),
      platform: 'linux',
      homes: () => [],
      onObservation: () => undefined,
      logger: silentLogger(),
    });
    expect(sensor).toBeInstanceOf(ProcessSensor);
    expect(sensor?.status().details).toMatchObject({ source: 'procfs', interval_ms: 250 });
  });
});
