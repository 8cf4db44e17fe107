#!/usr/bin/env bash
# The newcomer's demo (as root, on Debian/Ubuntu): set everything up, start the two-guest lab,
# show that the guests run the real DRBD module and that their virtual BMCs fence for real,
# then render the cluster's files and have Pacemaker, DRBD and corosync validate them.
# The lab keeps running afterwards; stop it with `.venv/bin/hacloud down -f demo/hacloud.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup >/dev/null
HACLOUD="$PWD/.venv/bin/hacloud"
WORK="${1:-demo}"
mkdir -p "$WORK"
cd "$WORK"
[ -f hacloud.yaml ] || "$HACLOUD" init --provider lab

echo "== hacloud up: image (cached after the first run), network, BMCs, guests"
"$HACLOUD" up
"$HACLOUD" status
echo "== each guest runs a real kernel with the DRBD module"
for n in node1 node2; do "$HACLOUD" lab ssh "$n" -- 'echo "$(hostname): $(head -1 /proc/drbd)"'; done

echo "== node1 fences node2 with the stock fence_ipmilan agent through node2's virtual BMC"
"$HACLOUD" lab ssh node1 -- 'umask 077; cat > /root/bmc-node2.secret' < .hacloud/demo/bmc-node2.secret
FENCE="fence_ipmilan --ip 192.0.2.202 --username admin --lanplus --password-script 'cat /root/bmc-node2.secret'"
"$HACLOUD" lab ssh node1 -- "$FENCE -o off 2>/dev/null"
"$HACLOUD" status
"$HACLOUD" lab ssh node1 -- "$FENCE -o on 2>/dev/null"

echo "== the cluster configuration hacloud will install, checked and validated"
"$HACLOUD" check
"$HACLOUD" render --out out
sed 's/<cib /<cib have-quorum="1" /' out/cib.xml > out/.cib-quorum.xml
crm_simulate -x out/.cib-quorum.xml -u node1 -u node2 -O out/.cib-online.xml >/dev/null
crm_verify -x out/.cib-online.xml -V && echo "cib.xml: valid (crm_verify)"
crm_simulate -x out/.cib-online.xml -S -O out/.cib-started.xml >/dev/null
for n in node1 node2; do CIB_file=out/.cib-started.xml crm_attribute -N "$n" -n master-drbd_r0 -v 10000 -l reboot; done
crm_simulate -x out/.cib-started.xml -S -O out/.cib-running.xml >/dev/null
ACTIVE=$(CIB_file=out/.cib-running.xml crm_resource --locate -r fs_r0 2>/dev/null | sed -n 's/.*running on: //p')
echo "crm_simulate: the service runs on ${ACTIVE}; failing that node:"
crm_simulate -x out/.cib-running.xml --node-fail "$ACTIVE" -S | sed -n '/Transition Summary/,/^$/p'
echo "lab still running: try '.venv/bin/hacloud lab ssh node1 -f $WORK/hacloud.yaml'; stop it with"
echo "  .venv/bin/hacloud down -f $WORK/hacloud.yaml   (add --purge to delete disks and the image)"
