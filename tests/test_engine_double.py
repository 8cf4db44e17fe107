"""The deploy engine's safety rules and its re-run promise, on two scripted nodes (tests/doubles):
no root, no guests, no network, no HA tools, and every wait on a ManualClock (milliseconds).

Each rule test names the rule it guards; the report of issue 17 lists, for each, the line that
was removed to see it fail.
"""

from __future__ import annotations

import stat
import time
from typing import Any

import pytest
from conftest import onprem_doc, render_doc
from doubles.node import BUSY, Cluster, Disk, File, fixture

from hacloud.deploy.engine import Engine
from hacloud.deploy.remote import RemoteError
from hacloud.errors import HacloudError
from hacloud.poll import ManualClock
from hacloud.provision.provider import NodeNeeds, get_provider

PASSWORDS = {"node1": "bmc-pw-node1", "node2": "bmc-pw-node2"}
DISK = {"node1": "/dev/disk/by-id/wwn-0x500000000000000", "node2": "/dev/disk/by-id/wwn-0x500000000000001"}


class Pair:
    """The test spec (conftest's on-prem spec, fence_ipmilan), its bundle and two scripted nodes."""

    def __init__(self, disk: str = "blank", doc: dict[str, Any] | None = None) -> None:
        self.spec, self.bundle = render_doc(doc or onprem_doc(), PASSWORDS)
        self.inventory = get_provider("onprem").planned_inventory(self.spec)
        self.cluster = Cluster(self.spec, self.inventory, disk=disk)
        self.clock = ManualClock()
        self.said: list[str] = []

    def engine(self, *, apply: bool = True, force: bool = False, needs: NodeNeeds | None = None) -> Engine:
        return Engine(
            self.spec,
            self.inventory,
            self.bundle,
            self.cluster.conns(),  # type: ignore[arg-type]
            self.said.append,
            apply=apply,
            force=force,
            clock=self.clock,
            **({"needs": needs} if needs is not None else {}),
        )

    def up(self, **kw: Any) -> list[str]:
        return [str(c) for c in self.engine(**kw).run_all()]

    def node(self, name: str) -> Any:
        return self.cluster.nodes[name]


def _created(pair: Pair) -> list[tuple[str, str]]:
    return pair.cluster.ran(r"create-md")


# ---------------------------------------------------------------- a whole converge, twice


def test_first_up_builds_the_pair_and_the_second_changes_nothing() -> None:
    pair = Pair()
    started = time.monotonic()
    first = pair.up()
    # what a new pair needs, each once: metadata on both disks, the sync skipped, one mkfs
    assert sorted(n for n, _ in _created(pair)) == ["node1", "node2"]
    assert pair.cluster.timeline[:1] == ["clear-bitmap r0/0"]
    assert [n for n, _ in pair.cluster.ran(r"mkfs\.")] == ["node1"]
    assert "cluster: cib: update crm_config, resources, constraints, rsc_defaults, op_defaults" in first
    assert "node1: drbd: make a ext4 filesystem on r0 (/dev/drbd0)" in first
    # ...and the state it left is what the second run reads: no change at all, planned or applied
    pair.cluster.commands.clear()
    assert pair.up(apply=False) == []
    assert pair.up() == []
    assert not pair.cluster.ran(r"^put |create-md|mkfs|wipefs -a|cibadmin --patch|systemctl enable")
    # every wait ran on the manual clock
    assert time.monotonic() - started < 5


def test_files_land_with_their_mode_and_only_when_their_checksum_differs() -> None:
    pair = Pair()
    pair.up()
    for name, node in pair.cluster.nodes.items():
        for f in pair.bundle.files[name]:
            written: File = node.state.files[f.path]
            assert written.content == f.content, f.path
            assert written.mode == f.mode, f.path
            if f.secret:  # a secret is never readable by group or others
                assert written.mode & (stat.S_IRWXG | stat.S_IRWXO) == 0, (f.path, oct(written.mode))
    secrets = {f.path for f in pair.bundle.files["node1"] if f.secret}
    assert {"/etc/corosync/authkey", "/etc/drbd.d/r0.res", "/etc/hacloud/fencing/node2.secret"} <= secrets
    # someone edits one file on node1: the next run writes that file only, on that node only
    node1 = pair.node("node1")
    node1.state.files["/etc/corosync/corosync.conf"] = File(b"# edited by hand\n", 0o644)
    pair.cluster.commands.clear()
    changes = pair.up()
    assert pair.cluster.ran(r"^put ") == [("node1", "put /etc/corosync/corosync.conf")]
    assert "node1: file: write /etc/corosync/corosync.conf" in changes[0]
    # a changed corosync.conf on a running cluster is reloaded, not restarted
    assert pair.cluster.ran(r"corosync-cfgtool -R") and not pair.cluster.ran(r"^systemctl")


