// toolguard MSI post-install step, run by the bundled node.exe as LocalSystem (deferred custom
// action "SecureAndRecover" in installers/windows/toolguard.wxs):
//   node.exe win-setup.cjs
// Sets the service's SCM recovery: restart after 5 s, 5 s, then 60 s; reset the count after a day.
// (The data dir is ACL'd earlier, before any file is installed: custom action LockDataDir.)
// CommonJS (.cjs) with no imports from the app, so it runs whatever the app's module type is.
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

/** The commands this step runs, exported as data so the Linux CI test can check them. */
function setupCommands(systemRoot) {
  const sys32 = path.win32.join(systemRoot, 'System32');
  return [
    [
      path.win32.join(sys32, 'sc.exe'),
      ['failure', 'toolguard', 'reset=', '86400', 'actions=', 'restart/5000/restart/5000/restart/60000'],
    ],
  ];
}

if (require.main === module) {
  for (const [cmd, args] of setupCommands(process.env.SystemRoot || 'C:\\Windows')) {
    execFileSync(cmd, args, { stdio: 'inherit', windowsHide: true });
  }
}

module.exports = { setupCommands };
