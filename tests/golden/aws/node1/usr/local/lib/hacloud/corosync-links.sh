#!/bin/sh
# Managed by hacloud. Changes made here are replaced by the next `hacloud up`.
# Corosync link 1 runs over a secondary private address of this node's primary interface
# (AWS: a secondary IP of the primary ENI). The cloud assigns it, but only some OS images bring it up by themselves
# (Amazon Linux: ec2-net-utils, SLES: cloud-netconfig, RHEL: nm-cloud-setup when enabled);
# Debian's do not. corosync runs this before it starts (and `hacloud up` when the address
# changes), so knet can bind to it; `ip addr replace` makes a re-run a no-op. /32: the address
# serves corosync only, traffic to the peer follows the primary address's routes.
set -eu
primary=203.0.113.11
dev=$(ip -o -4 addr show | awk -v ip="$primary" '{ split($4, a, "/"); if (a[1] == ip) { print $2; exit } }')
if [ -z "$dev" ]; then
    echo "hacloud: no interface holds $primary, so the corosync link address(es) cannot be added:" 203.0.113.21 >&2
    exit 1
fi
ip addr replace 203.0.113.21/32 dev "$dev"
