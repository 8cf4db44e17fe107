"""Stand-in hashicorp/aws and hashicorp/azurerm Terraform providers, for offline tests.

The real providers cannot be downloaded here (no registry), so the Terraform modules are
applied by the real Terraform binary against these: same provider addresses, ids in the
clouds' formats, private addresses allocated from the subnets of a "world" file
(``HACLOUD_TFSTANDIN_WORLD``: {"subnets": {id: {"cidr", "zone", "vpc_id"}}, "vpcs": {id:
{"cidr"}}}). What a real cloud would refuse is not modelled.

The schema is the real release's: every resource, data source and provider block declares
exactly the arguments, blocks and exported attributes that the release's published docs list
(tests/data/terraform-providers/<provider>/<version>/, read by tfdocs.py), arguments the docs
mark Required as required. Terraform's own checks of a module against it are real: an
argument a release lacks (azurerm 5.0 removed ``enable_floating_ip``) fails ``terraform
validate``/``plan`` with "Unsupported argument" as it would with the real provider. The
tables below only give the types of the names the modules use and which names are nested
blocks (a documented name not in them is declared as an optional string; one used as a block
would fail: add it to the table).

Run as ``provider.py aws`` or ``provider.py azurerm`` with ``HACLOUD_TFSTANDIN_VERSION`` set to
a vendored release (Terraform starts it through the executable that tests/tftools.py writes
into a filesystem mirror, one per release).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import sys
from typing import Any

import tfdocs
from tf import provider as p
from tf import schema, types
from tf.gen import tfplugin_pb2 as pb
from tf.runner import run_provider
from tf.schema import NestedBlock

S, N, B = types.String(), types.Number(), types.Bool()
LS, MS = types.List(types.String()), types.Map(types.String())
ACCOUNT = "123456789012"
SUB = "00000000-0000-0000-0000-000000000000"


class ListBlock(NestedBlock):
    """A list nested block (``identity { }``, ``frontend_ip_configuration { }``), indexable."""

    def __init__(self, name: str, block: schema.Block) -> None:
        super().__init__(name, schema.NestMode.Set, block)

    def to_pb(self) -> Any:
        return pb.Schema.NestedBlock(
            type_name=self.type_name, block=self.block.to_pb(), nesting=pb.Schema.NestedBlock.NestingMode.LIST
        )

    def encode(self, value: Any) -> Any:
        from tf.provider import _encode_state_d

        return [_encode_state_d(self._amap(), self._bmap(), v, None) for v in value]

    def decode(self, value: Any) -> Any:
        from tf.provider import _decode_state
        from tf.utils import Diagnostics

        return [_decode_state(Diagnostics(), self._amap(), self._bmap(), v)[1] for v in value]

    def semantically_equal(self, a: Any, b: Any) -> bool:
        return bool(a == b)


def blk(**attrs: Any) -> schema.Block:
    return schema.Block(attributes=[schema.Attribute(k, t, optional=True) for k, t in attrs.items()])


# type -> (types of its arguments, of the attributes the stand-in computes, nested list blocks)
AWS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, schema.Block]]] = {
    "aws_security_group": ({"name": S, "description": S, "vpc_id": S, "tags": MS}, {"arn": S}, {}),
    "aws_vpc_security_group_ingress_rule": (
        {
            "security_group_id": S,
            "description": S,
            "ip_protocol": S,
            "from_port": N,
            "to_port": N,
            "referenced_security_group_id": S,
            "cidr_ipv4": S,
        },
        {},
        {},
    ),
    "aws_vpc_security_group_egress_rule": (
        {"security_group_id": S, "description": S, "ip_protocol": S, "cidr_ipv4": S},
        {},
        {},
    ),
    "aws_iam_role": ({"name": S, "assume_role_policy": S, "tags": MS}, {"arn": S}, {}),
    "aws_iam_instance_profile": ({"name": S, "role": S, "tags": MS}, {"arn": S}, {}),
    "aws_iam_role_policy": ({"name": S, "role": S, "policy": S}, {}, {}),
    "aws_instance": (
        {
            "ami": S,
            "instance_type": S,
            "subnet_id": S,
            "key_name": S,
            "vpc_security_group_ids": LS,
            "iam_instance_profile": S,
            "source_dest_check": B,
            "ebs_optimized": B,
            "monitoring": B,
            "tags": MS,
        },
        {
            "arn": S,
            "private_ip": S,
            "public_ip": S,
            "availability_zone": S,
            "primary_network_interface_id": S,
        },
        {
            "metadata_options": blk(http_endpoint=S, http_tokens=S),
            "root_block_device": blk(encrypted=B, kms_key_id=S),
        },
    ),
    "aws_ebs_volume": (
        {"availability_zone": S, "size": N, "type": S, "encrypted": B, "kms_key_id": S, "tags": MS},
        {"arn": S},
        {},
    ),
    "aws_volume_attachment": ({"device_name": S, "volume_id": S, "instance_id": S}, {}, {}),
    "aws_route": ({"route_table_id": S, "destination_cidr_block": S, "network_interface_id": S}, {}, {}),
    "aws_route_table": ({"vpc_id": S, "tags": MS}, {}, {}),
    "aws_subnet": ({"vpc_id": S, "cidr_block": S, "availability_zone": S, "tags": MS}, {}, {}),
    "aws_vpc": ({"cidr_block": S, "tags": MS}, {}, {}),
}

RULE = blk(
    name=S,
    description=S,
    priority=N,
    direction=S,
    access=S,
    protocol=S,
    source_port_range=S,
    destination_port_range=S,
    source_address_prefix=S,
    destination_address_prefix=S,
    source_address_prefixes=LS,
    destination_address_prefixes=LS,
)
AZURE: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, schema.Block]]] = {
    "azurerm_network_security_group": (
        {"name": S, "location": S, "resource_group_name": S, "tags": MS},
        {},
        {"security_rule": RULE},
    ),
    "azurerm_network_interface": (
        {"name": S, "location": S, "resource_group_name": S, "tags": MS},
        {"private_ip_address": S},
        {"ip_configuration": blk(name=S, subnet_id=S, private_ip_address_allocation=S)},
    ),
    "azurerm_network_interface_security_group_association": (
        {"network_interface_id": S, "network_security_group_id": S},
        {},
        {},
    ),
    "azurerm_linux_virtual_machine": (
        {
            "name": S,
            "computer_name": S,
            "location": S,
            "resource_group_name": S,
            "zone": S,
            "size": S,
            "admin_username": S,
            "disable_password_authentication": B,
            "allow_extension_operations": B,
            "network_interface_ids": LS,
            "tags": MS,
        },
        {"private_ip_address": S, "public_ip_address": S},
        {
            "admin_ssh_key": blk(username=S, public_key=S),
            "os_disk": blk(caching=S, storage_account_type=S, disk_encryption_set_id=S),
            "source_image_reference": blk(publisher=S, offer=S, sku=S, version=S),
            # principal_id is computed inside a block: the framework cannot plan that, so it stays null
            "identity": blk(type=S, principal_id=S),
        },
    ),
    "azurerm_managed_disk": (
        {
            "name": S,
            "location": S,
            "resource_group_name": S,
            "zone": S,
            "storage_account_type": S,
            "create_option": S,
            "disk_size_gb": N,
            "disk_encryption_set_id": S,
            "public_network_access_enabled": B,
            "network_access_policy": S,
            "tags": MS,
        },
        {},
        {},
    ),
    "azurerm_virtual_machine_data_disk_attachment": (
        {"managed_disk_id": S, "virtual_machine_id": S, "lun": N, "caching": S},
        {},
        {},
    ),
    "azurerm_lb": (
        {"name": S, "location": S, "resource_group_name": S, "sku": S, "tags": MS},
        {},
        {
            "frontend_ip_configuration": blk(
                name=S, subnet_id=S, private_ip_address=S, private_ip_address_allocation=S, zones=LS
            )
        },
    ),
    "azurerm_lb_backend_address_pool": ({"name": S, "loadbalancer_id": S}, {}, {}),
    "azurerm_network_interface_backend_address_pool_association": (
        {"network_interface_id": S, "ip_configuration_name": S, "backend_address_pool_id": S},
        {},
        {},
    ),
    "azurerm_lb_probe": (
        {
            "name": S,
            "loadbalancer_id": S,
            "protocol": S,
            "port": N,
            "interval_in_seconds": N,
            "number_of_probes": N,
        },
        {},
        {},
    ),
    "azurerm_lb_rule": (
        {
            "name": S,
            "loadbalancer_id": S,
            "protocol": S,
            "frontend_port": N,
            "backend_port": N,
            "frontend_ip_configuration_name": S,
            "backend_address_pool_ids": LS,
            "probe_id": S,
            "floating_ip_enabled": B,
            "enable_floating_ip": B,  # azurerm < 5.0 (deprecated since 4.42.0)
            "idle_timeout_in_minutes": N,
        },
        {},
        {},
    ),
    "azurerm_role_definition": (
        {"name": S, "scope": S, "description": S, "assignable_scopes": LS},
        {"role_definition_resource_id": S, "role_definition_id": S},
        {"permissions": blk(actions=LS)},
    ),
    "azurerm_role_assignment": ({"scope": S, "role_definition_id": S, "principal_id": S}, {}, {}),
    "azurerm_virtual_network": (
        {"name": S, "address_space": LS, "location": S, "resource_group_name": S},
        {},
        {},
    ),
}

AZURE_PATH = {
    "azurerm_network_security_group": "Microsoft.Network/networkSecurityGroups",
    "azurerm_network_interface": "Microsoft.Network/networkInterfaces",
    "azurerm_linux_virtual_machine": "Microsoft.Compute/virtualMachines",
    "azurerm_managed_disk": "Microsoft.Compute/disks",
    "azurerm_lb": "Microsoft.Network/loadBalancers",
    "azurerm_virtual_network": "Microsoft.Network/virtualNetworks",
}
AWS_PREFIX = {
    "aws_security_group": "sg",
    "aws_instance": "i",
    "aws_ebs_volume": "vol",
    "aws_route_table": "rtb",
    "aws_subnet": "subnet",
    "aws_vpc": "vpc",
    "aws_vpc_security_group_ingress_rule": "sgr",
    "aws_vpc_security_group_egress_rule": "sgr",
    "aws_volume_attachment": "vai",
}


def world() -> dict[str, Any]:
    path = os.environ.get("HACLOUD_TFSTANDIN_WORLD")
    return json.loads(open(path).read()) if path else {"subnets": {}, "vpcs": {}}


def _hex(seed: str, n: int = 17) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def _address(cidr: str, seed: str) -> str:
    net = ipaddress.ip_network(cidr)
    return str(net.network_address + 4 + int(_hex(seed, 8), 16) % (net.num_addresses - 8))


def _seed(planned: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in planned.items() if isinstance(v, str | int | float | bool)}, sort_keys=True
    )


def computed(kind: str, planned: dict[str, Any], region: str) -> dict[str, Any]:
    seed = kind + _seed(planned)
    out: dict[str, Any] = {}
    if kind.startswith("aws_"):
        rid = f"{AWS_PREFIX[kind]}-{_hex(seed)}" if kind in AWS_PREFIX else planned.get("name") or _hex(seed)
        out["id"] = rid
        if kind == "aws_instance":
            subnet = world()["subnets"].get(planned.get("subnet_id"), {})
            out.update(
                arn=f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{rid}",
                private_ip=_address(subnet.get("cidr", "192.0.2.0/24"), seed),
                public_ip=None,
                availability_zone=subnet.get("zone", f"{region}a"),
                primary_network_interface_id=f"eni-{_hex(seed + 'eni')}",
            )
        elif "arn" in AWS[kind][1]:
            service = "iam" if kind.startswith("aws_iam") else "ec2"
            out["arn"] = f"arn:aws:{service}::{ACCOUNT}:{kind.removeprefix('aws_')}/{rid}"
        return out
    rg = planned.get("resource_group_name") or "rg"
    path = AZURE_PATH.get(kind, f"Microsoft.Hacloud/{kind}")
    name = planned.get("name") or _hex(seed, 8)
    out["id"] = f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/{path}/{name}"
    if kind == "azurerm_network_interface":
        cfg = (planned.get("ip_configuration") or [{}])[0]
        subnet = world()["subnets"].get(cfg.get("subnet_id"), {})
        out["private_ip_address"] = _address(subnet.get("cidr", "198.51.100.0/24"), seed)
    elif kind == "azurerm_linux_virtual_machine":
        nics = {k: v for k, v in STORE.items() if k in (planned.get("network_interface_ids") or [])}
        out["private_ip_address"] = next(iter(nics.values()), {}).get("private_ip_address")
        out["public_ip_address"] = None
    elif kind == "azurerm_role_definition":
        rdid = _guid(seed)
        out.update(
            role_definition_id=rdid,
            role_definition_resource_id=(
                f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{rdid}"
            ),
        )
    return out


def _guid(seed: str) -> str:
    h = _hex(seed, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# what this provider process created, so a VM can read its NIC's address (one apply = one process)
STORE: dict[str, dict[str, Any]] = {}


def _block(name: str, docs: tfdocs.DocSchema, known: schema.Block | None) -> schema.Block:
    """A nested block with the names the docs list for it, typed from ``known`` where it has them."""
    types = {a.name: a.type for a in (known.attributes if known else [])}
    return blk(**{n: types.get(n, S) for n in sorted(docs.blocks.get(name, set()))})


def resource_schema(
    kind: str, spec: tuple[dict[str, Any], dict[str, Any], dict[str, schema.Block]], docs: tfdocs.DocSchema
) -> schema.Schema:
    """The schema of ``kind`` as the release's docs list it (see the module docstring)."""
    config, comp, blocks = spec
    attrs = [schema.Attribute("id", S, computed=True)]
    for name, required in docs.arguments.items():
        if name == "id" or name in blocks:
            continue
        kind_of = config.get(name) or comp.get(name) or S
        if name in comp:  # an argument the cloud fills in when it is not set (private_ip)
            attrs.append(schema.Attribute(name, kind_of, optional=True, computed=True))
        else:
            attrs.append(schema.Attribute(name, kind_of, required=required, optional=not required))
    for name in sorted(docs.attributes - set(docs.arguments) - set(blocks) - {"id"}):
        attrs.append(schema.Attribute(name, comp.get(name) or config.get(name) or S, computed=True))
    missing = set(comp) - {a.name for a in attrs}
    if missing:
        raise KeyError(f"{kind}: the stand-in computes {sorted(missing)}, which the docs do not export")
    nested = [ListBlock(n, _block(n, docs, b)) for n, b in blocks.items() if n in docs.arguments]
    return schema.Schema(attributes=attrs, block_types=nested)


