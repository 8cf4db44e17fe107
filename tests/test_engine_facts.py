"""What the engine reads before it acts (a node's facts, the service's own limits), `plan` on a
fresh pair, the health wait's fallbacks, and the session's lock and BMC passwords: on the
scripted nodes (tests/doubles), without root, guests or HA tools.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from doubles.node import fixture
from test_engine_double import Pair

from hacloud.deploy.facts import gather, node_facts, pacemaker_seconds, systemd_seconds
from hacloud.deploy.session import ClusterLock, fence_passwords
from hacloud.errors import HacloudError
from hacloud.spec.inventory import NodeFacts, ServiceLimits
from hacloud.spec.workspace import Workspace

# ---------------------------------------------------------------- facts


@pytest.mark.parametrize(
    ("os_line", "family"),
    [
        # /etc/os-release ID and ID_LIKE of each family's distributions (os-release(5))
        ("debian ", "debian"),
        ("ubuntu debian", "debian"),
        ("rocky rhel centos fedora", "rhel"),
        ("sles suse", "suse"),
        ("opensuse-leap suse opensuse", "suse"),
    ],
)
def test_the_os_family_comes_from_os_release(os_line: str, family: str) -> None:
    pair = Pair()
    node = pair.node("node1")
    node.state.os_line = os_line
    facts = gather(node, [])
    assert facts.family == family and facts.os_id == os_line.split(maxsplit=1)[0]
    assert facts.package_manager == "apt-get" and facts.pacemaker == "2.1.5"


def test_the_drbd_generation_comes_from_proc_drbd() -> None:
    for version, want in (("8.4", "8.4"), ("9", "9")):
        pair = Pair()
        pair.cluster.drbd = version
        assert gather(pair.node("node2"), []).drbd == want


def test_checksums_name_what_is_there_and_what_is_not() -> None:
    pair = Pair()
    pair.up()
    facts = gather(pair.node("node1"), ["/etc/corosync/corosync.conf", "/etc/nothing-here"])
    assert facts.sums["/etc/nothing-here"] is None
    assert (
        facts.sums["/etc/corosync/corosync.conf"]
        == pair.node("node1").state.files["/etc/corosync/corosync.conf"].sha256
    )
    assert facts.services == {"corosync": ("enabled", "active"), "pacemaker": ("enabled", "active")}


def test_an_ocf_agent_advises_its_own_start_and_stop_timeouts() -> None:
    """The real pgsql agent's meta-data (resource-agents) advises start and stop 120s."""
    pair = Pair()
    node = pair.node("node1")
    node.state.service_text = fixture("agent-pgsql-meta-data.xml")
    facts = gather(node, [], service="ocf:heartbeat:pgsql")
    assert facts.service == ServiceLimits("ocf:heartbeat:pgsql", 120, 120)
    node.state.service_text = ""  # the agent is not installed yet: nothing known
    assert gather(node, [], service="ocf:heartbeat:pgsql").service is None


@pytest.mark.parametrize(
    ("show", "limits"),
    [
        # `systemctl show -p ...` prints Key=Value, time spans in systemd.time(7) form
        (
            "LoadState=loaded\nType=notify\nRemainAfterExit=no\n"
            "TimeoutStartUSec=1min 30s\nTimeoutStopUSec=infinity",
            ServiceLimits("systemd:postgresql.service", 90, None, False),
        ),
        (
            "LoadState=loaded\nType=oneshot\nRemainAfterExit=yes\n"
            "TimeoutStartUSec=infinity\nTimeoutStopUSec=1min 30s",
            ServiceLimits("systemd:postgresql.service", None, 90, True),
        ),
        # show answers for a unit that does not exist too, with systemd's defaults
        ("LoadState=not-found\nType=simple\nTimeoutStartUSec=1min 30s\nTimeoutStopUSec=1min 30s", None),
        ("LoadState=loaded\nTimeoutStartUSec=soon\nTimeoutStopUSec=1s", None),
    ],
)
def test_a_systemd_unit_sets_its_own_limits(show: str, limits: ServiceLimits | None) -> None:
    pair = Pair()
    node = pair.node("node1")
    node.state.service_text = show
    assert gather(node, [], service="systemd:postgresql.service").service == limits


