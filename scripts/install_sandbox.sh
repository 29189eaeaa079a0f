#!/usr/bin/env bash
# Install bubblewrap (bwrap), the sandbox glan_utils.evaluation.sandbox runs model-written benchmark code in (idempotent).
# Without a working bwrap, HumanEval/MBPP scoring is refused rather than run with weaker isolation.
set -euo pipefail

source "$(dirname "$0")/apt_install.sh"
apt_install bwrap bubblewrap
bwrap --version
# Installed is not enough: user namespaces (or root) must let it create its namespaces. Say so, don't fail here;
# glan_utils.evaluation.sandbox refuses with the same hint when it runs.
if ! err=$(bwrap --unshare-all --die-with-parent --ro-bind / / true 2>&1); then
  echo "install_sandbox: bwrap is installed but cannot create namespaces: ${err%%$'\n'*}" >&2
  echo "install_sandbox: enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1," \
       "user.max_user_namespaces>0) or, in a container, allow unshare and mount" >&2
fi
