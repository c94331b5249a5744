/**
 * Owns the list of guardctl commands, sorted by name: adding a command is one module in
 * src/cli/commands/ and one line here.
 */
import type { GuardctlCommand } from './command.js';
import { configCommand } from './commands/config.js';
import { doctorCommand } from './commands/doctor.js';
import { eventsCommand } from './commands/events.js';
import { explainCommand } from './commands/explain.js';
import { packageCommand } from './commands/package.js';
import { policyDiffCommand } from './commands/policy-diff.js';
import { policyInitCommand } from './commands/policy-init.js';
import { policyKeygenCommand } from './commands/policy-keygen.js';
import { policyLintCommand } from './commands/policy-lint.js';
import { policyClearShadowCommand, policyPromoteCommand } from './commands/policy-promote.js';
import { policyPublishCommand } from './commands/policy-publish.js';
import { policyReloadCommand } from './commands/policy-reload.js';
import { policyShowCommand } from './commands/policy-show.js';
import { policySignCommand } from './commands/policy-sign.js';
import { policyTestCommand } from './commands/policy-test.js';
import { policyVerifyCommand } from './commands/policy-verify.js';
import { quarantineListCommand } from './commands/quarantine-list.js';
import { quarantineRestoreCommand } from './commands/quarantine-restore.js';
import { statusCommand } from './commands/status.js';

// biome-ignore format: one command per line keeps additions one-line diffs
export const COMMANDS: readonly GuardctlCommand[] = [
  configCommand,
  doctorCommand,
  eventsCommand,
  explainCommand,
  packageCommand,
  policyClearShadowCommand,
  policyDiffCommand,
  policyInitCommand,
  policyKeygenCommand,
  policyLintCommand,
  policyPromoteCommand,
  policyPublishCommand,
  policyReloadCommand,
  policyShowCommand,
  policySignCommand,
  policyTestCommand,
  policyVerifyCommand,
  quarantineListCommand,
  quarantineRestoreCommand,
  statusCommand,
];
