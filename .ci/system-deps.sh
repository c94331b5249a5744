#!/usr/bin/env bash
# Installs the Debian packages the packaging tests need (idempotent; safe to run twice).
#   dpkg-dev      dpkg-deb / dpkg --root for building and installing the .deb into a scratch root
#   rpm           rpmbuild + rpm -qlp for the .rpm
#   wixl msitools wixl builds the .msi on Linux; msiinfo/msiextract list its tables and files
#   systemd       systemd-analyze verify on the units
#   python3       plistlib checks the launchd plist and the .mobileconfig; node-gyp's gyp
#   make g++      node-gyp compiles better-sqlite3 for the bundled Node 24 (installers/node-runtime.sh)
#   binutils      objdump: the glibc version the payload's native files need (package dependency)
#   fakeroot      root-owned payloads when the build does not run as root
#   sqlite3       the collector backup example in docs/deploy/collector.md is tested by hand with it
#   libnss-extrausers  a real NSS source for test/common/users-nss.test.ts (users absent from /etc/passwd)
#   tmux          captures docs/cli-session.txt (guardctl at 100 columns)
#   postgresql    initdb/postgres for the collector's PostgreSQL store tests (test/helpers/postgres.ts
#                 starts a throwaway server per test file; the Debian service itself is not used)
#   e2fsprogs     mkfs.ext4: the loop-mounted ext4 with whole-second timestamps of
#                 test/enforcement/exec-identity-reuse.test.ts; mkfs.ext4, debugfs and dumpe2fs: the
#                 user's ext4 images of test/enforcement/exec-identity-media.test.ts (python3 too:
#                 posix_fadvise to evict a program's pages)
#   btrfs-progs   mkfs.btrfs, btrfs subvolume: a btrfs subvolume read from a user namespace in
#                 test/sensors/mount-trust.test.ts (its files' device is the subvolume's, not mountinfo's)
#   fuse3         fusermount3: a real user's FUSE mount in test/enforcement/exec-deny-fuse-walk.test.ts
#   uidmap        newuidmap/newgidmap: a user's flood of refused execs as their own and a subordinate
#                 uid in test/enforcement/exec-deny-flood.test.ts (unshare --map-auto)
#   chromium      the headless browser of the console's end-to-end tests (test/collector/console-browser.test.ts,
#                 driven by playwright-core with executablePath /usr/bin/chromium: no browser download)
# Prints how long it took (the lead's .ci/run budgets it).
set -euo pipefail
start=$(date +%s)
PKGS=(dpkg-dev rpm wixl msitools systemd python3 make g++ binutils fakeroot sqlite3 libnss-extrausers tmux postgresql e2fsprogs btrfs-progs fuse3 uidmap chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "system-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends -qq "${missing[@]}"
else
  echo "system-deps: all present (${PKGS[*]})"
fi
echo "system-deps: done in $(( $(date +%s) - start )) s"
