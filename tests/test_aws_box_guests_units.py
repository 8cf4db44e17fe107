"""The AWS box's guests without UML: an instance's guest command line, the mconsole wire format,
the stop model's timing (fake clock), moto's held power transitions (contract + canary), and the
refusals of ``--guests`` and the guest control ops."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

import pytest
from hacloud_aws.box import control, daemon, guests, moto_power, pki, stopmodel
from hacloud_aws.box.frontend import ActionLog, Throttles
from hacloud_aws.box.layout import ENDPOINT_ADDRESS
from hacloud_aws.box.state import Instance, Interface
from hacloud_aws.tfstate import ebs_device_path
from hacloud_lab import image

from hacloud.errors import HacloudError

UML_COMMAND_LINE_SIZE = 4096  # arch/um/include/uapi/asm/setup.h (the guest's /proc/cmdline limit)
REGION = "eu-central-1"
SUBNETS = {"a": "subnet-a1", "b": "subnet-b2", "c": "subnet-c3"}


def _instance() -> Instance:
    eni = Interface("eni-1", "subnet-b2", ("192.0.2.70",), "02:00:00:12:34:56", True, ("sg-1",), None)
    return Instance(
        "i-0123456789abcdef0", "pending", REGION + "b", "subnet-b2", (eni,), None, "required", "enabled", 2
    )


def _inputs(tmp_path: Path) -> guests.GuestInputs:
    info = guests.ImageInfo("/img/base.img", "/uml/linux.uml", "vector", True)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5 hacloud-box"
    # a CA as large as a P-384 one in DER, base64 (the box's is P-256: smaller)
    return guests.GuestInputs(tmp_path, REGION, "hacloud-x", SUBNETS, info, key, "A" * 900, 1024)


def test_guest_config_puts_the_instance_on_its_subnet_with_the_eni_identity(tmp_path: Path) -> None:
    vol = "vol-0fedcba9876543210"
    config = guests.guest_config(
        _inputs(tmp_path), _instance(), (("/v/" + vol + ".img", guests.volume_serial(vol)),)
    )
    argv = config.command()
    assert "vec0:transport=tap,ifname=t9abcdef0,mac=02:00:00:12:34:56,gro=1" in argv
    assert "lab.ip0=192.0.2.70/26" in argv  # subnet B is 192.0.2.64/26 (layout.SUBNETS)
    assert "lab.gw=192.0.2.65" in argv  # the VPC router's .1 of subnet B
    assert "lab.ifname=ens5" in argv and "lab.hostname=ip-192-0-2-70" in argv
    assert f"ubd1=/v/{vol}.img,,vol0fedcba9876543210" in argv
    hosts = next(a for a in argv if a.startswith("lab.hosts=")).split("=", 1)[1].split(",")
    assert sorted(h.split(":")[0] for h in hosts) == sorted(pki.endpoint_names(REGION))
    assert {h.split(":")[1] for h in hosts} == {ENDPOINT_ADDRESS}
    assert config.netns == "hacloud-x" and len(config.taps[0][0]) <= 15  # IFNAMSIZ - 1
    # the guest kernel sees everything after the binary; UML truncates beyond its limit
    assert len(" ".join(argv[1:])) < UML_COMMAND_LINE_SIZE


def test_the_guests_by_id_name_is_the_one_the_aws_provider_expects() -> None:
    vol = "vol-0123456789abcdef0"
    rule = image.EBS_UDEV_RULE
    prefix = rule.split('SYMLINK+="', 1)[1].split("$attr{serial}")[0]
    assert "/dev/" + prefix + guests.volume_serial(vol) == ebs_device_path(vol)
    assert 'KERNEL=="ubd[b-z]"' in rule  # data disks only, never the root (ubda)


def _fake_uml(path: Path, replies: list[tuple[int, int, bytes]], seen: list[bytes]) -> threading.Thread:
    """A stand-in for UML's mconsole (arch/um/drivers/mconsole_kern.c): reads one request and
    answers with the given ``struct mconsole_reply`` packets (err, more, data[512])."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))

    def serve() -> None:
        data, peer = server.recvfrom(4096)
        seen.append(data)
        for err, more, text in replies:
            server.sendto(struct.pack("<III", err, more, len(text)) + text.ljust(512, b"\0"), peer)
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_mconsole_request_framing_and_multipart_reply(tmp_path: Path) -> None:
    sock = tmp_path / "uml" / "i-1" / "mconsole"
    sock.parent.mkdir(parents=True)
    seen: list[bytes] = []
    thread = _fake_uml(sock, [(0, 1, b"part one, "), (0, 0, b"part two")], seen)
    assert guests.mconsole(sock, "config ubd2=/v/x.img,,vol1") == "part one, part two"
    thread.join(5)
    magic, version, length = struct.unpack("<III", seen[0][:12])
    # struct mc_request: magic 0xcafebabe, version 2, len, data[MCONSOLE_MAX_DATA = 512]
    assert (magic, version, length, len(seen[0])) == (0xCAFEBABE, 2, 26, 12 + 512)
    assert seen[0][12 : 12 + length] == b"config ubd2=/v/x.img,,vol1"