def version() -> str:
    found = os.environ.get("HACLOUD_TFSTANDIN_VERSION")
    if not found:
        raise KeyError("HACLOUD_TFSTANDIN_VERSION is not set (tests/tftools.py sets it)")
    return found


def make(kind: str, spec: tuple[dict[str, Any], dict[str, Any], dict[str, schema.Block]], prov: Any) -> type:
    comp = spec[1]
    docs = tfdocs.resource(prov.name, prov.version, kind)

    class Res(p.Resource):
        @classmethod
        def get_name(cls) -> str:
            return kind.split("_", 1)[1]

        @classmethod
        def get_schema(cls) -> schema.Schema:
            return resource_schema(kind, spec, docs)

        def __init__(self, provider: Any) -> None:
            self.provider = provider

        def create(self, ctx: Any, planned: dict[str, Any]) -> dict[str, Any]:
            # a documented attribute this stand-in does not model (owner_id, tags_all) is null
            state = {k: None if v is types.Unknown else v for k, v in planned.items()}
            state.update(computed(kind, state, prov.region))
            STORE[state["id"]] = state
            return state

        def read(self, ctx: Any, current: dict[str, Any]) -> dict[str, Any]:
            return current

        def update(self, ctx: Any, current: dict[str, Any], planned: dict[str, Any]) -> dict[str, Any]:
            return {**planned, **{k: current.get(k) for k in ("id", *comp)}}

        def delete(self, ctx: Any, current: dict[str, Any]) -> None:
            return None

    Res.__name__ = kind
    return Res


