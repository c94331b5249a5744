// toolguard MSI post-install step, run by the bundled node.exe as LocalSystem (deferred custom
// action "SecureAndRecover" in installers/windows/toolguard.wxs):
//   node.exe win-setup.cjs "<%ProgramData%\toolguard\.>"
// 1. ACL the data dir to SYSTEM and Administrators only (config, DB, quarantine are not for users).
// 2. Set the service's SCM recovery: restart after 5 s, 5 s, then 60 s; reset the count after a day.
// CommonJS (.cjs) with no imports from the app, so it runs whatever the app's module type is.
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

/** The commands this step runs, exported as data so the Linux CI test can check them. */
function setupCommands(dataDir, systemRoot) {
  const sys32 = path.win32.join(systemRoot, 'System32');
  const dir = dataDir.replace(/[\\/]\.?$/, '');
  return [
    [
      path.win32.join(sys32, 'icacls.exe'),
      [dir, '/inheritance:r', '/grant:r', '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F'],
    ],
    [
      path.win32.join(sys32, 'sc.exe'),
      ['failure', 'toolguard', 'reset=', '86400', 'actions=', 'restart/5000/restart/5000/restart/60000'],
    ],
  ];
}

if (require.main === module) {
  const dataDir = process.argv[2];
  if (!dataDir) {
    process.stderr.write('usage: win-setup.cjs <data dir>\n');
    process.exit(2);
  }
  for (const [cmd, args] of setupCommands(dataDir, process.env.SystemRoot || 'C:\\Windows')) {
    execFileSync(cmd, args, { stdio: 'inherit', windowsHide: true });
  }
}

module.exports = { setupCommands };