def test_a_secret_is_never_shown_in_a_change() -> None:
    pair = Pair()
    changes = pair.up()
    shown = "\n".join(changes + pair.said)
    for f in pair.bundle.files["node1"]:
        if f.secret:
            assert f"write {f.path} (secret, content not shown)" in shown
    assert all(pw not in shown for pw in PASSWORDS.values())


# ---------------------------------------------------------------- DRBD metadata


def test_create_md_never_goes_over_a_filesystem_without_force() -> None:
    pair = Pair()
    pair.node("node2").state.disks[DISK["node2"]] = Disk.captured("ext4")
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC421"
    assert "node2" in err.value.message and "ext4" in err.value.message
    # every disk was probed before the first create-md: node1's blank disk is untouched too
    assert _created(pair) == [] and not pair.cluster.ran(r"wipefs -a")
    assert pair.node("node2").state.disks[DISK["node2"]].signatures == ["ext4"]


def test_a_partitioned_disk_is_refused_like_a_filesystem() -> None:
    pair = Pair()
    pair.node("node1").state.disks[DISK["node1"]].partitions = 2
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC421" and "2 partition(s)" in err.value.message
    assert _created(pair) == []


def test_force_wipes_then_creates_and_says_so() -> None:
    pair = Pair()
    pair.node("node2").state.disks[DISK["node2"]] = Disk.captured("ext4")
    changes = pair.up(force=True)
    assert any("node2: drbd: create metadata for r0" in c and "--force: wiping ext4" in c for c in changes)
    wipe = pair.cluster.ran(r"wipefs -a")
    assert [n for n, _ in wipe] == ["node2"]
    assert pair.cluster.commands.index(wipe[0]) < pair.cluster.commands.index(("node2", _created(pair)[1][1]))


def test_existing_drbd_metadata_is_never_recreated_not_even_with_force() -> None:
    """dump-md can fail on a disk that has metadata (the module loading, Pacemaker attaching
    it): the drbd signature wipefs sees still protects it."""
    pair = Pair()
    pair.node("node1").state.disks[DISK["node1"]] = Disk.captured("used")  # drbd + ext4
    pair.engine(force=True).read_facts()
    engine = pair.engine(force=True)
    engine.facts = {}
    from hacloud.render.resources import drbd_resources

    res = drbd_resources(pair.spec)[0]
    states = {n: engine._state(n, res) for n in engine.names}
    plan = engine._metadata_plan(res, states)
    assert [p.node for p in plan] == ["node2"]
    assert states["node1"].md == {0: True}


def test_a_disk_the_probe_cannot_read_is_refused_unless_forced() -> None:
    pair = Pair()
    disk = pair.node("node1").state.disks[DISK["node1"]]
    disk.unreadable = (
        f"wipefs: error: {DISK['node1']}: probing initialization failed: No such file or directory\n"
    )
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC417" and "probing initialization failed" in err.value.message
    assert _created(pair) == []
    disk.unreadable = ""  # it reads again: the same run that refused goes through
    disk.signatures = []
    assert pair.up()


def test_a_path_that_is_no_block_device_is_refused() -> None:
    pair = Pair()
    pair.node("node2").state.disks[DISK["node2"]].block = False
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC420" and _created(pair) == []


def test_a_busy_disk_is_asked_again_then_refused_on_the_clock() -> None:
    pair = Pair()
    pair.node("node1").state.busy = 3  # Pacemaker attaching the disk right after a boot
    pair.up()
    assert len(pair.cluster.ran(r"dump-md")) >= 4 and pair.clock.slept >= 3
    pair = Pair()
    pair.node("node1").state.busy = 10_000
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC419" and 30 <= pair.clock.now < 32
    assert BUSY.strip().endswith("busy")


