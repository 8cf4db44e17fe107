"""The AWS provider's site seam (issue 18, WP6), without guests: `init --provider aws --emulated`
writes a spec whose ids are the ones a freshly started box really has, the emulation is an
option of the AWS provider (not another provider), and only the site differs between a real and
an emulated AWS: the endpoint and credentials, SSH's namespace, where clients sit, the faults.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from boxtools import running_box
from conftest import REPO, spec_of
from hacloud_aws import provider as aws
from hacloud_aws.box import layout
from hacloud_aws.site import RealAws, site_of

from hacloud.errors import HacloudError, ProviderUnavailable
from hacloud.spec.inventory import NodeInfo
from hacloud.spec.workspace import Workspace
from hacloud.verify.fencetest.faults import FAULTS, FaultMethod

TEMPLATE = REPO / "templates" / "init" / "aws-emulated.yaml"


def _doc() -> dict[str, object]:
    doc: dict[str, object] = yaml.safe_load(TEMPLATE.read_text())
    return doc


def _ws(doc: dict[str, object], root: Path) -> Workspace:
    path = root / "hacloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Workspace(spec_of(doc), path)


def test_the_template_names_the_ids_a_fresh_box_has(tmp_path: Path) -> None:
    """The ids come from moto's seeded generator: a moto upgrade that changes them fails here,
    not in a user's first `up` (InvalidSubnetID.NotFound)."""
    doc = _doc()
    options = doc["provider"]["options"]  # type: ignore[index]
    with running_box(tmp_path / layout.BOX_DIRNAME) as box:
        fixed = box.info["layout"]
        assert options["region"] == fixed["region"]
        assert options["ami"] == fixed["ami"] and options["key_name"] == fixed["key_name"]
        assert options["subnets"] == [fixed["subnets"]["a"], fixed["subnets"]["b"]]
        assert doc["vip"]["route_tables"] == [fixed["route_tables"][k] for k in ("a", "b", "c")]  # type: ignore[index]
        # the commented Elastic IP alternative names the box's address and allocation
        text = TEMPLATE.read_text()
        assert (
            f"elastic_ip: {fixed['eip_address']}" in text
            and f"allocation_id: {fixed['eip_allocation']}" in text
        )
        zones = box.client("ec2").describe_subnets(SubnetIds=options["subnets"])["Subnets"]
        assert sorted(z["AvailabilityZone"] for z in zones) == ["eu-central-1a", "eu-central-1b"]


def test_init_emulated_writes_a_valid_aws_spec_and_refuses_other_providers(tmp_path: Path) -> None:
    out = tmp_path / "box.yaml"
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "hacloud", "init", *a], capture_output=True, text=True, cwd=tmp_path
    )
    ok = run("--provider", "aws", "--emulated", "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    spec = spec_of(yaml.safe_load(out.read_text()))
    assert spec.provider.kind == "aws" and spec.provider.options.emulated is not None  # type: ignore[union-attr]
    assert spec.provider.options.emulated.stop.graceful_timeout_s == 120  # type: ignore[union-attr]
    bad = run("--provider", "lab", "--emulated", "--out", str(tmp_path / "x.yaml"))
    assert bad.returncode == 2 and "HAC339" in bad.stderr and "--provider aws" in bad.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_only_the_site_differs_between_real_and_emulated_aws(tmp_path: Path) -> None:
    emulated = _doc()
    real = _doc()
    del real["provider"]["options"]["emulated"]  # type: ignore[index]
    ws_box, ws_real = _ws(emulated, tmp_path), _ws(real, tmp_path)
    node = NodeInfo("node1", "i-0123456789abcdef0", "192.0.2.4", ("192.0.2.4",), "192.0.2.4", {})
    assert isinstance(site_of(ws_real), RealAws)
    # SSH: the box's admin namespace (on the client subnet, behind the security group)
    assert aws.endpoint(ws_box, node).namespace == "hacaws-awsbox-admin"
    assert aws.endpoint(ws_real, node).namespace is None
    assert aws.endpoint(ws_box, node).user == aws.endpoint(ws_real, node).user == "root"
    # clients: the client subnet for an overlay IP, the Internet for an Elastic IP
    assert aws.client_command(ws_box, ["curl"]) == ["ip", "netns", "exec", "hacaws-awsbox-client", "curl"]
    assert aws.client_command(ws_real, ["curl"]) == ["curl"]
    eip = {
        **emulated,
        "vip": {
            "kind": "awseip",
            "elastic_ip": "198.51.100.200",
            "allocation_id": "eipalloc-0123456789abcdef0",
        },
    }
    assert aws.client_command(_ws(eip, tmp_path), ["x"])[3] == "hacaws-awsbox-inet"
    # faults: a partition only where the site can cut the zones apart
    partition = FAULTS[FaultMethod.PARTITION]
    assert partition.unsupported(aws, ws_box.spec) is None
    refused = partition.unsupported(aws, ws_real.spec)
    assert refused is not None and refused.code == "HAC507" and "NACL" in refused.message
    # a crash on real AWS is a kernel crash over SSH: freeze answers without asking EC2 (this
    # test has no credentials, so a call would fail)
    assert aws.freeze(ws_real, "node1") is False
    with pytest.raises(ProviderUnavailable) as exc:
        aws.partition(ws_real, True)
    assert exc.value.code == "HAC671"


def test_a_box_that_is_not_running_is_named_not_called(tmp_path: Path) -> None:
    """No instance exists in an emulator that is not running: `status` finds nothing, and a
    call that needs the API says how to start it instead of a connection error."""
    ws = _ws(_doc(), tmp_path)
    assert aws.discover(ws) is None
    with pytest.raises(HacloudError) as exc:
        site_of(ws).api()
    assert exc.value.code == "HAC721" and "hacloud up" in exc.value.remedy