def make_data(kind: str, prov: Any) -> type:
    """aws_subnet / aws_vpc data sources, answered from the world file; their schema is the
    release's docs (every argument a filter, optional and computed; blocks such as ``filter``
    declared with their documented names)."""
    docs = tfdocs.resource(prov.name, prov.version, kind, data_source=True)

    class Data(p.DataSource):
        @classmethod
        def get_name(cls) -> str:
            return kind.split("_", 1)[1]

        @classmethod
        def get_schema(cls) -> schema.Schema:
            args = [n for n in docs.arguments if n not in docs.blocks]
            attrs = [
                schema.Attribute(n, MS if n == "tags" else S, optional=True, computed=True) for n in args
            ]
            attrs += [
                schema.Attribute(n, S, computed=True)
                for n in sorted(docs.attributes - set(args) - set(docs.blocks))
            ]
            blocks = [ListBlock(n, _block(n, docs, None)) for n in docs.blocks if n in docs.arguments]
            return schema.Schema(attributes=attrs, block_types=blocks)

        def __init__(self, provider: Any) -> None:
            self.provider = provider

        def read(self, ctx: Any, config: dict[str, Any]) -> dict[str, Any]:
            w = world()
            out = dict(config)  # every documented name; the ones the world knows filled in
            if kind == "aws_subnet":
                s = w["subnets"].get(config["id"])
                if s is None:
                    ctx.diagnostics.add_error(f"InvalidSubnetID.NotFound: {config['id']}")
                    return out
                out.update(vpc_id=s["vpc_id"], cidr_block=s["cidr"], availability_zone=s["zone"])
                return out
            out["cidr_block"] = w["vpcs"].get(config["id"], {}).get("cidr")
            return out

    Data.__name__ = kind
    return Data