# ---------------------------------------------------------------- the initial sync


def test_clear_bitmap_only_when_both_sides_are_brand_new() -> None:
    """node2 carries metadata that is not brand-new (an interrupted sync left it Inconsistent):
    both sides read Inconsistent, but hacloud does not pick a side."""
    pair = Pair()
    node2 = pair.node("node2")
    node2.state.disks[DISK["node2"]] = Disk.captured("drbd9")
    node2.state.md["r0/0"] = (
        "C0FFEE0000000000:0000000000000000:0000000000000000:0000000000000000:1:1:0:0:0:0:0\n"
    )
    node2.state.dstate["r0/0"] = "Inconsistent"
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC423"
    assert [n for n, _ in _created(pair)] == ["node1"]  # only the disk that had none
    assert not pair.cluster.ran(r"new-current-uuid") and not pair.cluster.ran(r"mkfs")


def test_a_side_with_data_is_synced_not_cleared() -> None:
    """node1 holds UpToDate data, node2 is new: DRBD syncs node1 to node2; no clear-bitmap, no
    mkfs over node1's filesystem."""
    pair = Pair()
    node1 = pair.node("node1")
    node1.state.disks[DISK["node1"]] = Disk.captured("used")
    node1.state.md["r0/0"] = (
        "C0FFEE0000000000:0000000000000000:0000000000000000:0000000000000000:1:1:0:0:0:0:0\n"
    )
    node1.state.dstate["r0/0"] = "UpToDate"
    pair.node("node2").state.dstate["r0/0"] = "Inconsistent"
    pair.up()
    assert [n for n, _ in _created(pair)] == ["node2"]
    assert not pair.cluster.ran(r"new-current-uuid") and not pair.cluster.ran(r"mkfs")


def test_the_clear_bitmap_syntax_follows_the_drbd_generation() -> None:
    doc = onprem_doc()
    doc["targets"] = {"drbd": "8.4"}
    pair = Pair(doc=doc)
    pair.up()
    assert [c for _, c in pair.cluster.ran("new-current-uuid")] == [
        "drbdadm -- --clear-bitmap new-current-uuid r0/0"
    ]


def test_drbd_that_never_connects_fails_on_the_clock() -> None:
    pair = Pair()
    pair.node("node2").expect(r"^drbdadm up r0$", rc=0)  # node2's `up` does nothing
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC422" and "Connecting" in err.value.message
    assert 60 <= pair.clock.now < 62
    pair.cluster.verify()


def test_a_resource_pacemaker_manages_is_left_to_pacemaker() -> None:
    """After a reboot DRBD is down and Pacemaker (running, managing r0) brings it up: two
    starters would collide, and nothing on the disks is new."""
    pair = Pair()
    pair.up()
    for node in pair.cluster.nodes.values():
        node.state.up.clear()
    pair.cluster.commands.clear()
    assert pair.up() == []
    assert not pair.cluster.ran(r"^drbdadm (up|adjust|primary)|new-current-uuid|create-md|mkfs")


def test_a_changed_drbd_file_is_adjusted_on_that_node_only() -> None:
    pair = Pair()
    pair.up()
    pair.node("node2").state.files["/etc/drbd.d/r0.res"] = File(b"# stale\n", 0o600)
    pair.cluster.commands.clear()
    changes = pair.up()
    assert "node2: drbd: adjust r0 to the new configuration" in changes
    assert pair.cluster.ran(r"^drbdadm adjust") == [("node2", "drbdadm adjust r0")]


# ---------------------------------------------------------------- the CIB


def test_a_patch_touching_the_status_section_is_refused_before_anything_applies() -> None:
    pair = Pair()
    pair.cluster.patch_override = fixture("patch-status.xml")  # real crm_diff output
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC416"
    assert "patch" not in pair.cluster.timeline and not pair.cluster.ran("maintenance-mode")
    assert not pair.cluster.has_resources()


