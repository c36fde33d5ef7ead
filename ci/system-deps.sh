#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, when they are missing.
# redis-server: the tests' own Redis; prometheus: promtool and a real scrape test;
# bubblewrap, util-linux (setpriv), python3-venv: the unprivileged runtime test;
# systemd: systemd-analyze verify; redis-tools: the documented redis-cli producer.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus >/dev/null || need+=(prometheus)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v setpriv >/dev/null || need+=(util-linux)
# the unprivileged runtime test installs the wheel into a venv of the system Python
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
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
