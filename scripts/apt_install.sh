#!/usr/bin/env bash
# Source from an install script: `apt_install CMD PACKAGE...` installs Debian packages unless CMD already exists.
# A background `apt-get install` (logging to /tmp/apt.log) may hold the dpkg lock, so it waits for that first.

wait_for_apt() {
  for _ in $(seq 1 180); do
    pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null || return 0
    sleep 5
  done
  echo "$(basename "$0"): apt is still busy after 15 min" >&2
  return 1
}

apt_install() {
  local cmd=$1
  shift
  command -v "$cmd" >/dev/null && return 0
  wait_for_apt
  command -v "$cmd" >/dev/null && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}
