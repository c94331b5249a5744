/**
 * Owns the macOS exec source: Apple's `eslogger` (macOS 13+, /usr/bin/eslogger) run as
 * `eslogger exec fork exit`, which streams Endpoint Security NOTIFY events as JSON Lines; each
 * exec is read by eslogger-parser.ts into the same RawProcess the Linux exec source produces, plus
 * the code-signing facts macOS validated (team id, signing id, cdhash). Running, restarting and
 * the ps-list fallback are exec-stream-source.ts's.
 *
 * eslogger must run as root and its responsible process (guardd's launch daemon, i.e. the bundled
 * node binary) needs Full Disk Access, which an MDM grants silently with the PPPC payload of
 * service/macos/toolguard.mobileconfig. Without it Endpoint Security refuses the client
 * (es_new_client_result_t ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED; not root: _ERR_NOT_PRIVILEGED):
 * `classifyEsloggerExit` reads that from eslogger's stderr and the source polls with ps-list,
 * trying again every few minutes (the profile may arrive after the package).
 */
import type { Logger } from '../../common/logger.js';
import { ESLOGGER_EVENTS, parseEsloggerLine } from './eslogger-parser.js';
import { ExecStreamSource, type ExecStreamSourceOptions, type ExitRefusal } from './exec-stream-source.js';

/** Where macOS ships eslogger. */
export const ESLOGGER_PATH = '/usr/bin/eslogger';

/**
 * Why eslogger stopped, from its stderr, when waiting briefly will not cure it; else null. Matches
 * the es_new_client_result_t names (EndpointSecurity/ESClient.h) and the wording around TCC.
 */
export function classifyEsloggerExit(stderr: string): ExitRefusal | null {
  if (/NOT_PERMITTED|not permitted|Full Disk Access|TCC/i.test(stderr))
    return {
      code: 'GUARD_EXEC_STREAM_NOT_PERMITTED',
      message:
        'Endpoint Security refused eslogger: guardd needs Full Disk Access (deploy the PPPC payload of toolguard.mobileconfig)',
    };
  if (/NOT_PRIVILEGED|must be run as (root|super-?user)/i.test(stderr))
    return { code: 'GUARD_EXEC_STREAM_NOT_PERMITTED', message: 'eslogger must run as root' };
  if (/TOO_MANY_CLIENTS/.test(stderr))
    return { code: 'GUARD_EXEC_STREAM_NOT_PERMITTED', message: 'Endpoint Security has too many clients' };
  return null;
}

export interface EsloggerSourceOptions extends Omit<ExecStreamSourceOptions, 'spec'> {
  readonly logger: Logger;
  /** The program to run (tests run a stand-in that replays a recorded stream). Default ESLOGGER_PATH. */
  readonly program?: string;
}

/** The eslogger exec source (ps-list until eslogger runs; `kind` says which). */
export function createEsloggerSource(options: EsloggerSourceOptions): ExecStreamSource {
  const { program, ...rest } = options;
  return new ExecStreamSource({
    ...rest,
    spec: {
      kind: 'eslogger',
      program: program || ESLOGGER_PATH,
      args: [...ESLOGGER_EVENTS],
      parse: parseEsloggerLine,
      classifyExit: classifyEsloggerExit,
    },
  });
}
