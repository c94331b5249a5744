@echo off
rem guardctl with toolguard's bundled Node runtime. Installed into %SystemRoot%\System32 so it is on
rem every user's PATH; the program itself lives in %ProgramFiles%\toolguard (admin-only writable).
"%ProgramFiles%\toolguard\node\node.exe" "%ProgramFiles%\toolguard\app\bin\guardctl.js" %*
