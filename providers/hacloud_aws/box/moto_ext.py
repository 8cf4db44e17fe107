"""Everything that touches moto's internals: the seeded account, the admin, authentication, and
the patches that make moto 5.2.5 answer as EC2 does where the box depends on it.

moto is pinned (``hacloud[aws-box]``: ``moto[server]==5.2.5``) because these reach below its
public API; ``tests/test_aws_box_core.py`` holds one contract test per patch (what AWS does,
with the patch) and one canary per quirk (what unpatched moto does), so an upgrade that changes
either fails loudly instead of silently changing the box.

Patches (``install()``; ``patched()`` undoes them, for tests sharing a process):

- ``attach_volume`` across zones: moto accepts it; EC2 refuses with
  ``InvalidVolume.ZoneMismatch`` (EBS volumes attach only in their own zone).
- ``associate_address`` of a VPC Elastic IP that is already associated: moto raises
  ``Resource.AlreadyAssociated`` unless ``AllowReassociation``; EC2 reassociates ("In a VPC in an
  EC2-VPC-only account, reassociation is automatic", AssociateAddress API reference), and
  ``awseip`` never passes the flag. moto also leaves the old interface's public IP in place,
  so DescribeInstances would show the address on both instances; the patch clears it.
- ``SourceDestCheck``: moto keeps the instance's attribute and its primary interface's apart;
  in EC2 they are one (ModifyInstanceAttribute changes the primary interface, and the other
  way round), and the router (network WP) filters per interface.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from hacloud_aws.box.layout import (
    ACCOUNT_ID,
    ADMIN_USER,
    AMI_NAME,
    ELASTIC_IP,
    KEY_NAME,
    SEED,
    SUBNETS,
    VPC_CIDR,
    Layout,
)

MOTO_VERSION = "5.2.5"


def check_version() -> str:
    """The installed moto version; refuses any other than the pinned one (HAC693)."""
    from importlib.metadata import PackageNotFoundError, version

    from hacloud.errors import HacloudError

    try:
        found = version("moto")
    except PackageNotFoundError:
        found = ""
    if found != MOTO_VERSION:
        raise HacloudError(
            f"the AWS box needs moto {MOTO_VERSION}, found {found or 'none'} (it patches moto internals)",
            "install the box extra into hacloud's environment: pip install 'hacloud[aws-box]'",
            code="HAC693",
        )
    return found


def _ec2(region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT_ID][region]


def bootstrap(region: str, ssh_public_key: str) -> Layout:
    """Seed moto's ids and create the box account's fixed resources in-process (no HTTP, so no
    request is logged or authenticated). Deterministic: the same region and calls give the same
    ids on every start; only the key material differs between boxes."""
    from moto.moto_api._internal import mock_random

    mock_random.seed(SEED)
    ec2 = _ec2(region)
    vpc = ec2.create_vpc(cidr_block=VPC_CIDR)
    igw = ec2.create_internet_gateway()
    ec2.attach_internet_gateway(igw.id, vpc.id)
    subnets: dict[str, str] = {}
    tables: dict[str, str] = {}
    for name, cidr, zone in SUBNETS:
        subnet = ec2.create_subnet(vpc_id=vpc.id, cidr_block=cidr, availability_zone=region + zone)
        table = ec2.create_route_table(vpc.id, tags=[{"Key": "Name", "Value": f"hacloud-box-{name}"}])
        ec2.associate_route_table(table.id, subnet_id=subnet.id)
        if name != "c":  # the pair's subnets reach the "internet" (EIP clients); C stays inside
            ec2.create_route(table.id, "0.0.0.0/0", gateway_id=igw.id)
        subnets[name], tables[name] = subnet.id, table.id
    ami = ec2.register_image(name=AMI_NAME, description="hacloud lab guest image (Debian 12)")
    ec2.import_key_pair(KEY_NAME, ssh_public_key.encode(), tags={})
    eip = ec2.allocate_address(domain="vpc", address=ELASTIC_IP)
    return Layout(
        region=region,
        account=ACCOUNT_ID,
        vpc=vpc.id,
        subnets=subnets,
        route_tables=tables,
        internet_gateway=igw.id,
        ami=ami.id,
        key_name=KEY_NAME,
        eip_allocation=eip.allocation_id,
        eip_address=eip.public_ip,
    )


def create_admin(region: str) -> dict[str, str]:
    """An IAM user allowed everything, with one access key: hacloud's own credentials for the box
    (the caller hacloud would be on a real account). Returns its key id, secret and ARN."""
    from moto.iam.models import iam_backends

    iam = iam_backends[ACCOUNT_ID]["aws"]
    user = iam.create_user(region_name=region, user_name=ADMIN_USER)
    admin_policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(ADMIN_USER, "admin", json.dumps(admin_policy))
    key = iam.create_access_key(ADMIN_USER)
    return {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key, "arn": user.arn}


def enforce_auth() -> None:
    """From now on every HTTP request is authenticated (SigV4) and authorized (IAM policies).

    moto counts requests class-wide and checks only once the count reaches this setting; 0
    means from the first request on (the bootstrap above made none)."""
    from moto import settings

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


def caller_arn(access_key_id: str) -> str:
    """The principal behind an access key id (an IAM user or an assumed-role session), as
    CloudTrail names it; ``""`` when moto knows no such key (the request will be refused)."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    iam = iam_backends[ACCOUNT_ID]["aws"]
    key = iam.access_keys.get(access_key_id)
    if key is not None and key.user_name:  # assumed-role keys live here too, without a user
        return f"arn:aws:iam::{ACCOUNT_ID}:user/{key.user_name}"
    for role in list(sts_backends[ACCOUNT_ID]["aws"].assumed_roles):
        if role.access_key_id == access_key_id:
            return str(role.arn)
    return ""


