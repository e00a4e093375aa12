#!/usr/bin/env bash
# Install and start what routeflow needs on Debian 12, idempotently (run as root).
set -euo pipefail

# chromium and its driver: the web view's browser test (headless, offline); etcd-server: a server pair's NIB.
PACKAGES=(openvswitch-switch frr frr-pythontools bird2 iproute2 iputils-ping traceroute tcpdump procps python3-venv chromium chromium-driver etcd-server)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: must run as root (namespaces, Open vSwitch, FRR)" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-system: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Open vSwitch: userspace datapath only (no kernel module here), so start the
# daemons directly; ovs-ctl skips the missing module.
if ! ovs-vsctl --timeout=3 show >/dev/null 2>&1; then
  echo "setup-system: starting Open vSwitch"
  # The daemons outlive this script: they must not inherit its open files (a lock
  # held by whoever runs it, e.g. `flock /run/routeflow-stack.lock make test`, would
  # then be held for as long as OVS runs).
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"
    done
    exec /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random
  ) >/dev/null 2>&1 || true
  ovs-vsctl --timeout=10 show >/dev/null
fi
mkdir -p /run/routeflow
