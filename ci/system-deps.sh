#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when they are missing.
# redis-server: the tests' own Redis; prometheus: promtool and a real scrape test;
# bubblewrap: the unprivileged runtime test; systemd: systemd-analyze verify.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus >/dev/null || need+=(prometheus)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "system-deps: missing Debian packages: ${need[*]}" >&2
  echo "system-deps: install them (sudo apt-get install ${need[*]}) and run make again" >&2
  exit 1
fi
