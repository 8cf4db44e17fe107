"""hacloud: active-standby HA pairs built from DRBD, Corosync, Pacemaker, fencing and a VIP.

The core package never imports a cloud SDK at import time; providers live in their own
packages and are found through the ``hacloud.providers`` entry-point group.
"""

__version__ = "0.1.0"
