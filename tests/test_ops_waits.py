"""`up` waits for fresh nodes to answer SSH on the one poll helper, with an injected clock: real
TCP connections to loopback ports this test owns, and no real waiting."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from test_provider_seam import closed_port, loopback_spec

from hacloud.errors import HacloudError
from hacloud.ops.converge import SSH_PROBE_INTERVAL, wait_for_ssh
from hacloud.poll import ManualClock
from hacloud.provision.provider import BaseProvider
from hacloud.spec.workspace import Workspace


def with_port(ws: Workspace, port: int) -> Workspace:
    nodes = [n.model_copy(update={"ssh": n.ssh.model_copy(update={"port": port})}) for n in ws.spec.nodes]
    return Workspace(ws.spec.model_copy(update={"nodes": nodes}), ws.spec_path)


def test_a_node_that_answers_is_not_waited_for(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener2 = socket.socket()
        try:
            port = listener.getsockname()[1]
            listener2.bind(("127.0.0.2", port))
            listener2.listen(4)
            ws = with_port(loopback_spec(tmp_path), port)
            clock, said = ManualClock(), []
            wait_for_ssh(ws, BaseProvider().planned_inventory(ws.spec), 300, said.append, clock)
        finally:
            listener2.close()
    assert clock.slept == 0 and said == []


def test_a_node_that_never_answers_fails_after_the_timeout_with_what_to_check(tmp_path: Path) -> None:
    ws = with_port(loopback_spec(tmp_path), closed_port())
    clock, said = ManualClock(), []
    with pytest.raises(HacloudError) as info:
        wait_for_ssh(ws, BaseProvider().planned_inventory(ws.spec), 120, said.append, clock)
    assert info.value.code == "HAC312"
    assert "db1" in info.value.message and "within 120 s" in info.value.message
    assert "security group" in info.value.remedy
    assert 120 <= clock.now <= 120 + SSH_PROBE_INTERVAL  # waited the whole timeout, on the clock
    assert said == [f"waiting for db1 to answer SSH at 127.0.0.1:{ws.spec.nodes[0].ssh.port}"]  # said once


def test_no_wait_without_a_timeout_or_behind_a_jump_host(tmp_path: Path) -> None:
    ws = with_port(loopback_spec(tmp_path), closed_port())
    clock = ManualClock()
    wait_for_ssh(ws, BaseProvider().planned_inventory(ws.spec), 0, print, clock)
    nodes = [
        n.model_copy(update={"ssh": n.ssh.model_copy(update={"jump": "admin@192.0.2.9"})})
        for n in ws.spec.nodes
    ]
    jumped = Workspace(ws.spec.model_copy(update={"nodes": nodes}), ws.spec_path)
    wait_for_ssh(jumped, BaseProvider().planned_inventory(jumped.spec), 120, print, clock)
    assert clock.now == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)")
def test_the_wait_probes_from_the_namespace_ssh_will_start_in(tmp_path: Path) -> None:
    """An emulated cloud's nodes are reached from its admin namespace: the port answers there
    (and nowhere in this namespace), so probing from here would wait out the timeout."""
    from hacloud.deploy.remote import socket_in_namespace

    ns = f"hactest-wait{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        port = closed_port()  # free here; the listeners live only inside the namespace
        listen = [
            socket_in_namespace(ns, lambda a=a: socket.create_server((a, port)))
            for a in ("127.0.0.1", "127.0.0.2")
        ]
        with listen[0], listen[1]:
            ws = with_port(loopback_spec(tmp_path), port)
            inventory = BaseProvider().planned_inventory(ws.spec)
            clock = ManualClock()
            wait_for_ssh(ws, inventory, 300, print, clock, namespace_of=lambda node: ns)
            assert clock.slept == 0
            with pytest.raises(HacloudError) as info:
                wait_for_ssh(ws, inventory, 30, print, ManualClock())
            assert info.value.code == "HAC312"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
