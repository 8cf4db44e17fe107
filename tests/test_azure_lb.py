"""Debian's azure-lb agent, run for real with the parameters hacloud renders: while it runs the
load balancer's probe port answers, after stop it does not (the LB then sends the VIP's
traffic to the other node). Runs in a network namespace made here, so the listener is nowhere
else."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import REPO, need, render_doc

AGENT = "/usr/lib/ocf/resource.d/heartbeat/azure-lb"
PROBE = "import socket,sys; s=socket.socket(); s.settimeout(2); sys.exit(s.connect_ex(('127.0.0.1', {port})))"

pytestmark = pytest.mark.tools


def test_azure_lb_answers_the_probe_only_while_running(tmp_path: Path) -> None:
    need(AGENT, "nc", "ip")
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    doc = yaml.safe_load((REPO / "templates/init/azure.yaml").read_text())
    doc["vip"]["probe_port"] = 61017
    _, bundle = render_doc(doc)
    prim = next(p for p in ET.fromstring(bundle.cib).iter("primitive") if p.get("type") == "azure-lb")
    params = {
        nv.get("name"): nv.get("value")
        for nv in prim.iter("nvpair")
        if "instance_attributes" in nv.get("id", "")
    }
    assert params == {"port": "61017"}
    ns = f"hactest-azlb{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": f"hacloud-test-{os.getpid()}",
        **{f"OCF_RESKEY_{k}": str(v) for k, v in params.items()},
    }

    def agent(action: str) -> int:
        return subprocess.run(
            ["ip", "netns", "exec", ns, AGENT, action], env=env, capture_output=True, timeout=60
        ).returncode

    def probe() -> int:
        code = PROBE.format(port=params["port"])
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], timeout=30).returncode

    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        assert agent("monitor") == 7 and probe() != 0
        assert agent("start") == 0
        for _ in range(50):  # nc may take a moment to listen
            if probe() == 0:
                break
        assert probe() == 0 and agent("monitor") == 0
        assert agent("stop") == 0
        assert probe() != 0 and agent("monitor") == 7
    finally:
        agent("stop")
        subprocess.run(["ip", "netns", "del", ns], check=False)
