"""Shared fixtures: spec factories and access to the real HA tools.

Tests that need crm_verify, drbdadm or corosync skip when a tool is missing on a developer's
machine, but fail under .ci/run (HACLOUD_REQUIRE_TOOLS=1), which installs them.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hacloud.provision.provider import get_provider
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.spec.model import Spec
from hacloud.spec.profiles import load_profile
from hacloud.spec.secrets import ClusterSecrets

FIXED_SECRETS = ClusterSecrets(bytes(range(256)), "test-drbd-secret-not-for-production")
FENCING = ("fence_ipmilan", "fence_redfish", "sbd", "fence_aws", "fence_azure_arm")
VIPS = ("IPaddr2", "aws-vpc-move-ip", "awseip", "azure-lb")
PROFILES = ("lab", "onprem", "aws", "azure")
REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ from the current renderers",
    )


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    if missing:
        if os.environ.get("HACLOUD_REQUIRE_TOOLS") == "1":
            pytest.fail(f"missing {missing}; .ci/run installs them")
        pytest.skip(f"missing {missing}; run .ci/run to install them")


def fencing_block(kind: str, names: tuple[str, str] = ("node1", "node2")) -> dict[str, Any]:
    if kind == "fence_ipmilan":
        return {
            "kind": kind,
            "nodes": {
                n: {"ip": f"192.0.2.{201 + i}", "username": "admin", "password_file": f"bmc-{n}.secret"}
                for i, n in enumerate(names)
            },
        }
    if kind == "fence_redfish":
        return {
            "kind": kind,
            "nodes": {
                n: {
                    "ip": f"192.0.2.{201 + i}",
                    "username": "admin",
                    "password_env": "BMC_PW",
                    "ssl_insecure": True,
                }
                for i, n in enumerate(names)
            },
        }
    if kind == "sbd":
        return {"kind": kind, "devices": ["/dev/disk/by-id/scsi-3600140500000000000000000000sbd1"]}
    if kind == "fence_aws":
        return {
            "kind": kind,
            "region": "eu-central-1",
            "nodes": {n: {"instance_id": f"i-0123456789abcdef{i}"} for i, n in enumerate(names)},
        }
    return {
        "kind": kind,
        "subscription_id": "00000000-0000-0000-0000-000000000000",
        "resource_group": "rg-test",
    }


def vip_block(kind: str) -> dict[str, Any]:
    if kind == "IPaddr2":
        return {"kind": kind, "address": "192.0.2.100", "cidr_netmask": 24}
    if kind == "aws-vpc-move-ip":
        return {
            "kind": kind,
            "address": "192.168.200.10",
            "route_tables": ["rtb-0aaaaaaaaaaaaaaaa", "rtb-0bbbbbbbbbbbbbbbb"],
        }
    if kind == "awseip":
        return {"kind": kind, "elastic_ip": "198.51.100.50", "allocation_id": "eipalloc-0123456789abcdef0"}
    return {"kind": kind, "address": "192.0.2.100", "probe_port": 61000}


def onprem_doc(
    fencing: str = "fence_ipmilan", vip: str = "IPaddr2", profile: str | None = None, links: int = 2
) -> dict[str, Any]:
    """A valid on-prem spec (on-prem accepts every fencing and VIP kind)."""
    nodes = []
    for i, name in enumerate(("node1", "node2")):
        node: dict[str, Any] = {
            "name": name,
            "address": f"192.0.2.{11 + i}",
            "volumes": {"r0": f"/dev/disk/by-id/wwn-0x50000000000000{i}"},
        }
        if links == 2:
            node["links"] = [f"192.0.2.{11 + i}", f"198.51.100.{11 + i}"]
        nodes.append(node)
    doc: dict[str, Any] = {
        "version": 1,
        "cluster": {"name": "test"},
        "provider": {"kind": "onprem"},
        "nodes": nodes,
        "volumes": [{"name": "r0", "mount_point": "/srv/data"}],
        "vip": vip_block(vip),
        "fencing": [fencing_block(fencing)],
    }
    if profile:
        doc["profile"] = profile
    return doc


def spec_of(doc: dict[str, Any]) -> Spec:
    from hacloud.spec.load import parse_spec

    return parse_spec(yaml.safe_dump(copy.deepcopy(doc)), "test.yaml")


def render_doc(doc: dict[str, Any], passwords: dict[str, str] | None = None) -> tuple[Spec, Bundle]:
    spec = spec_of(doc)
    inventory = get_provider(spec.provider.kind).planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    return spec, render_all(spec, inventory, profile, FIXED_SECRETS, passwords or {})


def write_lab_spec(root: Path, cluster: str) -> tuple[Path, dict[str, Any]]:
    """The `hacloud init --provider lab` example for another cluster name, written to root."""
    doc = yaml.safe_load((REPO / "templates/init/lab.yaml").read_text())
    doc["cluster"]["name"] = cluster
    for target in doc["fencing"][0]["nodes"].values():
        target["password_file"] = target["password_file"].replace("/demo/", f"/{cluster}/")
    spec = root / "hacloud.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return spec, doc


def run_hacloud(spec: Path, env: dict[str, str], *args: str, timeout: float = 1200) -> Any:
    """`hacloud ARGS -f SPEC` as a user runs it; a CompletedProcess with text output."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hacloud", *args, "-f", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def onprem() -> dict[str, Any]:
    return onprem_doc()


# ---------------------------------------------------------------- a moto server (AWS tests)


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server on loopback for one test module."""
    from awstools import moto_server

    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """(ec2, iam) clients on an emptied moto account; the environment points boto3 there."""
    import boto3
    from awstools import REGION, aws_env, reset

    reset(moto_url)
    for key, value in aws_env(moto_url).items():
        monkeypatch.setenv(key, value)
    yield boto3.client("ec2", region_name=REGION), boto3.client("iam", region_name=REGION)


@pytest.fixture(scope="module")
def arm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fake ARM (tests/fakearm.py) on loopback for one test module."""
    from fakearm import FakeArm

    fake = FakeArm(tmp_path_factory.mktemp("arm"))
    yield fake
    fake.close()


@pytest.fixture
def fake(arm: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The module's fake ARM, emptied, with hacloud's Azure clients pointed at it; at the end
    the test fails if any request or response broke the official specs."""
    from azuretools import StaticToken
    from hacloud_azure import api

    arm.reset()
    monkeypatch.setattr(api, "CREDENTIAL_FACTORY", StaticToken)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(arm.cert))  # the fake's TLS certificate
    yield arm
    assert arm.problems == [], arm.problems
    assert arm.response_problems == [], arm.response_problems


def grouped_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the volumes of one database grouped in ONE DRBD resource ``pg`` (data +
    WAL, volumes 0 and 1) and an independent ``logs`` volume as its own resource."""
    doc = copy.deepcopy(doc)
    doc["volumes"] = [
        {"name": "data", "resource": "pg", "mount_point": "/srv/pg", "filesystem": "xfs"},
        {"name": "wal", "resource": "pg", "mount_point": "/srv/pg/wal", "filesystem": "xfs"},
        {"name": "logs", "mount_point": "/srv/logs", "filesystem": "ext4"},
    ]
    for i, node in enumerate(doc["nodes"]):
        node["volumes"] = {
            vol: f"/dev/disk/by-id/wwn-0x5000c500{k:02d}0000{i:02d}"
            for k, vol in enumerate(("data", "wal", "logs"))
        }
    return doc
