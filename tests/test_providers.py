"""Provider registration and the planned-inventory contract every provider shares."""

from __future__ import annotations

import ipaddress

import pytest
import yaml
from conftest import REPO, spec_of

from hacloud.provision.provider import Provider, get_provider, provider_names
from hacloud.spec.inventory import INVENTORY_ADAPTER, Inventory

# A provider without a row here has no contract test: adding one to the entry points
# without testing it fails this suite.
CONTRACT = {"lab": "lab.yaml", "onprem": "onprem.yaml", "aws": "aws.yaml", "azure": "azure.yaml"}


def test_every_registered_provider_has_a_contract_test() -> None:
    assert set(provider_names()) == set(CONTRACT)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_planned_inventory_contract(name: str) -> None:
    provider = get_provider(name)
    assert isinstance(provider, Provider) and provider.name == name
    spec = spec_of(yaml.safe_load((REPO / "templates/init" / CONTRACT[name]).read_text()))
    inv = provider.planned_inventory(spec)
    assert inv == provider.planned_inventory(spec)  # pure
    assert [n.name for n in inv.nodes] == [n.name for n in spec.nodes]
    # round-trips through its JSON form and schema
    assert INVENTORY_ADAPTER.validate_json(inv.to_json()) == inv
    for node in inv.nodes:
        ipaddress.IPv4Address(node.ssh_address)
        assert set(node.volumes) == {v.name for v in spec.volumes}
        assert all(dev.startswith("/dev/") for dev in node.volumes.values())
        if node.placeholder:
            assert (
                ipaddress.IPv4Address(node.ssh_address) in ipaddress.IPv4Network("203.0.113.0/24")
                or "PLACEHOLDER" in node.id
                or any("placeholder" in d for d in node.volumes.values())
            )


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_every_provider_implements_the_operations(name: str) -> None:
    """No registered provider falls back on BaseProvider's "not implemented yet" for the
    operations `up`/`down` need (their behaviour is tested for real in test_lab, test_aws,
    test_azure)."""
    from hacloud.provision.provider import BaseProvider

    cls = type(get_provider(name))
    for op in ("discover", "ensure_nodes", "teardown"):
        if name == "onprem" and op == "teardown":
            continue  # on-prem hosts are not hacloud's to take down: a typed refusal
        assert getattr(cls, op) is not getattr(BaseProvider, op), (name, op)


def test_onprem_teardown_is_a_typed_refusal() -> None:
    from hacloud.errors import HacloudError
    from hacloud.spec.workspace import Workspace

    spec = spec_of(yaml.safe_load((REPO / "templates/init/onprem.yaml").read_text()))
    with pytest.raises(HacloudError) as info:
        get_provider("onprem").teardown(Workspace(spec, REPO / "hacloud.yaml"))
    assert info.value.remedy


def test_lab_and_azure_know_their_devices_aws_does_not() -> None:
    specs = {
        n: spec_of(yaml.safe_load((REPO / "templates/init" / f).read_text())) for n, f in CONTRACT.items()
    }
    lab: Inventory = get_provider("lab").planned_inventory(specs["lab"])
    assert lab.nodes[0].volumes == {"r0": "/dev/ubdb"} and not lab.placeholder
    azure = get_provider("azure").planned_inventory(specs["azure"])
    assert azure.nodes[1].volumes == {"r0": "/dev/disk/azure/scsi1/lun0"} and azure.nodes[1].id == "node2"
    aws = get_provider("aws").planned_inventory(specs["aws"])
    assert aws.placeholder and aws.nodes[0].id == "PLACEHOLDER-node1"


@pytest.mark.tools
@pytest.mark.parametrize(("vip", "fencing"), [("awseip", "sbd"), ("aws-vpc-move-ip", "fence_ipmilan")])
def test_onprem_ec2_hosts_get_the_aws_cli_their_vip_agent_calls(vip: str, fencing: str) -> None:
    """On-prem hosts that are EC2 instances: the VIP agent runs the binary its meta-data names
    (`awscli`, default /usr/bin/aws); deploy must require that command and install the package
    that dpkg says provides it (else the VIP never starts: `aws: not found`)."""
    import os
    import shutil
    import subprocess
    import xml.etree.ElementTree as ET
    from pathlib import PurePosixPath

    from conftest import onprem_doc, spec_of

    agent = f"/usr/lib/ocf/resource.d/heartbeat/{vip}"
    if not shutil.which("dpkg") or not os.path.exists(agent):
        pytest.skip("needs dpkg and resource-agents")
    meta = subprocess.run(
        [agent, "meta-data"], capture_output=True, text=True, env={"OCF_ROOT": "/usr/lib/ocf"}, check=True
    ).stdout
    param = next(p for p in ET.fromstring(meta).iter("parameter") if p.get("name") == "awscli")
    binary = param.find("content").get("default")  # type: ignore[union-attr]
    package = subprocess.run(["dpkg", "-S", binary], capture_output=True, text=True, check=True).stdout
    spec = spec_of(onprem_doc(fencing, vip))
    provider = get_provider("onprem")
    needs = provider.node_needs(spec, provider.planned_inventory(spec))
    assert PurePosixPath(binary).name in needs.commands
    assert package.split(":")[0] in needs.packages["apt-get"].split()
    plain = spec_of(onprem_doc("fence_ipmilan", "IPaddr2"))
    assert provider.node_needs(plain, provider.planned_inventory(plain)).commands == ()
