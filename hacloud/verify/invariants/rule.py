"""What every rule shares: the :class:`Finding` it yields, the rule signature, and readers of
the rendered bundle (the CIB as Pacemaker reads it, a node's file without comments)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from hacloud.render import Bundle
from hacloud.render.fencepath import seconds
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile

__all__ = [
    "Cib",
    "Finding",
    "Rule",
    "Severity",
    "conf_value",
    "first_node_file",
    "node_file",
    "ok",
    "seconds",
]

Severity = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one subject: ``code`` (``HACnnn``, stable), ``severity``, what was
    found, how to fix it (empty when ``ok``) and the source the rule comes from."""

    code: str
    severity: Severity
    message: str
    remedy: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Cib:
    """A CIB as Pacemaker reads it: cluster properties by name, fence devices, parameters."""

    root: ET.Element

    def prop(self, *names: str) -> str | None:
        for name in names:
            for nv in self.root.iterfind("./configuration/crm_config/cluster_property_set/nvpair"):
                if nv.get("name") == name:
                    return nv.get("value")
        return None

    def stonith_devices(self) -> list[ET.Element]:
        return [p for p in self.root.iter("primitive") if p.get("class") == "stonith"]

    @staticmethod
    def params(prim: ET.Element) -> dict[str, str]:
        """The parameters as Pacemaker reads them: of a duplicated name, the first wins."""
        out: dict[str, str] = {}
        for nv in prim.iterfind("./instance_attributes/nvpair"):
            out.setdefault(nv.get("name", ""), nv.get("value", ""))
        return out


def conf_value(text: str, key: str) -> str | None:
    """The value of ``key`` in a corosync/DRBD/shell-style file (``key: v``, ``key v;``,
    ``key=v``); None when the key is absent."""
    m = re.search(rf"^\s*{re.escape(key)}\s*[:=]?\s*([^;\n]+?)\s*;?\s*$", text, re.MULTILINE)
    return m.group(1) if m else None


def first_node_file(bundle: Bundle, suffix: str) -> str:
    """The text of the first node's file ending in ``suffix``, without comments."""
    node = next(iter(bundle.files.values()))
    for f in node:
        if f.path.endswith(suffix):
            text = f.content.decode("utf-8", "replace")
            return re.sub(r"(?m)^\s*#.*$|\s+#.*$", "", text)
    return ""


def node_file(b: Bundle, node: str, path: str) -> str | None:
    """The text of the file at ``path`` rendered for ``node``; None when none is rendered."""
    return next((f.content.decode("utf-8", "replace") for f in b.files.get(node, ()) if f.path == path), None)


Rule = Callable[[Spec, Inventory, Profile, Bundle, Cib], Iterator[Finding]]


def ok(code: str, message: str, source: str) -> Finding:
    """A passing finding (no remedy)."""
    return Finding(code, "ok", message, "", source)