def test_maintenance_mode_is_set_around_a_resource_change() -> None:
    pair = Pair()
    pair.up()
    assert pair.cluster.timeline[-3:] == ["maintenance-mode=true", "patch", "maintenance-mode deleted"]
    assert pair.cluster.configuration().find(".//nvpair[@name='maintenance-mode']") is None


def test_maintenance_mode_is_cleared_when_the_patch_fails() -> None:
    pair = Pair()
    pair.cluster.fail_patch = (
        "Call cib_apply_diff failed (-205): Update was older than existing configuration\n"
    )
    with pytest.raises(RemoteError) as err:
        pair.up()
    assert "cib_apply_diff failed" in err.value.message
    assert pair.cluster.timeline[-3:] == ["maintenance-mode=true", "patch", "maintenance-mode deleted"]
    assert pair.cluster.configuration().find(".//nvpair[@name='maintenance-mode']") is None


def test_an_option_change_alone_goes_in_without_maintenance_mode() -> None:
    pair = Pair()
    pair.up()
    pair.cluster.set_option("no-quorum-policy", "ignore")  # someone changed an option by hand
    pair.cluster.timeline.clear()
    assert pair.up() == ["cluster: cib: update crm_config"]
    assert pair.cluster.timeline == ["patch"]
    assert pair.up() == []


def test_what_pacemaker_maintains_survives_the_merge() -> None:
    pair = Pair()
    pair.up()
    names = {nv.get("name") for nv in pair.cluster.configuration().iter("nvpair")}
    assert {"dc-version", "cluster-infrastructure", "have-watchdog", "stonith-enabled"} <= names
    assert [n.get("uname") for n in pair.cluster.configuration().iterfind("./nodes/node")] == [
        "node1",
        "node2",
    ]


# ---------------------------------------------------------------- health


def test_failures_recorded_before_a_run_that_changed_files_are_cleaned_up() -> None:
    pair = Pair()
    pair.up()
    pair.cluster.failures_recorded = True  # a fence monitor failed while the old password was in place
    pair.node("node1").state.files["/etc/hacloud/fencing/node2.secret"] = File(b"old\n", 0o600)
    pair.up()
    assert pair.cluster.ran(r"crm_resource --cleanup") and not pair.cluster.failures_recorded
    assert any(
        "clearing failures recorded before this run: fence_node1_monitor_60000" in s for s in pair.said
    )


def test_the_health_wait_names_the_failed_action_on_timeout() -> None:
    pair = Pair()
    pair.up()
    pair.cluster.mon_override = fixture("mon-failed.xml").replace('role="Started"', 'role="Stopped"')
    with pytest.raises(HacloudError) as err:
        pair.engine().wait_healthy(timeout=300)
    # the health wait is the one judgement `status` makes (hacloud.deploy.query.health)
    assert err.value.code == "HAC453"
    assert "fence_node1_monitor_60000 on node2: Simulated action result" in err.value.message
    assert 300 <= pair.clock.now < 303


def test_a_cluster_without_fencing_is_not_healthy() -> None:
    pair = Pair()
    pair.up()
    pair.cluster.mon_override = fixture("mon-healthy.xml").replace(
        'stonith-enabled="true"', 'stonith-enabled="false"'
    )
    with pytest.raises(HacloudError) as err:
        pair.engine().wait_healthy()
    assert err.value.code == "HAC426"


def test_a_service_that_does_not_answer_fails_on_the_clock() -> None:
    pair = Pair()
    pair.up()
    pair.cluster.service_answers = False
    with pytest.raises(HacloudError) as err:
        pair.engine().wait_healthy()
    assert err.value.code == "HAC427" and "192.0.2.100:8080" in err.value.message
    assert 60 <= pair.clock.now < 62


# ---------------------------------------------------------------- before anything is written


def test_a_running_resource_keeps_its_volumes_and_nothing_is_written() -> None:
    pair = Pair()
    pair.node("node1").expect(r"drbdadm sh-resources", stdout="r0 0 1\n")
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC418" and "runs with minors [0, 1]" in err.value.message
    assert not pair.cluster.ran(r"^put ")


