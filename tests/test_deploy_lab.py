"""`hacloud up` converges a real HA pair on the lab, safely, and a re-run changes nothing.

One module-scoped lab (cluster ``deploytest``), tests in file order:
existing filesystem refused -> --force run killed mid-way -> re-run converges -> healthy pair ->
0 changes -> one profile value changes exactly that -> records survive a failover.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hacloud_lab.lab import LabProvider
from test_lab import cluster_lab, hacloud, hacloud_in_lab_network, lab_exec, onprem_spec_over, ws_of
from test_lab import on_guest as on

pytestmark = pytest.mark.lab
CLUSTER = "deploytest"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    yield from cluster_lab(tmp_path_factory, CLUSTER)


def client(lab: dict[str, object], *curl: str) -> str:
    """curl from the host side, inside the lab's network (as a user's client would)."""
    return lab_exec(lab, "curl", "-sS", "--max-time", "5", *curl).stdout


def test_boot_nodes_and_preformat_one_disk(lab: dict[str, object]) -> None:
    env = lab["env"]
    assert isinstance(env, dict)
    os.environ["HACLOUD_DATA_DIR"] = env["HACLOUD_DATA_DIR"]
    try:
        LabProvider().ensure_nodes(ws_of(lab))
    finally:
        del os.environ["HACLOUD_DATA_DIR"]
    out = on(
        lab,
        "node1",
        "mkfs.ext4 -q /dev/ubdb && mkdir -p /mnt/x && mount /dev/ubdb /mnt/x && "
        "echo precious > /mnt/x/data.txt && umount /mnt/x",
    )
    assert out.returncode == 0, out.stderr


def test_existing_filesystem_is_refused_and_kept(lab: dict[str, object]) -> None:
    proc = hacloud(lab, "up", "-y")
    assert proc.returncode == 1
    assert "/dev/ubdb already holds ext4" in proc.stderr and "--force" in proc.stderr
    out = on(lab, "node1", "mount -o ro /dev/ubdb /mnt/x && cat /mnt/x/data.txt; umount /mnt/x")
    assert out.stdout.strip() == "precious"
    assert on(lab, "node1", "drbdadm dump-md r0 >/dev/null 2>&1; echo $?").stdout.strip() != "0"


def test_run_killed_mid_way_then_rerun_converges(lab: dict[str, object]) -> None:
    """--force wipes the disk the user gave up; the run is killed (its SSH connections die)
    right after DRBD metadata is written on node1; a plain re-run must converge."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hacloud", "up", "-y", "--force", "-f", str(lab["spec"])],
        env=lab["env"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )  # type: ignore[arg-type]
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "node1: drbd: create metadata" in line:
            time.sleep(1)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    started = time.monotonic()
    again = hacloud(lab, "up", "-y")
    assert again.returncode == 0, again.stderr[-3000:]
    print(f"\nre-run after the kill converged in {time.monotonic() - started:.0f} s")


