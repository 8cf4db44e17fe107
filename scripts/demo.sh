#!/usr/bin/env bash
# The newcomer's demo (as root, on Debian/Ubuntu): set everything up, build a real two-node
# HA pair in the local lab (user-mode Linux guests with the DRBD module, virtual BMCs), write
# records through the virtual IP, move the service to the other node and read them back, then
# power the active node off behind the cluster's back and measure the failover from a client.
# About 6 minutes the first time (the guest image is built once and cached).
# The lab keeps running afterwards; stop it with `.venv/bin/hacloud down -y -f demo/hacloud.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup >/dev/null
HACLOUD="$PWD/.venv/bin/hacloud"
WORK="${1:-demo}"
mkdir -p "$WORK"
cd "$WORK"
[ -f hacloud.yaml ] || "$HACLOUD" init --provider lab

echo "== hacloud up: guest image, network, virtual BMCs, guests, DRBD, corosync, Pacemaker"
"$HACLOUD" up -y
"$HACLOUD" status

echo "== a client writes three records through the VIP (acknowledged only after fsync)"
for i in 1 2 3; do "$HACLOUD" lab exec -- curl -sS -X POST --data "record $i" http://192.0.2.100:8080/records; echo; done
"$HACLOUD" lab exec -- curl -sS http://192.0.2.100:8080/health; echo

echo "== planned failover to the other node"
"$HACLOUD" failover -y
"$HACLOUD" lab exec -- curl -sS http://192.0.2.100:8080/health; echo
echo "record 2 read back from the other node: $("$HACLOUD" lab exec -- curl -sS http://192.0.2.100:8080/records/2)"

echo "== unplanned: pull the active node's plug; a client measures RTO and checks RPO = 0"
"$HACLOUD" fence-test -y --method power

echo "== a second 'hacloud up' changes nothing"
"$HACLOUD" up -y
echo
echo "the pair keeps running. Try: .venv/bin/hacloud status -f $WORK/hacloud.yaml"
echo "                             .venv/bin/hacloud ssh node1 -f $WORK/hacloud.yaml"
echo "stop it with:                .venv/bin/hacloud down -y -f $WORK/hacloud.yaml  (--purge: also disks and image)"
