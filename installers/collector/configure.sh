#!/bin/sh
# guard-collector's host setup, shared by the .deb postinst and the .rpm %post (installed as
# /opt/guard-collector/lib/configure.sh): the config dir, and the two secrets the unit loads as
# credentials, generated once if missing (32 random bytes, base64, root:root 0600). Idempotent.
#   sh configure.sh [ROOT]   ROOT: a prefix for every path (dpkg --root, DPKG_ROOT); default /
set -e
R="${1:-}"

# new_secret FILE: 32 random bytes, base64, readable by root only.
new_secret() {
  if [ ! -s "$1" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 >"$1")
  fi
  chown root:root "$1"
  chmod 0600 "$1"
}

mkdir -p "$R/etc/guard-collector"
chown root:root "$R/etc/guard-collector"
chmod 0755 "$R/etc/guard-collector"
new_secret "$R/etc/guard-collector/enroll-secret"
new_secret "$R/etc/guard-collector/admin-token"
