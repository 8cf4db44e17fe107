#!/usr/bin/env bash
# The newcomer's demo: set up, write a lab spec, render every file, check the invariants,
# and let Pacemaker, DRBD and corosync themselves validate what was rendered.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup >/dev/null
WORK="${1:-demo}"
mkdir -p "$WORK"
HACLOUD="$PWD/.venv/bin/hacloud"
cd "$WORK"
[ -f hacloud.yaml ] || "$HACLOUD" init --provider lab
"$HACLOUD" check
"$HACLOUD" render --out out
echo "== crm_verify (Pacemaker validates the whole CIB)"
sed 's/<cib /<cib have-quorum="1" /' out/cib.xml > out/.cib-quorum.xml
crm_simulate -x out/.cib-quorum.xml -u node1 -u node2 -O out/.cib-online.xml >/dev/null
crm_verify -x out/.cib-online.xml -V && echo "cib.xml: valid"
echo "== crm_simulate: start the pair, then fail the node that runs the service"
crm_simulate -x out/.cib-online.xml -S -O out/.cib-started.xml >/dev/null
CIB_file=out/.cib-started.xml crm_attribute -N node1 -n master-drbd_r0 -v 10000 -l reboot
CIB_file=out/.cib-started.xml crm_attribute -N node2 -n master-drbd_r0 -v 10000 -l reboot
crm_simulate -x out/.cib-started.xml -S -O out/.cib-running.xml >/dev/null
ACTIVE=$(CIB_file=out/.cib-running.xml crm_resource --locate -r fs_r0 2>/dev/null | sed -n 's/.*running on: //p')
echo "service runs on ${ACTIVE}; failing it:"
crm_simulate -x out/.cib-running.xml --node-fail "$ACTIVE" -S | sed -n '/Transition Summary/,/^$/p'
echo "== drbdadm (DRBD 8.4, as in the lab) dry-runs 'up r0' as node1"
printf 'include "%s/global_common.conf";\ninclude "%s/*.res";\n' "$PWD/out/node1/etc/drbd.d" "$PWD/out/node1/etc/drbd.d" > out/.drbd.conf
unshare -u sh -c "hostname node1; /usr/lib/drbd/drbdadm-84 -c out/.drbd.conf -d up r0" | sed 's/shared-secret=[^ ]*/shared-secret=(hidden)/'
echo "== files for node1"
find out/node1 -type f | sort
