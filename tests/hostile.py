"""Malformed and hostile inputs of the audit's classes (issue 16, item 7), shared by
tests/test_hostile_input.py and bench/hostile_input.py.

Each case is (name, which file it replaces: spec | inventory | terraform, the bytes, the problem
path or message the report must name).
"""

from __future__ import annotations

import copy
import json
from typing import Any

AWS_STATE: dict[str, Any] = {
    "version": 4,
    "terraform_version": "1.6.0",
    "lineage": "0b5e4a5e-1f3b-4b8e-9d0a-000000000000",
    "serial": 1,
    "outputs": {},
    "resources": [
        {
            "mode": "managed",
            "type": "aws_instance",
            "name": "node",
            "instances": [
                {
                    "index_key": i,
                    "attributes": {
                        "id": f"i-0123456789abcdef{i}",
                        "private_ip": f"10.0.{i + 1}.10",
                        "tags": {"Name": f"node{i + 1}"},
                        "availability_zone": f"eu-central-1{'ab'[i]}",
                    },
                }
                for i in range(2)
            ],
        },
        {
            "mode": "managed",
            "type": "aws_volume_attachment",
            "name": "data",
            "instances": [
                {
                    "index_key": i,
                    "attributes": {
                        "instance_id": f"i-0123456789abcdef{i}",
                        "volume_id": f"vol-0123456789abcdef{i}",
                        "device_name": "/dev/sdf",
                    },
                }
                for i in range(2)
            ],
        },
    ],
}


def _state(change: Any) -> bytes:
    doc = copy.deepcopy(AWS_STATE)
    change(doc)
    return json.dumps(doc).encode()


def _instances(doc: dict[str, Any]) -> list[Any]:
    instances: list[Any] = doc["resources"][0]["instances"]
    return instances


ALIAS_BOMB = b"version: 1\na: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n".encode() for i in range(9)
)

BINARY = bytes(range(256)) * 4

#: (name, kind, content, what the report must mention)
TERRAFORM_CASES: list[tuple[str, bytes, str]] = [
    (
        "resources-object",
        _state(lambda d: d.__setitem__("resources", {"a": 1})),
        "resources: expected a list",
    ),
    (
        "resource-string",
        _state(lambda d: d["resources"].__setitem__(0, "x")),
        "resources[0]: expected an object",
    ),
    ("missing-type", _state(lambda d: d["resources"][0].pop("type")), "resources[0].type"),
    ("null-instance", _state(lambda d: _instances(d).__setitem__(0, None)), "resources[0].instances[0]"),
    ("instances-object", _state(lambda d: d["resources"][0].__setitem__("instances", {})), "instances"),
    (
        "attributes-list",
        _state(lambda d: _instances(d)[0].__setitem__("attributes", [1])),
        "resources[0].instances[0].attributes",
    ),
    ("outputs-list", _state(lambda d: d.__setitem__("outputs", [1])), "outputs: expected an object"),
    ("version-string", _state(lambda d: d.__setitem__("version", "4")), "state format version"),
    ("output-without-value", json.dumps({"x": {"v": 1}}).encode(), "has no `value`"),
    ("binary", BINARY, "not UTF-8"),
    ("not-json", b"{]", "not JSON"),
    ("deep-json", b"[" * 100_000 + b"]" * 100_000, "not JSON"),
]

INVENTORY_CHANGES: list[tuple[str, Any, str]] = [
    ("nodes-object", lambda d: d.__setitem__("nodes", {"a": 1}), "nodes:"),
    ("links-object", lambda d: d["nodes"][0].__setitem__("links", {"a": 1}), "nodes[0].links"),
    ("null-node", lambda d: d["nodes"].__setitem__(0, None), "nodes[0]"),
    ("facts-version", lambda d: d["nodes"][0]["facts"].__setitem__("pacemaker", "2.x"), "facts.pacemaker"),
    ("volumes-list", lambda d: d["nodes"][0].__setitem__("volumes", ["/dev/sdb"]), "nodes[0].volumes"),
]

INVENTORY_RAW: list[tuple[str, bytes, str]] = [
    ("binary", BINARY, "not UTF-8"),
    ("deep", b"[" * 5000 + b"]" * 5000, "nested more than"),
    ("list", b"[1, 2]", "must be a mapping"),
]

SPEC_CASES: list[tuple[str, bytes, str]] = [
    ("recursive-alias", b"version: 1\na: &a [*a]\n", "recursive alias"),
    ("recursive-mapping-alias", b"version: 1\nx: &x {y: {z: *x}}\n", "recursive alias"),
    ("deep-list", b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested more than"),
    ("deep-mapping", b"a: " + b"{a: " * 5000 + b"1" + b"}" * 5000 + b"\n", "nested more than"),
    ("deep-block", b"".join(b"  " * i + b"k:\n" for i in range(5000)), "nested more than"),
    ("alias-bomb", ALIAS_BOMB, "aliases expand"),
    ("binary", BINARY, "UTF-8"),
]

VM_ID = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/node{}"

AZURE_STATE: dict[str, Any] = {
    "version": 4,
    "terraform_version": "1.6.0",
    "lineage": "0b5e4a5e-1f3b-4b8e-9d0a-000000000001",
    "serial": 1,
    "outputs": {},
    "resources": [
        {
            "mode": "managed",
            "type": "azurerm_linux_virtual_machine",
            "name": "node",
            "instances": [
                {
                    "index_key": i,
                    "attributes": {
                        "id": VM_ID.format(i + 1),
                        "name": f"node{i + 1}",
                        "private_ip_address": f"10.0.1.{10 + i}",
                        "zone": str(i + 1),
                    },
                }
                for i in range(2)
            ],
        },
        {
            "mode": "managed",
            "type": "azurerm_virtual_machine_data_disk_attachment",
            "name": "data",
            "instances": [
                {
                    "index_key": i,
                    "attributes": {
                        "virtual_machine_id": VM_ID.format(i + 1),
                        "lun": 0,
                    },
                }
                for i in range(2)
            ],
        },
        {
            "mode": "managed",
            "type": "azurerm_lb",
            "name": "lb",
            "instances": [
                {"attributes": {"frontend_ip_configuration": [{"private_ip_address": "10.0.1.100"}]}}
            ],
        },
    ],
}


def _azure(change: Any) -> bytes:
    doc = copy.deepcopy(AZURE_STATE)
    change(doc)
    return json.dumps(doc).encode()


AZURE_CASES: list[tuple[str, bytes, str]] = [
    (
        "lun-not-a-number",
        _azure(lambda d: d["resources"][1]["instances"][0]["attributes"].__setitem__("lun", "abc")),
        "lun is 'abc', not a number",
    ),
    (
        "frontends-object",
        _azure(
            lambda d: d["resources"][2]["instances"][0]["attributes"].__setitem__(
                "frontend_ip_configuration", {"a": 1}
            )
        ),
        "expected a list of objects",
    ),
]
