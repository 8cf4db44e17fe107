"""A virtual BMC for one lab guest, speaking IPMI v2.0 (lanplus) on the lab bridge.

Run as ``python -m hacloud_lab.bmc CONFIG`` inside the lab namespace. The BMC is the guest's
power supply: chassis power off kills the guest's process group at once (pulling the plug),
power on boots it, status reports whether it runs. Every power action is logged with a
timestamp to stdout, so a fence can be timed and confirmed from outside the cluster.

CONFIG (JSON): guest (path of the guest's JSON), address, port, username, password_file,
pidfile, power_on (boot the guest when the BMC starts).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hacloud_lab import guest


def log(message: str) -> None:
    print(f"{time.time():.3f} {message}", flush=True)


def make_bmc(config: dict[str, Any]) -> Any:
    # pyghmi is imported here, not at module import: only the BMC daemon needs it.
    from pyghmi.ipmi.bmc import Bmc  # type: ignore[import-untyped]

    guest_config = guest.GuestConfig.load(Path(config["guest"]))
    password = Path(config["password_file"]).read_text(encoding="utf-8").strip()

    class GuestBmc(Bmc):  # type: ignore[misc]
        def get_power_state(self) -> str:
            return "on" if guest.running_pgid(guest_config) is not None else "off"

        def power_off(self) -> int:
            was_on = guest.kill(guest_config)
            log(f"power off {guest_config.name} (was {'on' if was_on else 'off'})")
            return 0

        def power_on(self) -> int:
            pgid = guest.start(guest_config)
            log(f"power on {guest_config.name} (pgid {pgid})")
            return 0

        def power_cycle(self) -> int:
            guest.kill(guest_config)
            guest.start(guest_config)
            log(f"power cycle {guest_config.name}")
            return 0

        def power_reset(self) -> int:
            return self.power_cycle()

        def power_shutdown(self) -> int:
            # No ACPI in user-mode Linux: a soft off is a hard off here.
            return self.power_off()

        def get_boot_device(self) -> str:
            return "default"

    return GuestBmc({config["username"]: password}, port=int(config["port"]), address=config["address"])


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    Path(config["pidfile"]).write_text(f"{os.getpid()}\n")
    bmc = make_bmc(config)
    log(f"BMC for {config['guest']} listening on {config['address']}:{config['port']}")
    if config.get("power_on"):
        bmc.power_on()
    bmc.listen()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