@pytest.mark.parametrize(
    ("text", "seconds"),
    # systemd.time(7): "2h" = 7200 s, "1min 30s" = 90 s, "1y" = 365.25 days; rounded up
    [("2h", 7200), ("1min 30s", 90), ("5min 20s", 320), ("1y", 31557600), ("250ms", 1), ("infinity", None)],
)
def test_systemd_time_spans(text: str, seconds: int | None) -> None:
    assert systemd_seconds(text) == seconds


def test_pacemaker_intervals() -> None:
    # Pacemaker Explained, "Specifying time intervals": plain numbers are seconds
    assert [pacemaker_seconds(t) for t in ("120s", "2min", "120", "500ms", "1h", "soon", "")] == [
        120,
        120,
        120,
        1,
        3600,
        0,
        0,
    ]


def test_the_primary_interface_holds_the_nodes_address() -> None:
    pair = Pair()
    node1 = pair.inventory.nodes[0]
    host = gather(pair.node("node1"), [])
    host.addresses["198.51.100.11"] = "eth1"  # the second link's address on another interface
    facts = node_facts(host, node1)
    assert facts.primary_interface == "eth0"  # the first link, 192.0.2.11, is on eth0
    assert facts.corosync_log_dir == "/var/log/cluster" and facts.drbd == "9"
    # nothing read from the node: what the inventory knew stays
    old = dataclasses.replace(node1, facts=NodeFacts(drbd="8.4", primary_interface="bond0"))
    empty = dataclasses.replace(host, addresses={}, default_interface=None, drbd=None, log_dirs=[])
    kept = node_facts(empty, old)
    assert kept.primary_interface == "bond0" and kept.drbd == "8.4"


# ---------------------------------------------------------------- plan, and the health wait


def test_plan_on_a_fresh_pair_lists_everything_and_changes_nothing() -> None:
    pair = Pair()
    changes = pair.up(apply=False)
    assert "cluster: cib: apply the whole configuration once the cluster runs" in changes
    assert any(c.startswith("node1: drbd: create metadata") for c in changes)
    assert all(s.startswith("would: ") for s in pair.said)
    assert not pair.cluster.ran(r"^put |create-md|wipefs -a|^systemctl|^drbdadm up|cibadmin --patch")
    assert all(not n.state.files for n in pair.cluster.nodes.values())


def test_the_health_wait_asks_the_other_node_when_the_first_cannot_answer() -> None:
    pair = Pair()
    pair.up()
    pair.node("node1").expect(r"^crm_mon", stdout="<pacemaker-result><broken")  # cut off mid-answer
    pair.engine().wait_healthy()
    assert [n for n, _ in pair.cluster.ran(r"^crm_mon")][-2:] == ["node1", "node2"]
    pair.cluster.verify()


def test_a_first_node_that_is_down_does_not_stop_the_health_wait() -> None:
    pair = Pair()
    pair.up()
    pair.node("node1").expect(r"^crm_mon", rc=102)
    pair.engine().wait_healthy()
    pair.cluster.verify()


# ---------------------------------------------------------------- session


def _workspace(tmp_path: Path) -> Workspace:
    spec = Pair().spec
    path = tmp_path / "hacloud.yaml"
    path.write_text("# the spec is parsed by the test\n")
    return Workspace(spec, path)