def test_missing_packages_are_installed_then_the_facts_read_again() -> None:
    pair = Pair()
    pair.node("node2").state.commands.discard("crm_diff")
    changes = pair.up()
    assert any(
        c.startswith("node2: packages: install drbd-utils") and "missing crm_diff" in c for c in changes
    )
    installs = [c for _, c in pair.cluster.ran(r"^apt-get|^DEBIAN")]
    assert installs[0] == "apt-get update -q" and installs[1].startswith("DEBIAN_FRONTEND=noninteractive")
    assert len(pair.cluster.ran(r"echo @os")) == 4  # both nodes, then both again after the install


def test_a_node_without_a_known_package_manager_is_told_what_to_install() -> None:
    pair = Pair()
    pair.node("node1").state.commands.discard("drbdadm")
    pair.node("node1").expect(r"echo @os", stdout="@os\nalpine\n@pm\n@cmds\n@end\n")
    with pytest.raises(HacloudError) as err:
        pair.up()
    assert err.value.code == "HAC413"


def test_a_failing_provider_check_stops_before_the_cib() -> None:
    from hacloud.provision.provider import NodeNeeds, NodeProbe

    pair = Pair()
    check = NodeProbe(
        "HAC106", "the metadata service answers", "curl -fsS http://169.254.169.254/", "fix IMDS"
    )
    engine = Engine(
        pair.spec,
        pair.inventory,
        pair.bundle,
        pair.cluster.conns(),  # type: ignore[arg-type]
        pair.said.append,
        apply=True,
        needs=NodeNeeds(probes=(check,)),
        clock=pair.clock,
    )
    pair.node("node1").expect(r"169\.254\.169\.254", stderr="curl: (28) Connection timed out\n", rc=28)
    with pytest.raises(HacloudError) as err:
        engine.run_all()
    assert err.value.code == "HAC414" and "HAC106" in err.value.message and "timed out" in err.value.message
    assert not pair.cluster.has_resources()


def test_a_retired_file_is_removed_and_a_peer_password_never_kept() -> None:
    pair = Pair()
    node1 = pair.node("node1")
    node1.state.files["/etc/systemd/system/hacloud-demo.service"] = File(b"[Unit]\n", 0o644)
    changes = pair.up()
    assert (
        "node1: file: retire /etc/systemd/system/hacloud-demo.service (replaced in this hacloud version)"
        in changes
    )
    assert "/etc/systemd/system/hacloud-demo.service" not in node1.state.files


# ---------------------------------------------------------------- the double itself


def test_the_double_refuses_a_command_nobody_scripted() -> None:
    pair = Pair()
    with pytest.raises(AssertionError, match="unexpected command 'reboot'"):
        pair.node("node1").run("reboot")


def test_the_double_reports_an_expectation_never_consumed() -> None:
    pair = Pair()
    pair.node("node2").expect(r"^drbdadm down r0$")
    with pytest.raises(AssertionError, match="never run"):
        pair.cluster.verify()


def test_a_cloud_instance_takes_its_node_name_as_host_name_once() -> None:
    """EC2 names a host ip-10-0-1-4; DRBD finds its `on NAME` section by `uname -n`."""
    pair = Pair()
    pair.node("node1").state.hostname, pair.node("node1").state.cloud_init = "ip-192-0-2-4", True
    changes = [str(c) for c in pair.engine(needs=NodeNeeds(name_hosts=True)).run_all()]
    assert any("node1" in c and "set the host name to node1 (was ip-192-0-2-4)" in c for c in changes), (
        changes
    )
    assert not any("node2" in c and "host name" in c for c in changes)
    assert pair.node("node1").state.hostname == "node1"
    assert "/etc/cloud/cloud.cfg.d/99-hacloud-hostname.cfg" in pair.node("node1").state.files
    again = [str(c) for c in pair.engine(needs=NodeNeeds(name_hosts=True)).run_all()]
    assert not any("host name" in c for c in again), again


def test_a_host_named_otherwise_is_refused_before_anything_is_written() -> None:
    """On someone's server (on-prem) hacloud never renames the host: it says which name to use."""
    pair = Pair()
    pair.node("node2").state.hostname = "db-b.example"
    with pytest.raises(HacloudError) as exc:
        pair.up()
    assert exc.value.code == "HAC429" and "'db-b.example'" in exc.value.remedy
    assert not [c for _, c in pair.cluster.commands if c.startswith(("put ", "hostnamectl"))]
