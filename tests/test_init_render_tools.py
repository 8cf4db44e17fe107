"""The issue's done criterion, as a user runs it: `hacloud init` + `hacloud render` for each
provider produce files that crm_verify, crm_simulate, drbdadm and corosync accept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need
from test_render_tools import _corosync_test, _drbd_conf, _drbdadm
from tools import run, simulate_failover


@pytest.mark.tools
@pytest.mark.parametrize("provider", ["lab", "onprem", "aws", "azure"])
def test_init_render_output_passes_the_real_tools(provider: str, tmp_path: Path) -> None:
    need("crm_verify", "crm_simulate", "drbdadm", "corosync", "ip", "unshare")
    for args in (["init", "--provider", provider], ["render", "--out", "out"]):
        proc = subprocess.run(
            [sys.executable, "-m", "hacloud", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    active, survivor, summary, after = simulate_failover((out / "cib.xml").read_text(), tmp_path / "sim")
    assert f"Fence (off) {active}" in summary or f"Fence (reboot) {active}" in summary
    assert after["fs_r0"] == [("Started", survivor)]

    inventory = json.loads((out / "inventory.json").read_text())
    drbd = "8.4" if provider == "lab" else "9"
    for node in inventory["nodes"]:
        root = out / node["name"]
        conf = _drbd_conf(root)
        run([*_drbdadm(drbd), "-c", str(conf), "dump", "all"])
        up = run(
            [
                "unshare",
                "-u",
                "sh",
                "-c",
                f'hostname {node["name"]} && exec "$@"',
                "sh",
                *_drbdadm(drbd),
                "-c",
                str(conf),
                "-d",
                "up",
                "r0",
            ]
        )
        assert f"{node['replication_address']}:7789" in up.stdout
        text = (root / "etc/corosync/corosync.conf").read_text()
        proc = _corosync_test(text, root / "etc/corosync/authkey", node["links"], tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