def test_one_run_per_cluster(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    with ClusterLock(ws):
        with pytest.raises(HacloudError) as err, ClusterLock(ws):
            pass
        assert err.value.code == "HAC412"
    with ClusterLock(ws):  # released on exit
        pass


def test_bmc_passwords_come_from_the_files_the_spec_names(tmp_path: Path) -> None:
    spec = Pair().spec
    (tmp_path / "bmc-node1.secret").write_text("pw-one\n")
    (tmp_path / "bmc-node1.secret").chmod(0o600)
    passwords, missing = fence_passwords(spec, tmp_path)
    assert passwords == {"node1": "pw-one"}
    assert len(missing) == 1 and "no BMC password for node2" in missing[0]
    (tmp_path / "bmc-node2.secret").write_text("pw-two\n")
    (tmp_path / "bmc-node2.secret").chmod(0o644)  # others can read it: refused, never used
    with pytest.raises(HacloudError):
        fence_passwords(spec, tmp_path)


def _spec_file(tmp_path: Path, drbd: str | None = None) -> Path:
    import yaml
    from conftest import onprem_doc

    doc = onprem_doc()
    if drbd:
        doc["targets"] = {"drbd": drbd}
    path = tmp_path / "hacloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    for node in ("node1", "node2"):
        secret = tmp_path / f"bmc-{node}.secret"
        secret.write_text(f"pw-{node}\n")
        secret.chmod(0o600)
    return path


def _session_on(pair_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_session's connections are the scripted nodes (by the endpoint's node name)."""
    monkeypatch.setattr("hacloud.deploy.remote.Connection", lambda ep, *_a, **_k: pair_cluster.nodes[ep.name])


def test_a_session_renders_for_what_the_nodes_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec targets DRBD 9; the nodes run 8.4: what is rendered follows the nodes (DRBD 9
    gives each host a node-id, 8.4 has none: DRBD 9 user guide, "Changes in the configuration")."""
    from doubles.node import Cluster

    from hacloud.deploy.session import open_session, workspace
    from hacloud.provision.provider import get_provider

    ws = workspace(_spec_file(tmp_path))
    inventory = get_provider("onprem").planned_inventory(ws.spec)
    cluster = Cluster(ws.spec, inventory)
    _session_on(cluster, monkeypatch)
    res = "/etc/drbd.d/r0.res"
    nine = open_session(ws, inventory)
    assert "node-id" in next(f for f in nine.bundle.files["node1"] if f.path == res).content.decode()
    cluster.drbd = "8.4"
    session = open_session(ws, inventory)
    assert [n.facts.drbd for n in session.inventory.nodes] == ["8.4", "8.4"]
    assert "node-id" not in next(f for f in session.bundle.files["node1"] if f.path == res).content.decode()
    assert set(session.conns) == {"node1", "node2"} and not session.unreachable
    session.close()


def test_a_session_can_go_on_without_a_node_that_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from doubles.node import Cluster

    from hacloud.deploy.session import open_session, workspace
    from hacloud.provision.provider import get_provider

    ws = workspace(_spec_file(tmp_path))
    inventory = get_provider("onprem").planned_inventory(ws.spec)
    cluster = Cluster(ws.spec, inventory)
    _session_on(cluster, monkeypatch)
    broken = "node2: the SSH connection broke"
    cluster.nodes["node2"].expect(r"echo @os", stderr=broken, rc=255)
    with pytest.raises(HacloudError):
        open_session(ws, inventory)
    cluster.nodes["node2"].expect(r"echo @os", stderr=broken, rc=255)
    session = open_session(ws, inventory, tolerate_down=True)
    assert set(session.conns) == {"node1"} and broken in session.unreachable["node2"]


def test_a_session_without_a_bmc_password_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from doubles.node import Cluster

    from hacloud.deploy.session import open_session, workspace
    from hacloud.provision.provider import get_provider

    spec = _spec_file(tmp_path)
    (tmp_path / "bmc-node2.secret").unlink()
    ws = workspace(spec)
    inventory = get_provider("onprem").planned_inventory(ws.spec)
    _session_on(Cluster(ws.spec, inventory), monkeypatch)
    with pytest.raises(HacloudError) as err:
        open_session(ws, inventory)
    assert err.value.code == "HAC410" and "node2" in err.value.message
