"""The real providers' schemas, read from their published resource docs.

tests/data/terraform-providers/<provider>/<version>/ holds, byte for byte, the docs
(``website/docs/{r,d}/<name>.html.markdown`` and ``index.html.markdown``) of
hashicorp/terraform-provider-aws and hashicorp/terraform-provider-azurerm at the releases the
modules are pinned to (see the README there). The stand-in provider declares exactly what these
documents list, so Terraform itself rejects an argument or block a real release lacks
("Unsupported argument"), and an argument the docs mark ``(Required)`` when it is missing.

The docs follow one convention for both providers: an ``## Argument(s) Reference`` and an
``## Attribute(s) Reference`` section, top-level names as ``* `name` - (Required|Optional) ...``
bullets first, then each nested block's names after a line such as "A `ip_configuration`
block supports the following:" / "The `metadata_options` block supports the following:".
A ``###`` heading ends the top-level list too (aws); a ``---`` rule does not (azurerm puts one
between the required and the optional arguments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "data" / "terraform-providers"
BULLET = re.compile(r"^\*\s+`([a-z0-9_]+)`\s*-?\s*(.*)$")
# "A `security_rule` block support:", "A `permissions` block as the following properties:"...
# aws data sources: "... using one or more `filter` sub-blocks, which take the following arguments:"
SUB_BLOCK = re.compile(r"`([a-z0-9_]+)`\s+sub-blocks?\b")
BLOCK = re.compile(
    r"^(?:A|An|The|Each|This|One or more|Every)\s+`([a-z0-9_]+)`\s+(?:configuration\s+)?blocks?\b"
)


@dataclass
class DocSchema:
    """What one resource's docs list: top-level arguments (name -> required), exported
    attributes, and the names inside each nested block (by block name, all levels)."""

    arguments: dict[str, bool] = field(default_factory=dict)
    attributes: set[str] = field(default_factory=set)
    blocks: dict[str, set[str]] = field(default_factory=dict)


def parse(text: str) -> DocSchema:
    out = DocSchema()
    section = ""
    top = True
    block: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("## "):
            title = line[3:].lower()
            section = (
                "args" if title.startswith("argument") else "attrs" if title.startswith("attribute") else ""
            )
            top, block = True, None
            continue
        if not section:
            continue
        if line.startswith("###"):  # aws: a block's own sub-section follows ("### filter")
            # "### filter", "### `filter`", "### route Argument Reference"
            m = re.fullmatch(r"###+\s+`?([a-z0-9_]+)`?(?:\s+Arguments?(?:\s+Reference)?)?", line)
            top, block = False, m.group(1) if m else None
            if block:
                out.blocks.setdefault(block, set())
            continue
        m = None if line.startswith("*") else BLOCK.match(line) or SUB_BLOCK.search(line)
        if m:
            top, block = False, m.group(1)
            out.blocks.setdefault(block, set())
            continue
        m = BULLET.match(line)
        if not m:
            continue
        name, rest = m.groups()
        if top and section == "args":
            out.arguments[name] = rest.startswith("(Required")
        elif top:
            out.attributes.add(name)
        elif block is not None:
            out.blocks[block].add(name)
    return out


def resource(provider: str, version: str, kind: str, data_source: bool = False) -> DocSchema:
    """The docs of resource (or data source) ``kind`` at ``version``; KeyError if not vendored."""
    path = (
        DOCS / provider / version / ("d" if data_source else "r") / f"{kind.split('_', 1)[1]}.html.markdown"
    )
    if not path.exists():
        raise KeyError(f"{kind}: no docs vendored at {path}")
    return parse(path.read_text(encoding="utf-8"))


def provider_config(provider: str, version: str) -> DocSchema:
    """The provider block's arguments, from the provider's index page."""
    return parse((DOCS / provider / version / "index.html.markdown").read_text(encoding="utf-8"))