def test_a_refused_remove_says_the_disk_is_in_use(tmp_path: Path) -> None:
    sock = tmp_path / "uml" / "i-1" / "mconsole"
    sock.parent.mkdir(parents=True)
    _fake_uml(sock, [(1, 0, b"Device is busy")], [])
    with pytest.raises(HacloudError) as exc:
        guests.mconsole(sock, "remove ubd1")
    assert exc.value.code == "HAC702" and "unmount" in exc.value.remedy


def test_mconsole_without_a_guest_fails_fast(tmp_path: Path) -> None:
    (tmp_path / "uml" / "i-1").mkdir(parents=True)
    with pytest.raises(HacloudError) as exc:
        guests.mconsole(tmp_path / "uml" / "i-1" / "mconsole", "cad", timeout=1)
    assert exc.value.code == "HAC703"


def _run_model(
    job: stopmodel.StopJob, off_at: float | None, grace: float, delay: float
) -> list[tuple[float, str]]:
    """Drive ``next_step`` every 0.5 s of fake time; the guest goes off at ``off_at`` (a clean
    shutdown) or when killed. Returns the (time, step) of every step that is not ``wait``."""
    steps, killed_at = [], None
    for tick in range(0, 400):
        now = tick * 0.5
        on = not ((off_at is not None and now >= off_at) or (killed_at is not None and now > killed_at))
        step = stopmodel.next_step(job, now, on, grace, delay)
        if step == "cad":
            job.cad_sent = True
        if step == "kill":
            job.killed, killed_at = True, now
        if step != "wait":
            steps.append((now, step))
        if step == "done":
            break
    return steps


def test_stop_model_graceful_stop_presses_the_button_and_waits_for_the_os() -> None:
    steps = _run_model(stopmodel.StopJob("i-1", False, 0.0), off_at=12.0, grace=120, delay=0)
    assert steps == [(0.0, "cad"), (12.0, "done")]


def test_stop_model_a_frozen_guest_waits_the_grace_out_then_is_killed() -> None:
    steps = _run_model(stopmodel.StopJob("i-1", False, 0.0), off_at=None, grace=30, delay=0)
    assert steps == [(0.0, "cad"), (30.0, "kill"), (30.5, "done")]


def test_stop_model_skip_os_shutdown_kills_after_the_hypervisor_delay() -> None:
    steps = _run_model(stopmodel.StopJob("i-1", True, 0.0), off_at=None, grace=120, delay=2)
    assert steps == [(2.0, "kill"), (2.5, "done")]


def test_stop_model_a_skip_os_shutdown_stop_escalates_a_graceful_one() -> None:
    first = stopmodel.StopJob("i-1", False, 0.0, cad_sent=True)
    merged = stopmodel.merge(first, stopmodel.StopJob("i-1", True, 50.0))
    assert merged.skip_os_shutdown and merged.started == 50.0
    assert stopmodel.merge(merged, stopmodel.StopJob("i-1", False, 60.0)) is merged


# -- moto's power transitions ------------------------------------------------------------------


def _ec2() -> object:
    import boto3

    return boto3.client("ec2", region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")


def _launch(ec2: object) -> str:
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]  # type: ignore[attr-defined]
    res = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)  # type: ignore[attr-defined]
    return str(res["Instances"][0]["InstanceId"])


def _state(ec2: object, iid: str) -> str:
    res = ec2.describe_instances(InstanceIds=[iid])  # type: ignore[attr-defined]
    return str(res["Reservations"][0]["Instances"][0]["State"]["Name"])


