/**
 * Owns the list of guardctl commands, sorted by name: adding a command is one module in
 * src/cli/commands/ and one line here.
 */
import type { GuardctlCommand } from './command.js';
import { statusCommand } from './commands/status.js';

export const COMMANDS: readonly GuardctlCommand[] = [statusCommand];