def test_pair_is_healthy_and_serves_on_the_vip(lab: dict[str, object]) -> None:
    proc = hacloud(lab, "status", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = json.loads(proc.stdout)
    assert st["healthy"] is True and st["quorum"] is True and st["fencing_enabled"] is True
    assert [n["online"] for n in st["nodes"]] == [True, True]
    assert [n["drbd_disk"] for n in st["nodes"]] == ["UpToDate", "UpToDate"]
    assert sorted(n["drbd_role"] for n in st["nodes"]) == ["Primary", "Secondary"]
    assert all(f["state"] == "Started" for f in st["fencing"]) and len(st["fencing"]) == 2
    health = json.loads(client(lab, "http://192.0.2.100:8080/health"))
    assert health["node"] == st["service_node"]
    # Independent of hacloud: Pacemaker's own view on the node.
    mon = on(
        lab, "node1", "crm_attribute -t crm_config -n stonith-enabled -G -q; crm_mon -1 | grep -c Started"
    )
    assert mon.stdout.split()[0] == "true" and int(mon.stdout.split()[1]) >= 5


def _guest_drbd(lab: dict[str, object], node: str) -> dict[str, str]:
    """DRBD r0 as the guest's own tools and kernel say, read here without hacloud's parsers:
    `drbdadm role/cstate/dstate` and the /proc/drbd line of minor 0 (drbd_proc.c's format)."""
    out = on(
        lab,
        node,
        "echo role $(drbdadm role r0); echo cstate $(drbdadm cstate r0); echo dstate $(drbdadm dstate r0); "
        "grep '^ *0: cs:' /proc/drbd",
    ).stdout
    lines = dict(
        line.split(" ", 1) for line in out.splitlines() if line.startswith(("role", "cstate", "dstate"))
    )
    proc = next(line for line in out.splitlines() if "cs:" in line)
    fields = dict(f.split(":", 1) for f in proc.split() if ":" in f and not f[0].isdigit())
    role, peer_role = lines["role"].strip().split("/")
    disk, peer_disk = lines["dstate"].strip().split("/")
    assert fields["ro"] == f"{role}/{peer_role}" and fields["ds"] == f"{disk}/{peer_disk}", (lines, proc)
    assert fields["cs"] == lines["cstate"].strip(), (lines, proc)
    return {"role": role, "disk": disk, "peer_disk": peer_disk, "connection": fields["cs"]}


def _status_matches_the_guests(lab: dict[str, object]) -> dict[str, dict[str, str]]:
    """`hacloud status --json` against each guest's own DRBD reading: role, disk, peer disk and
    connection of r0, node by node."""
    proc = hacloud(lab, "status", "--json")
    st = json.loads(proc.stdout)
    guests = {n["name"]: _guest_drbd(lab, n["name"]) for n in st["nodes"]}
    for n in st["nodes"]:
        own = guests[n["name"]]
        assert (n["drbd_role"], n["drbd_disk"], n["drbd_connection"]) == (
            own["role"],
            own["disk"],
            own["connection"],
        ), (n, own)
        (vol,) = n["drbd"]
        assert (vol["resource"], vol["volume"], vol["peer_disk"]) == ("r0", 0, own["peer_disk"]), (vol, own)
    return guests


def test_status_agrees_with_drbd_on_the_guests(lab: dict[str, object]) -> None:
    guests = _status_matches_the_guests(lab)
    assert sorted(g["role"] for g in guests.values()) == ["Primary", "Secondary"]
    assert all(g["disk"] == g["peer_disk"] == "UpToDate" for g in guests.values())


def test_second_up_changes_nothing(lab: dict[str, object]) -> None:
    sums = on(
        lab,
        "node2",
        "sha256sum /etc/corosync/corosync.conf /etc/drbd.d/r0.res; cibadmin -Q -o configuration | md5sum",
    ).stdout
    proc = hacloud(lab, "up", "-y")
    assert proc.returncode == 0 and proc.stdout.startswith("0 changes"), proc.stdout + proc.stderr
    assert (
        on(
            lab,
            "node2",
            "sha256sum /etc/corosync/corosync.conf /etc/drbd.d/r0.res; cibadmin -Q -o configuration | md5sum",
        ).stdout
        == sums
    )


def test_one_profile_value_changes_exactly_that(lab: dict[str, object]) -> None:
    doc = lab["doc"]
    assert isinstance(doc, dict)
    doc["overrides"] = {"pacemaker.resource_stickiness": 500}
    Path(str(lab["spec"])).write_text(yaml.safe_dump(doc))
    plan = hacloud(lab, "plan")
    assert plan.returncode == 0, plan.stderr
    lines = [line for line in plan.stdout.splitlines() if line and not line.endswith("changes")]
    assert lines == ["cluster: cib: update rsc_defaults"], plan.stdout
    assert hacloud(lab, "up", "-y").stdout.startswith("1 changes")
    assert (
        on(lab, "node1", "crm_attribute -t rsc_defaults -n resource-stickiness -G -q").stdout.strip() == "500"
    )
    assert hacloud(lab, "plan").stdout.strip().endswith("0 changes")


def test_records_survive_a_failover(lab: dict[str, object]) -> None:
    ids = [
        json.loads(client(lab, "-X", "POST", "--data", f"record-{i}", "http://192.0.2.100:8080/records"))[
            "id"
        ]
        for i in range(20)
    ]
    before = json.loads(client(lab, "http://192.0.2.100:8080/health"))["node"]
    proc = hacloud(lab, "failover", "-y")
    assert proc.returncode == 0, proc.stderr
    after = json.loads(client(lab, "http://192.0.2.100:8080/health"))["node"]
    assert after != before
    for i, rid in enumerate(ids):
        assert client(lab, f"http://192.0.2.100:8080/records/{rid}") == f"record-{i}"
    constraints = on(lab, after, "cibadmin -Q -o constraints").stdout
    assert "cli-prefer" not in constraints and "cli-ban" not in constraints
    # the roles swapped on the guests themselves, and status says what they say
    assert _status_matches_the_guests(lab)[after]["role"] == "Primary"


def test_hacloud_ssh_uses_the_recorded_host_keys(lab: dict[str, object]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hacloud", "ssh", "-f", str(lab["spec"]), "node2", "--", "hostname"],
        env=lab["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # type: ignore[arg-type]
    assert proc.returncode == 0 and proc.stdout.strip() == "node2"
    known = Path(str(lab["root"])) / ".hacloud" / CLUSTER / "known_hosts"
    assert oct(known.stat().st_mode & 0o777) in ("0o600", "0o644")
    assert len(known.read_text().splitlines()) >= 2


def _endpoint(lab: dict[str, object], node: str, **changes: object) -> tuple[object, Path]:
    import dataclasses

    ws = ws_of(lab)
    provider = LabProvider()
    inventory = provider.discover(ws)
    assert inventory is not None
    ep = dataclasses.replace(provider.endpoint(ws, inventory.node(node)), **changes)  # type: ignore[arg-type]
    return ep, ws.state_dir / "known_hosts"


def test_non_root_user_with_sudo(lab: dict[str, object]) -> None:
    from hacloud.deploy.remote import Connection

    setup = on(
        lab,
        "node1",
        "id hacadmin >/dev/null 2>&1 || useradd -m -s /bin/sh hacadmin; "
        "install -d -m 700 -o hacadmin /home/hacadmin/.ssh; "
        "install -m 600 -o hacadmin /root/.ssh/authorized_keys /home/hacadmin/.ssh/; "
        "echo 'hacadmin ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/hacadmin",
    )
    assert setup.returncode == 0, setup.stderr
    ep, known = _endpoint(lab, "node1", user="hacadmin")
    conn = Connection(ep, known, lambda _m: None).connect()  # type: ignore[arg-type]
    try:
        assert conn.run("id -u").stdout.strip() == "0"  # commands run through sudo -n
        conn.put("/etc/hacloud/sudo-test.secret", b"s3cret\n", 0o600)
    finally:
        conn.close()
    check = on(
        lab, "node1", "stat -c '%U %a' /etc/hacloud/sudo-test.secret; ls -a /home/hacadmin | grep -c hacloud-"
    )
    assert check.stdout.split("\n")[:2] == ["root 600", "0"], check.stdout


def test_jump_host(lab: dict[str, object]) -> None:
    """node2 reached through node1 as bastion (direct-tcpip), host keys checked for both."""
    from hacloud.deploy.remote import Connection

    ep, known = _endpoint(lab, "node2", jump="root@192.0.2.11")
    conn = Connection(ep, known, lambda _m: None).connect()  # type: ignore[arg-type]
    try:
        assert conn.run("hostname").stdout.strip() == "node2"
    finally:
        conn.close()


def test_onprem_provider_sees_the_same_converged_cluster(lab: dict[str, object]) -> None:
    """The lab is on-prem with hosts hacloud made: an on-prem spec naming the same hosts, disks
    and profile, run from inside the lab's network, plans 0 changes with the same engine."""
    spec = onprem_spec_over(lab, CLUSTER)
    proc = hacloud_in_lab_network(lab, CLUSTER, spec, "plan", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("0 changes"), proc.stdout


def test_dropin_from_terraform_then_down_removes_only_the_cluster_config(
    lab: dict[str, object], tmp_path: Path
) -> None:
    """Drop-in on hosts a Terraform describes: plan/up read them from outputs the real
    Terraform binary wrote (0 changes: the same pair), later commands find them without the
    flag, and `down` removes the cluster configuration but not the machines or the data: a
    later `up` brings the same records back."""
    import tftools

    if tftools.terraform() is None:
        pytest.skip("no terraform binary (.ci/run installs it)")
    ids = [
        json.loads(client(lab, "-X", "POST", "--data", f"kept-{i}", "http://192.0.2.100:8080/records"))["id"]
        for i in range(5)
    ]
    doc = lab["doc"]
    assert isinstance(doc, dict)
    config = tmp_path / "tf"
    config.mkdir()
    (config / "main.tf").write_text((Path(__file__).parent / "data/terraform/hosts/main.tf").read_text())
    env = tftools.setup_mirror(tmp_path / "tfroot")
    hosts = {
        n["name"]: {"address": n["address"], "links": n["links"], "disk": "/dev/ubdb"} for n in doc["nodes"]
    }
    outputs, _ = tftools.apply(env, config, {"hosts": hosts})
    tf_map = tmp_path / "tfmap.yaml"
    tf_map.write_text(
        yaml.safe_dump(
            {
                "nodes": {
                    name: {
                        "id": f"servers.{name}.hostname",
                        "address": f'servers["{name}"].ip',
                        "links": [f"servers.{name}.links[0]", f"servers.{name}.links[1]"],
                        "volumes": {"r0": f"servers.{name}.data_disk"},
                    }
                    for name in hosts
                }
            }
        )
    )
    spec = onprem_spec_over(lab, CLUSTER)
    flags = ("--from-terraform", str(outputs), "--tf-map", str(tf_map))
    record = Path(str(lab["root"])) / ".hacloud" / CLUSTER / "terraform.json"
    try:
        _dropin_round(lab, spec, flags)
    finally:
        record.unlink(missing_ok=True)  # whatever happened, the lab's own `down` must work
    # the machines and the data stay: the lab's own `up` converges again, without --force
    again = hacloud(lab, "up", "-y")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "create metadata" not in again.stderr and "filesystem on" not in again.stderr, again.stderr
    for i, rid in enumerate(ids):
        assert client(lab, f"http://192.0.2.100:8080/records/{rid}") == f"kept-{i}"


def _dropin_round(lab: dict[str, object], spec: Path, flags: tuple[str, ...]) -> None:
    record = Path(str(lab["root"])) / ".hacloud" / CLUSTER / "terraform.json"
    plan = hacloud_in_lab_network(lab, CLUSTER, spec, "plan", *flags, timeout=300)
    assert plan.returncode == 0 and plan.stdout.strip().endswith("0 changes"), plan.stdout + plan.stderr
    assert "terraform: node1 <- outputs servers.node1.hostname" in plan.stderr
    up = hacloud_in_lab_network(lab, CLUSTER, spec, "up", "-y", *flags, timeout=600)
    assert up.returncode == 0 and up.stdout.startswith("0 changes"), up.stdout + up.stderr
    assert record.exists()
    # recorded: status needs no flag
    status = hacloud_in_lab_network(lab, CLUSTER, spec, "status", "--json", timeout=300)
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["healthy"] is True
    refused = hacloud_in_lab_network(lab, CLUSTER, spec, "down", "-y", "--delete-volumes", timeout=300)
    assert refused.returncode == 2 and "belong to Terraform" in refused.stderr
    down = hacloud_in_lab_network(lab, CLUSTER, spec, "down", "-y", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    for node in ("node1", "node2"):
        left = on(
            lab,
            node,
            "systemctl is-active pacemaker corosync; ls /etc/corosync/corosync.conf /etc/corosync/authkey "
            "/etc/drbd.d/r0.res /var/lib/pacemaker/cib/cib.xml 2>&1 | grep -c 'No such file'; hostname",
        ).stdout.split()
        assert left == ["inactive", "inactive", "4", node], left
    assert not record.exists()
