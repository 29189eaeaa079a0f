#!/usr/bin/env bash
# Install bubblewrap (bwrap), the sandbox glan_utils.sandbox runs model-written benchmark code in (idempotent).
# Without a working bwrap, HumanEval/MBPP scoring is refused rather than run with weaker isolation.
set -euo pipefail

wait_for_apt() {
  # A background `apt-get install` (logging to /tmp/apt.log) may hold the dpkg lock: wait for it.
  for _ in $(seq 1 180); do
    pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null || return 0
    sleep 5
  done
  echo "install_sandbox: apt is still busy after 15 min" >&2
  return 1
}

if ! command -v bwrap >/dev/null; then
  wait_for_apt
fi
if ! command -v bwrap >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends bubblewrap
fi
bwrap --version
# Installed is not enough: user namespaces (or root) must let it create its namespaces. Say so, don't fail here;
# glan_utils.sandbox refuses with the same hint when it runs.
if ! err=$(bwrap --unshare-all --die-with-parent --ro-bind / / true 2>&1); then
  echo "install_sandbox: bwrap is installed but cannot create namespaces: ${err%%$'\n'*}" >&2
  echo "install_sandbox: enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1," \
       "user.max_user_namespaces>0) or, in a container, allow unshare and mount" >&2
fi