def test_moto_power_hooks_hold_transitions_until_the_controller_finishes_them() -> None:
    from moto import mock_aws
    from moto.ec2.models import ec2_backends

    requests = moto_power.Requests()
    with mock_aws(), moto_power.patched(requests):
        ec2 = _ec2()
        iid = _launch(ec2)
        assert _state(ec2, iid) == "pending"
        instance = ec2_backends["123456789012"][REGION].get_instance(iid)
        moto_power.set_state(instance, "running")
        ec2.stop_instances(InstanceIds=[iid], SkipOsShutdown=True, Force=True)  # type: ignore[attr-defined]
        assert _state(ec2, iid) == "stopping"
        (req,) = requests.drain()
        assert (req.instance, req.kind, req.skip_os_shutdown, req.force) == (iid, "stop", True, True)
        moto_power.set_state(instance, "stopped")
        ec2.start_instances(InstanceIds=[iid])  # type: ignore[attr-defined]
        assert _state(ec2, iid) == "pending"
        moto_power.set_state(instance, "running")
        ec2.stop_instances(InstanceIds=[iid])  # type: ignore[attr-defined]
        (req,) = requests.drain()
        assert not req.skip_os_shutdown and not req.force
        ec2.terminate_instances(InstanceIds=[iid])  # type: ignore[attr-defined]
        assert _state(ec2, iid) == "shutting-down"
        assert requests.drain()[0].kind == "terminate"


def test_canary_unpatched_moto_switches_power_states_at_once() -> None:
    """If this fails, moto changed how it moves instance states: re-check moto_power's hooks."""
    from moto import mock_aws

    with mock_aws():
        ec2 = _ec2()
        iid = _launch(ec2)
        assert _state(ec2, iid) == "running"
        ec2.stop_instances(InstanceIds=[iid])  # type: ignore[attr-defined]
        assert _state(ec2, iid) == "stopped"


# -- refusals ---------------------------------------------------------------------------------


def test_guests_needs_a_router_and_an_image(tmp_path: Path) -> None:
    with pytest.raises(HacloudError) as exc:
        daemon.check_guests(daemon.BoxConfig(tmp_path, REGION, guests=True))
    assert exc.value.code == "HAC709"
    with pytest.raises(HacloudError) as exc:
        daemon.check_guests(daemon.BoxConfig(tmp_path, REGION, router="hacloud-x", guests=True))
    assert exc.value.code == "HAC701" and "image.json" in exc.value.message
    daemon.check_guests(daemon.BoxConfig(tmp_path, REGION))  # without guests: nothing needed


def test_guest_ops_without_guests_and_with_a_bad_instance(tmp_path: Path) -> None:
    log = ActionLog(tmp_path / "api.jsonl")
    ctl = control.Controller(log, Throttles(), dict, lambda: None)
    answer = ctl.handle({"op": "guests"})
    assert not answer["ok"] and answer["code"] == "HAC711"

    class Machines:
        def signal(self, instance: str, freeze: bool) -> dict[str, object]:
            return {instance: freeze}

    ctl = control.Controller(log, Throttles(), dict, lambda: None, machines=Machines())
    assert ctl.handle({"op": "freeze", "instance": 5})["code"] == "HAC712"
    assert ctl.handle({"op": "freeze", "instance": "i-1", "x": 1})["code"] == "HAC696"
    assert ctl.handle({"op": "thaw", "instance": "i-1"})["guests"] == {"i-1": False}


def test_a_new_box_never_reuses_an_earlier_boxs_root_disk_and_keeps_its_volume_data(tmp_path: Path) -> None:
    """moto's ids are seeded (the same instance and volume ids on every start): an earlier box's
    root COW would boot the new instance, and its volume file would be a new volume's content."""
    from hacloud_aws.box.controller import GuestController

    old_guest = tmp_path / "guests" / "i-7404e508fb19a80ca"
    old_guest.mkdir(parents=True)
    (old_guest / "root.cow").write_bytes(b"old root")
    (tmp_path / "volumes").mkdir()
    (tmp_path / "volumes" / "vol-1.img").write_bytes(b"cluster data")
    machines = GuestController(
        _inputs(tmp_path), moto_power.Requests(), ActionLog(tmp_path / "api.jsonl"), 120, 0
    )
    machines.clear_stale()
    assert not old_guest.exists()
    assert not (tmp_path / "volumes" / "vol-1.img").exists()
    (kept,) = (tmp_path / "orphaned").glob("*/vol-1.img")
    assert kept.read_bytes() == b"cluster data"  # never destroyed
    assert len(machines.events(0)) == 2
