/**
 * Owns the list of sensors the daemon starts, sorted by name: adding a sensor is its module, its
 * observation type, and one line here (osquery's REGISTER). The daemon (src/daemon/deps.ts) keeps
 * the enabled ones and calls `create` with the shared dependencies.
 */

import type { Logger } from '../common/logger.js';
import type { Platform } from '../common/platform-paths.js';
import type { UserDirectory } from '../common/users.js';
import type { Config } from '../config/settings.js';
import type { FileFactCaches } from './file-facts.js';
import type { FuseExeReader } from './fuse-exe.js';
import { InstallSensor } from './install-sensor.js';
import { ProcessSensor } from './process-sensor.js';
import { createEsloggerSource } from './process-sources/eslogger-source.js';
import { ExecEventsSource } from './process-sources/exec-events-source.js';
import type { ProcessSource } from './process-sources/process-source.js';
import { ProcfsSource } from './process-sources/procfs-source.js';
import { PsListSource } from './process-sources/pslist-source.js';
import { createWindowsStartSource } from './process-sources/windows-start-source.js';
import type { ObservationHandler, Sensor } from './sensor.js';

/** What every sensor factory receives from the composition root. */
export interface SensorDeps {
  readonly config: Config;
  readonly users: UserDirectory;
  readonly platform: Platform;
  /** Every local user's home (install roots). */
  readonly homes: () => string[];
  /** What executables' bytes said, shared with the pre-exec listener (file-facts.ts). */
  readonly fileFacts?: FileFactCaches;
  /** Reads executables on a user's own FUSE mount as that user (fuse-exe.ts; root on Linux only). */
  readonly fuseExe?: FuseExeReader;
  readonly onObservation: ObservationHandler;
  /** Already a child logger named `sensor.<name>`. */
  readonly logger: Logger;
}

export interface SensorRegistration {
  readonly name: string;
  /** Whether the config turns this sensor on. */
  enabled(config: Config): boolean;
  create(deps: SensorDeps): Sensor;
}

/**
 * The process source the config asks for: auto = procfs on Linux, eslogger on macOS, the WMI
 * process start trace on Windows. With exec events on (`sensors.process.exec_events` auto), Linux's
 * procfs scan is fed by the kernel's exec events, and the eslogger / windows-start sources run
 * their program; each falls back to polling by itself (procfs / ps-list) when it cannot listen.
 * With exec events off, those two are plain ps-list polling.
 */
export function processSourceFor(config: Config, platform: Platform, logger: Logger): ProcessSource {
  const kind = config['sensors.process.source'];
  const events = config['sensors.process.exec_events'] === 'auto';
  const program = config['sensors.process.exec_program'];
  if (kind === 'procfs' || (kind === 'auto' && platform === 'linux')) {
    if (platform === 'linux' && events) return new ExecEventsSource({ logger });
    return new ProcfsSource();
  }
  const streamed =
    kind === 'auto'
      ? platform === 'darwin'
        ? 'eslogger'
        : platform === 'win32'
          ? 'windows-start'
          : null
      : kind;
  if (events && streamed === 'eslogger') return createEsloggerSource({ logger, program });
  if (events && streamed === 'windows-start') return createWindowsStartSource({ logger, program });
  return new PsListSource();
}

export const SENSORS: readonly SensorRegistration[] = [
  {
    name: 'install',
    enabled: (c) => c['sensors.install.enabled'],
    create: (d) =>
      new InstallSensor({
        users: d.users,
        platform: d.platform,
        onObservation: d.onObservation,
        rescanCron: d.config['sensors.install.rescan_cron'],
        extraRoots: d.config['sensors.install.extra_roots'],
        homes: d.homes,
        systemRoots: d.config['sensors.install.system_roots'],
        logger: d.logger,
      }),
  },
  {
    name: 'process',
    enabled: (config) => config['sensors.process.enabled'],
    create: (deps) =>
      new ProcessSensor({
        source: processSourceFor(deps.config, deps.platform, deps.logger),
        users: deps.users,
        onObservation: deps.onObservation,
        intervalMs: deps.config['sensors.process.interval_ms'],
        logger: deps.logger,
        ...(deps.fileFacts ? { fileFacts: deps.fileFacts } : {}),
        ...(deps.fuseExe ? { fuse: deps.fuseExe } : {}),
      }),
  },
];