class StandIn(p.Provider):
    def __init__(self, name: str) -> None:
        self.name = name
        self.version = version()
        self.region = "eu-central-1"
        self.table = AWS if name == "aws" else AZURE

    def full_name(self) -> str:
        return f"registry.terraform.io/hashicorp/{self.name}"

    def get_model_prefix(self) -> str:
        return f"{self.name}_"

    def get_provider_schema(self, diags: Any) -> schema.Schema:
        # The provider block as the release's index page documents it. azurerm's `features`
        # block has its own guide: declared empty, as the examples use it.
        docs = tfdocs.provider_config(self.name, self.version)
        blocks = set(docs.blocks) | ({"features"} if self.name == "azurerm" else set())
        attrs = [schema.Attribute(n, S, optional=True) for n in docs.arguments if n not in blocks]
        return schema.Schema(
            attributes=attrs, block_types=[ListBlock(n, _block(n, docs, None)) for n in sorted(blocks)]
        )

    def validate_config(self, diags: Any, config: dict[str, Any]) -> None:
        return None

    def configure_provider(self, diags: Any, config: dict[str, Any]) -> None:
        self.region = config.get("region") or self.region

    def get_data_sources(self) -> list[type]:
        return [make_data("aws_subnet", self), make_data("aws_vpc", self)] if self.name == "aws" else []

    def get_resources(self) -> list[type]:
        return [make(kind, spec, self) for kind, spec in self.table.items()]


if __name__ == "__main__":
    run_provider(StandIn(sys.argv[1]), [a for a in sys.argv if a != sys.argv[1]])
