"""Helpers for tests against the fake ARM (tests/fakearm.py): a credential for it, spec
documents pointing at it, and resources "made by someone else" (a team's VMs, Terraform's).

The fixtures ``arm`` (one fake per module) and ``fake`` (emptied per test, spec problems
asserted at the end) are in conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from fakearm import RG, SUBNET_ID, SUBSCRIPTION, FakeArm

from hacloud.spec.load import load_spec
from hacloud.spec.workspace import Workspace

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMd5ANshDKJ3F7yGzMD7D+xTViqYaWxtbDPl+pHVPOKy hacloud-test\n"
BASE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers"
COMPUTE_API = "2025-11-01"
NETWORK_API = "2025-09-01"
AUTH_API = "2022-04-01"


class StaticToken:
    """A credential for the fake (DefaultAzureCredential would ask Entra ID over the network)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("fake-arm-token", 4102444800)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("fake-arm-token", 4102444800)


def azure_doc(fake: FakeArm, **options: Any) -> dict[str, Any]:
    repo = Path(__file__).resolve().parent.parent
    doc: dict[str, Any] = yaml.safe_load((repo / "templates/init/azure.yaml").read_text())
    doc["provider"]["options"].update(
        {
            "subscription_id": SUBSCRIPTION,
            "resource_group": RG,
            "subnet_id": SUBNET_ID,
            "arm_endpoint": fake.url,
            "ssh_public_key": "admin.pub",
            "admin_cidr": "192.0.2.0/24",
            **options,
        }
    )
    doc["vip"]["address"] = "192.0.2.100"
    # the fake stands in for public ARM, at an endpoint of no Azure cloud: name it
    for method in doc["fencing"]:
        if method["kind"] == "fence_azure_arm":
            method["cloud"] = "public"
    return doc


def workspace(tmp_path: Path, doc: dict[str, Any], log: list[str] | None = None, **kw: Any) -> Workspace:
    (tmp_path / "admin.pub").write_text(KEY)
    path = tmp_path / "hacloud.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Workspace(load_spec(path), path, (log.append if log is not None else lambda _m: None), **kw)


def census(fake: FakeArm) -> list[str]:
    """Every resource in the fake subscription (tagged or not), but the seeded network."""
    return sorted(k for k in fake.store if "/virtualnetworks/" not in k)


def put_resource(fake: FakeArm, path: str, body: dict[str, Any], version: str) -> dict[str, Any]:
    """PUT as another tool would (the fake judges the body by the spec), return what ARM holds."""
    status, _, out = fake.handle(
        "PUT", f"{path}?api-version={version}", json.dumps(body).encode(), {"Authorization": "Bearer x"}
    )
    assert status in (200, 201, 202), out
    return dict(fake.store[path.lower()])


def someone_elses_vm(
    fake: FakeArm, name: str, zone: str, identity: bool = False, data_disks: tuple[str, ...] = ()
) -> dict[str, Any]:
    """An untagged VM with its own NIC (``<name>-eth0``), as a team or Terraform made it."""
    nic = put_resource(
        fake,
        f"{BASE}/Microsoft.Network/networkInterfaces/{name}-eth0",
        {
            "location": "westeurope",
            "properties": {
                "enableAcceleratedNetworking": True,
                "ipConfigurations": [{"name": "ip", "properties": {"subnet": {"id": SUBNET_ID}}}],
            },
        },
        NETWORK_API,
    )
    body: dict[str, Any] = {
        "location": "westeurope",
        "zones": [zone],
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
            "storageProfile": {
                "imageReference": {
                    "publisher": "Debian",
                    "offer": "debian-12",
                    "sku": "12-gen2",
                    "version": "latest",
                },
                "osDisk": {"createOption": "FromImage"},
                "dataDisks": [
                    {"lun": lun, "createOption": "Attach", "managedDisk": {"id": disk}}
                    for lun, disk in enumerate(data_disks)
                ],
            },
            "osProfile": {
                "computerName": name,
                "adminUsername": "ops",
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {
                        "publicKeys": [{"path": "/home/ops/.ssh/authorized_keys", "keyData": KEY.strip()}]
                    },
                },
            },
            "networkProfile": {"networkInterfaces": [{"id": nic["id"], "properties": {"primary": True}}]},
        },
    }
    if identity:
        body["identity"] = {"type": "SystemAssigned"}
    return put_resource(fake, f"{BASE}/Microsoft.Compute/virtualMachines/{name}", body, COMPUTE_API)
