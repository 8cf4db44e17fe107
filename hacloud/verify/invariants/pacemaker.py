"""CIB-wide rules: no parameter set twice in one attribute set (HAC120), no option the
running Pacemaker deprecated (HAC101)."""

from __future__ import annotations

from collections.abc import Iterator

from hacloud.render import Bundle
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.invariants.rule import Cib, Finding, ok

_NVPAIR_SETS = ("instance_attributes", "meta_attributes", "cluster_property_set", "utilization")


def duplicate_params(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """A name twice in one attribute set: Pacemaker uses the first, a reader may take the last,
    so the CIB no longer means one thing (a crafted value once added a second pcmk_host_list)."""
    src = "Pacemaker Explained, nvpair: names are unique within a set; issue 16"
    found = False
    for tag in _NVPAIR_SETS:
        for attrs in cib.root.iter(tag):
            names = [nv.get("name", "") for nv in attrs.iterfind("nvpair")]
            for name in sorted({n for n in names if names.count(n) > 1}):
                found = True
                yield Finding(
                    "HAC120",
                    "error",
                    f"{attrs.get('id')} sets {name!r} {names.count(name)} times (Pacemaker uses the first)",
                    "give every parameter once; a value holding quotes or newlines must not reach the CIB "
                    "unescaped (report the input that produced it)",
                    src,
                )
    if not found:
        yield ok("HAC120", "no attribute set names a parameter twice", src)


def deprecated_options(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """Options Pacemaker 3.0.0 deprecated, set on a cluster that runs it."""
    src = "Pacemaker ChangeLog 3.0.0; PX cluster-options.rst, operations.rst"
    if b.targets.pacemaker < (3, 0, 0):
        return
    names = ["concurrent-fencing"] if cib.prop("concurrent-fencing") is not None else []
    op_defaults = cib.root.iterfind("./configuration/op_defaults/meta_attributes/nvpair")
    names += [nv.get("name", "") for nv in op_defaults if nv.get("name") == "record-pending"]
    version = ".".join(map(str, b.targets.pacemaker))
    if names:
        yield Finding(
            "HAC101",
            "warning",
            f"{', '.join(names)} set for Pacemaker {version}, which deprecated them "
            "(concurrent fencing is the default since 3.0.0, pending operations are always recorded)",
            "run `hacloud up`: it no longer renders them and removes them from the CIB",
            src,
        )
    else:
        yield ok("HAC101", f"no option Pacemaker {version} deprecated", src)