# -- quirk patches ---------------------------------------------------------------------------


def _attach_volume(orig: Any) -> Any:
    def attach_volume(
        self: Any, volume_id: str, instance_id: str, device_path: str, *a: Any, **kw: Any
    ) -> Any:
        from moto.ec2.exceptions import EC2ClientError

        volume = self.get_volume(volume_id)
        instance = self.get_instance(instance_id)
        zone = getattr(volume.zone, "name", None) if volume is not None else None
        if volume is not None and instance is not None and zone != instance.placement.zone:
            # EC2's code and wording for an attach across zones
            raise EC2ClientError(
                "InvalidVolume.ZoneMismatch",
                f"The volume '{volume_id}' is not in the same availability zone as instance '{instance_id}'",
            )
        return orig(self, volume_id, instance_id, device_path, *a, **kw)

    return attach_volume


def _associate_address(orig: Any) -> Any:
    def associate_address(
        self: Any,
        instance: Any = None,
        eni: Any = None,
        address: str | None = None,
        allocation_id: str | None = None,
        reassociate: bool = False,
    ) -> Any:
        eips = self.address_by_ip([address]) if address else self.address_by_allocation([allocation_id])
        eip = eips[0]
        old_eni = eip.eni
        if eip.domain == "vpc":
            reassociate = True  # EC2-VPC: reassociation is automatic
        result = orig(self, instance, eni, address, allocation_id, reassociate)
        if old_eni is not None and old_eni is not result.eni and old_eni.public_ip == result.public_ip:
            old_eni.public_ip = None  # the address left that interface
        return result

    return associate_address


def _as_bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _modify_instance_attribute(orig: Any) -> Any:
    def modify_instance_attribute(self: Any, instance_id: str, key: str, value: Any) -> Any:
        instance = orig(self, instance_id, key, value)
        if key == "source_dest_check":
            instance.source_dest_check = _as_bool(value)
            if 0 in instance.nics:  # the instance attribute *is* its primary interface's
                instance.nics[0].source_dest_check = instance.source_dest_check
        return instance

    return modify_instance_attribute


def _modify_network_interface_attribute(orig: Any) -> Any:
    def modify_network_interface_attribute(
        self: Any,
        eni_id: str,
        group_ids: list[str],
        source_dest_check: bool | None = None,
        description: Any = None,
    ) -> None:
        orig(self, eni_id, group_ids, source_dest_check, description)
        eni = self.get_network_interface(eni_id)
        instance = eni.instance
        if source_dest_check in (True, False) and instance is not None and instance.nics.get(0) is eni:
            instance.source_dest_check = source_dest_check

    return modify_network_interface_attribute


def _targets() -> list[tuple[Any, str, Any]]:
    from moto.ec2.models.elastic_block_store import EBSBackend
    from moto.ec2.models.elastic_ip_addresses import ElasticAddressBackend
    from moto.ec2.models.elastic_network_interfaces import NetworkInterfaceBackend
    from moto.ec2.models.instances import InstanceBackend

    return [
        (EBSBackend, "attach_volume", _attach_volume),
        (ElasticAddressBackend, "associate_address", _associate_address),
        (InstanceBackend, "modify_instance_attribute", _modify_instance_attribute),
        (NetworkInterfaceBackend, "modify_network_interface_attribute", _modify_network_interface_attribute),
    ]


def wrap_all(targets: Any) -> list[tuple[Any, str, Any]]:
    """Replace each ``owner.name`` by ``wrap(original)`` for (owner, name, wrap) in ``targets``;
    returns what ``uninstall`` needs to undo them (every box patch of moto goes through here)."""
    undo = []
    for owner, name, wrap in targets:
        orig = owner.__dict__[name]
        setattr(owner, name, wrap(orig))
        undo.append((owner, name, orig))
    return undo


def install() -> list[tuple[Any, str, Any]]:
    """Apply every patch; returns what ``uninstall`` needs to undo them."""
    return wrap_all(_targets())


def uninstall(undo: list[tuple[Any, str, Any]]) -> None:
    for owner, name, orig in reversed(undo):
        setattr(owner, name, orig)


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """The patches for the duration of a ``with`` block (tests run moto in their own process)."""
    undo = install()
    try:
        yield
    finally:
        uninstall(undo)
