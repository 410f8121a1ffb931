#!/usr/bin/env bash
# Install Debian packages for commands that are missing: install-system.sh COMMAND:PACKAGE ...
# Only as root with apt-get (CI and the project's machines); otherwise say what to install.
set -euo pipefail
missing=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system: please install ${missing[*]} (tests that need them will be skipped)" >&2
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
