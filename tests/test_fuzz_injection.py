"""Property: no value of the spec, the inventory or a Terraform import adds a directive, an
element or a command to anything hacloud renders (issue 16, "Done when").

Hypothesis draws hostile text (line, directive, XML and shell metacharacters, control
characters, known payloads, each alone or spliced into a valid value) for every free-text
field, and feeds it twice:

- through the loader (``parse_spec``, the inventory adapter, ``import_inventory``): the value
  is refused with exit-2 problems, or accepted; accepted values must render and pass the judges;
- past the loader (``model_copy`` / ``dataclasses.replace``): rendering refuses the value
  (:class:`UnsafeValue`) or writes artefacts that pass the judges.

The judges compare each artefact with the clean rendering of the same spec, using the real
tools and independent parsers (tests/injection_tools.py): the CIB parses, has the same
elements and parameter names, passes ``crm_verify``, and holds the value intact; ``drbdadm
dump`` shows the same resources, hosts, disks, addresses and options; corosync.conf has the
same directives and passes ``corosync -t``; sysctl.d, the AWS config and the SBD file set the
same keys; the demo agent passes ``sh -n`` and a sandboxed run plants no marker. Real tools
run once per distinct artefact (memoised), so the suite stays fast enough for CI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, need, onprem_doc, spec_of
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from injection_tools import (
    PAYLOADS,
    aws_config,
    cib_tree,
    corosync_log_dir,
    corosync_test,
    corosync_tree,
    crm_verify,
    drbd_dump,
    drbd_structure,
    sandboxed,
    sh_syntax_ok,
    sysctl_settings,
)
from pydantic import BaseModel, ValidationError
from tools import write_files

from hacloud.errors import HacloudError, SpecError
from hacloud.provision.provider import get_provider
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.spec.inventory import INVENTORY_ADAPTER, Inventory
from hacloud.spec.inventory_file import check_inventory_matches
from hacloud.spec.model import Spec
from hacloud.spec.profiles import load_profile

pytestmark = pytest.mark.tools

# Examples per field and direction (121 tests): 12 keeps the suite near 25 s on a 2-core CI
# host; HACLOUD_FUZZ_EXAMPLES=200 for a deeper run.
EXAMPLES = int(os.environ.get("HACLOUD_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------- hostile text

DANGER = "\n\r\t\x00\x0b\x1b ;{}\"'$`\\&<>#|()*?[]~!%=,:/.-@+"
_chunk = st.one_of(
    st.sampled_from(PAYLOADS),
    st.text(alphabet=DANGER + "az09", min_size=1, max_size=12),
)


@st.composite
def hostile(draw: st.DrawFn, base: str) -> str:
    """Hostile text alone, appended to a valid value, or spliced into it."""
    chunk = draw(_chunk)
    where = draw(st.sampled_from(("alone", "after", "inside", "before")))
    if where == "alone" or not base:
        return chunk
    if where == "after":
        return base + chunk
    if where == "before":
        return chunk + base
    cut = draw(st.integers(0, len(base)))
    return base[:cut] + chunk + base[cut:]


# ---------------------------------------------------------------- generic path edits


Path_ = tuple[Any, ...]


def get_in(obj: Any, path: Path_) -> Any:
    """The value at ``path`` (None where a mapping has no such key)."""
    for key in path:
        if isinstance(obj, BaseModel) or dataclasses.is_dataclass(obj):
            obj = getattr(obj, key)
        elif isinstance(obj, dict):
            obj = obj.get(key)
        else:
            obj = obj[key]
    return obj


def set_in_doc(doc: Any, path: Path_, value: Any) -> None:
    """Set ``value`` at ``path`` in a plain document, making missing mappings/lists on the way."""
    for i, key in enumerate(path[:-1]):
        if isinstance(doc, dict) and key not in doc:
            doc[key] = [] if isinstance(path[i + 1], int) else {}
        doc = doc[key]
    last = path[-1]
    if isinstance(doc, list) and last >= len(doc):
        doc.append(value)
    else:
        doc[last] = value


def replace_in(obj: Any, path: Path_, value: Any) -> Any:
    """``obj`` with the value at ``path`` replaced, without any validation (pydantic
    ``model_copy``, ``dataclasses.replace``, plain dict/list/tuple copies)."""
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(obj, BaseModel):
        return obj.model_copy(update={key: replace_in(getattr(obj, key), rest, value)})
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{key: replace_in(getattr(obj, key), rest, value)})  # type: ignore[arg-type]
    if isinstance(obj, dict):
        out = dict(obj)
        out[key] = replace_in(obj.get(key), rest, value)
        return out
    items = list(obj)
    if key >= len(items):
        items.append(replace_in(None, rest, value))
    else:
        items[key] = replace_in(items[key], rest, value)
    return tuple(items) if isinstance(obj, tuple) else items


# ---------------------------------------------------------------- the specs fuzzed


def _ocf() -> dict[str, Any]:
    doc = onprem_doc()
    doc["service"] = {"kind": "ocf", "agent": "ocf:heartbeat:apache", "params": {"configfile": "/etc/a.conf"}}
    doc["vip"]["nic"] = "eth0"
    return doc


def _redfish() -> dict[str, Any]:
    """node2's BMC names its system (Dell iDRAC), node1's leaves it to the agent's discovery:
    systems_uri is sent only when set, so the fuzzed one is in the clean rendering as well."""
    doc = onprem_doc("fence_redfish")
    doc["fencing"][0]["nodes"]["node2"]["systems_uri"] = "/redfish/v1/Systems/System.Embedded.1"
    return doc


def _systemd() -> dict[str, Any]:
    doc = onprem_doc("sbd")
    doc["service"] = {"kind": "systemd", "unit": "postgresql.service"}
    return doc


def _aws_provider() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "templates/init/aws.yaml").read_text())
    doc["nodes"][0]["id"] = "i-0123456789abcdef0"
    doc["nodes"][1]["id"] = "i-0123456789abcdef1"
    return doc


def _azure_provider() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "templates/init/azure.yaml").read_text())
    return doc


BASES: dict[str, Callable[[], dict[str, Any]]] = {
    "ipmi": lambda: onprem_doc(profile="azure"),  # azure profile: a sysctl.d file as well
    "redfish": _redfish,
    "sbd": lambda: onprem_doc("sbd"),
    "aws": lambda: onprem_doc("fence_aws", "aws-vpc-move-ip", "aws"),
    "azure": lambda: onprem_doc("fence_azure_arm", "azure-lb", "azure"),
    "awseip": lambda: onprem_doc("fence_ipmilan", "awseip"),
    "ocf": _ocf,
    "sysctl": lambda: {**onprem_doc(profile="azure"), "overrides": {"sysctl.vm.dirty_ratio": 10}},
    "systemd": _systemd,
    "aws-provider": _aws_provider,
    "azure-provider": _azure_provider,
}

# (base, path, bypass): every free-text field of the spec. bypass=False where a value that
# skipped validation is parsed rather than written (versions) or is a key other parts of the
# spec must match (names), which the loader's cross-field rules own.
SPEC_FIELDS: list[tuple[str, Path_, bool]] = [
    ("ipmi", ("cluster", "name"), True),
    ("ipmi", ("nodes", 0, "name"), False),
    ("ipmi", ("nodes", 0, "address"), True),
    ("ipmi", ("nodes", 0, "links", 0), True),
    ("ipmi", ("nodes", 0, "links", 1), True),
    ("ipmi", ("nodes", 0, "replication_address"), True),
    ("ipmi", ("nodes", 0, "volumes", "r0"), True),
    ("ipmi", ("nodes", 0, "ssh", "user"), True),
    ("ipmi", ("nodes", 0, "ssh", "jump"), True),
    ("ipmi", ("nodes", 0, "id"), True),
    ("ipmi", ("volumes", 0, "name"), False),
    ("ipmi", ("volumes", 0, "mount_point"), True),
    ("ipmi", ("volumes", 0, "mount_options"), True),
    ("sbd", ("volumes", 0, "device"), True),
    ("ipmi", ("vip", "address"), True),
    ("ipmi", ("fencing", 0, "nodes", "node1", "ip"), True),
    ("ipmi", ("fencing", 0, "nodes", "node1", "username"), True),
    ("ipmi", ("fencing", 0, "nodes", "node1", "password_file"), True),
    ("redfish", ("fencing", 0, "nodes", "node2", "username"), True),
    ("redfish", ("fencing", 0, "nodes", "node2", "systems_uri"), True),
    ("redfish", ("fencing", 0, "nodes", "node2", "password_env"), True),
    ("sbd", ("fencing", 0, "devices", 0), True),
    ("sbd", ("fencing", 0, "watchdog_device"), True),
    ("aws", ("fencing", 0, "region"), True),
    ("aws", ("fencing", 0, "nodes", "node1", "instance_id"), True),
    ("aws", ("vip", "interface"), True),
    ("aws", ("vip", "route_tables", 0), True),
    ("awseip", ("vip", "allocation_id"), True),
    ("azure", ("fencing", 0, "subscription_id"), True),
    ("azure", ("fencing", 0, "resource_group"), True),
    ("ocf", ("service", "agent"), False),
    ("ocf", ("service", "params", "configfile"), True),
    ("ocf", ("vip", "nic"), True),
    ("systemd", ("service", "unit"), True),
    ("aws-provider", ("provider", "options", "region"), True),
    ("aws-provider", ("provider", "options", "instance_type"), True),
    ("aws-provider", ("provider", "options", "key_name"), True),
    ("aws-provider", ("provider", "options", "subnets", 0), True),
    ("aws-provider", ("provider", "options", "admin_cidr"), True),
    ("aws-provider", ("nodes", 0, "id"), True),
    ("azure-provider", ("provider", "options", "resource_group"), True),
    ("azure-provider", ("provider", "options", "location"), True),
    ("azure-provider", ("provider", "options", "subscription_id"), True),
    ("azure-provider", ("provider", "options", "vm_size"), True),
    ("azure-provider", ("provider", "options", "admin_user"), True),
    ("azure-provider", ("provider", "options", "arm_endpoint"), True),
    ("azure-provider", ("provider", "options", "subnet_id"), True),
    ("azure-provider", ("provider", "options", "zones", 0), True),
    ("azure-provider", ("provider", "options", "image"), True),
    ("aws-provider", ("provider", "options", "ami"), True),
    ("aws-provider", ("provider", "options", "tags", "team"), True),
    ("aws-provider", ("vip", "route_tables", 1), True),
    ("ipmi", ("overrides", "drbd.after_sb_2pri"), True),
    ("ipmi", ("overrides", "drbd.on_io_error"), True),
    ("ipmi", ("overrides", "drbd.c_max_rate"), True),
    ("ipmi", ("overrides", "drbd.c_fill_target"), True),
    ("ipmi", ("overrides", "pacemaker.stonith_action"), True),
    ("ipmi", ("overrides", "sysctl.vm.swappiness"), True),
    ("ipmi", ("overrides", "platform.pacemaker"), False),
    ("ipmi", ("targets", "pacemaker"), False),
]
# Values that are dictionary keys: an OCF parameter name, a sysctl name.
KEY_FIELDS: list[tuple[str, Path_, str]] = [
    ("ocf", ("service", "params"), "configfile"),
    ("sysctl", ("overrides",), "sysctl.vm.dirty_ratio"),
]


def _value_at(doc: dict[str, Any], path: Path_) -> str:
    try:
        value = doc
        for key in path:
            value = value[key]
        return str(value)
    except (KeyError, IndexError, TypeError):
        return ""


@cache
def _clean(base: str) -> tuple[Spec, Bundle, Inventory]:
    spec = spec_of(BASES[base]())
    inv = get_provider(spec.provider.kind).planned_inventory(spec)
    return spec, render(spec, inv), inv


def render(spec: Spec, inventory: Inventory | None = None) -> Bundle:
    from conftest import FIXED_SECRETS

    inv = inventory or get_provider(spec.provider.kind).planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    return render_all(spec, inv, profile, FIXED_SECRETS)


# ---------------------------------------------------------------- the judges

SENTINEL = "zq9sentinel"


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


_judged: set[str] = set()


def _once(kind: str, *parts: str | bytes) -> bool:
    """True the first time this artefact is seen: real tools judge each distinct one once
    (memoising a pure judgement of identical bytes)."""
    key = _digest(kind, *parts)
    if key in _judged:
        return False
    _judged.add(key)
    return True


def _sets(root: ET.Element) -> list[list[str]]:
    return [
        [nv.get("name", "") for nv in s.iterfind("nvpair")]
        for s in root.iter()
        if s.find("nvpair") is not None
    ]


def _values(root: ET.Element) -> list[str]:
    return [nv.get("value", "") for nv in root.iter("nvpair")]


def judge_cib(
    cib: str, clean: str, marked: str | None, value: str | None, tmp: Path, key_field: bool, bypassed: bool
) -> None:
    """Same elements, same parameter sets (same names unless a name was fuzzed), crm_verify
    accepts it; with ``marked`` (the CIB rendered with SENTINEL in the field) every parameter
    value reads back as the marked one with SENTINEL replaced by ``value``: field by field."""
    root, base = cib_tree(cib), cib_tree(clean)
    assert [e.tag for e in root.iter()] == [e.tag for e in base.iter()], "an element was added or lost"
    if key_field:
        assert [len(s) for s in _sets(root)] == [len(s) for s in _sets(base)], "a parameter was added"
    else:
        assert _sets(root) == _sets(base), "a parameter was added, lost or renamed"
    if marked is not None and value is not None:
        for got, want in zip(_values(root), _values(cib_tree(marked)), strict=True):
            assert got in (want.replace(SENTINEL, value), want.replace(SENTINEL, value.rstrip("/"))), (
                got,
                want,
            )
    if _once("cib", cib):
        try:
            crm_verify(cib, tmp)
        except AssertionError as exc:
            # Past the loader, Pacemaker may refuse the whole CIB (which adds nothing) for a value
            # that is no XML ID, or for a slot that takes no free text at all (the same CIB with
            # a plain word there fails too, e.g. fencing-action): the grammar's job, not escaping's.
            if not bypassed:
                raise
            if not (
                _cib_line_rejected(value, str(exc), cib)
                or (marked is not None and not _verifies(marked, tmp))
            ):
                raise


@cache
def _verifies_cached(cib: str, tmp: str) -> bool:
    try:
        crm_verify(cib, Path(tmp))
    except AssertionError:
        return False
    return True


def _verifies(cib: str, tmp: Path) -> bool:
    return _verifies_cached(cib, str(tmp))


def _cib_line_rejected(value: str | None, message: str, cib: str) -> bool:
    """Relax-NG refused an ID built from a fuzzed name that is no XML ID (NCName)."""
    del cib
    return (
        value is not None
        and "Relax-NG validity error" in message
        and not re.fullmatch(r"[A-Za-z0-9_.-]*", value)
    )


def _file(bundle: Bundle, node: str, suffix: str) -> str | None:
    for f in bundle.files[node]:
        if f.path.endswith(suffix):
            return f.content.decode()
    return None


def _env_keys(text: str) -> list[str]:
    return [line.split("=", 1)[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _ini_keys(text: str) -> list[str]:
    return sorted(f"{s}.{k}" for s, keys in aws_config(text).items() for k in keys)


_LINE_FILES: tuple[tuple[str, Callable[[str], Any]], ...] = (
    ("90-hacloud.conf", lambda t: len(sysctl_settings(t))),
    ("/root/.aws/config", _ini_keys),
    ("/etc/default/sbd", _env_keys),
    ("/etc/sysconfig/sbd", _env_keys),
)


def _delimiters(text: str) -> str:
    """The statements, blocks and strings of a DRBD file as drbdadm's scanner sees them
    (``"..."`` with backslash escapes is one string, ``#`` starts a comment): a value that
    added a directive or a section would add a delimiter."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append("S")
        elif c in ";{}":
            out.append(c)
        i += 1
    return "".join(out)


def _rejected_for(value: str | None, message: str, files: dict[str, str] | None = None) -> bool:
    """A tool's refusal that points at the fuzzed value (by name, or at a line of one of
    ``files`` that holds it): the value is invalid where it stands, e.g. a bypassed address
    that is no address. That adds nothing; accepted values never get here (``value`` None)."""
    if not value or not value.strip():
        return False
    if value.strip() in message:
        return True
    for m in re.finditer(r"(/etc/\S+?):(\d+): Parse error", message):
        lines = (files or {}).get(m.group(1), "").splitlines()
        n = int(m.group(2))
        if 0 < n <= len(lines) and value.strip() in lines[n - 1]:
            return True
    return False


def judge_drbd(bundle: Bundle, clean: Bundle, node: str, tmp: Path, value: str | None) -> None:
    res = [f.content for f in bundle.files[node] if f.path.startswith("/etc/drbd.d/")]
    base = [f.content for f in clean.files[node] if f.path.startswith("/etc/drbd.d/")]
    assert [_delimiters(r.decode()) for r in res] == [_delimiters(b.decode()) for b in base]
    if not _once("drbd", node, *res):
        return
    try:
        dump = drbd_dump(bundle, node, tmp)
    except AssertionError as exc:
        files = {f.path: f.content.decode() for f in bundle.files[node] if f.path.startswith("/etc/drbd.d/")}
        if _rejected_for(value, str(exc), files):
            return
        raise
    got, want = drbd_structure(dump), drbd_structure(_clean_dump(clean, node, tmp))
    for key in ("resources", "hosts", "options", "two_primaries", "protocols"):
        assert got[key] == want[key], (key, got[key], want[key])
    for key in ("disks", "addresses"):
        assert len(got[key]) == len(want[key]), (key, got[key])  # type: ignore[arg-type]


def judge_corosync(bundle: Bundle, clean: Bundle, node: str, tmp: Path, value: str | None) -> None:
    conf, base = _file(bundle, node, "corosync/corosync.conf"), _file(clean, node, "corosync/corosync.conf")
    assert conf is not None and base is not None
    assert [(d, k) for d, k, _ in corosync_tree(conf)] == [(d, k) for d, k, _ in corosync_tree(base)]
    if _once("corosync", conf):
        root = write_files(bundle, node, tmp / f"c-{_digest(conf)[:8]}")
        mine = [a for n, a in _rings(conf) if n == node]
        # the log directory of the clean file: the node's package makes that one, no other
        proc = corosync_test(conf, root / "etc/corosync/authkey", mine, tmp, corosync_log_dir(base))
        assert proc.returncode == 0 or _rejected_for(value, proc.stdout + proc.stderr), (
            proc.stdout + proc.stderr
        )


def judge_agent(bundle: Bundle, node: str, tmp: Path) -> None:
    agent = _file(bundle, node, "/hacloud/demo")
    if agent is None or not _once("agent", agent):
        return
    sh_syntax_ok(agent)
    for action in ("meta-data", "validate-all"):
        out, planted = sandboxed(agent, [action], tmp)
        assert not planted, action
        if action == "meta-data":
            ET.fromstring(out)


def judge_files(bundle: Bundle, clean: Bundle, tmp: Path, rejectable: str | None) -> None:
    for node in clean.files:
        assert [f.path for f in bundle.files[node]] == [f.path for f in clean.files[node]]
        judge_drbd(bundle, clean, node, tmp, rejectable)
        judge_corosync(bundle, clean, node, tmp, rejectable)
        for suffix, parse in _LINE_FILES:
            text, base = _file(bundle, node, suffix), _file(clean, node, suffix)
            if base is not None:
                # the same keys (sysctl: no more settings: a fuzzed key may not be a sysctl one)
                assert text is not None, suffix
                if suffix == "90-hacloud.conf":
                    assert parse(text) <= parse(base), text
                else:
                    assert parse(text) == parse(base), suffix
        judge_agent(bundle, node, tmp)


_CLEAN_DUMPS: dict[str, str] = {}


def _clean_dump(clean: Bundle, node: str, tmp: Path) -> str:
    key = _digest(node, *[f.content for f in clean.files[node] if f.path.startswith("/etc/drbd.d/")])
    if key not in _CLEAN_DUMPS:
        _CLEAN_DUMPS[key] = drbd_dump(clean, node, tmp)
    return _CLEAN_DUMPS[key]


def _rings(conf: str) -> list[tuple[str, str]]:
    """(node name, address) of every ringN_addr, so each node's addresses go on its lo."""
    out: list[tuple[str, str]] = []
    name = ""
    for line in conf.splitlines():
        if m := re.match(r"\s*name:\s*(\S+)", line):
            name = m.group(1)
        if m := re.match(r"\s*ring\d+_addr:\s*(\S+)", line):
            out.append((name, m.group(1)))
    return out


def judge_node_checks(spec: Spec, inventory: Inventory | None, tmp: Path) -> None:
    """The provider's pre-fencing checks run as root shell lines on the nodes: each parses
    (``sh -n``) and, run without network in a sandbox, plants no marker."""
    inv = inventory or get_provider(spec.provider.kind).planned_inventory(spec)
    for check in get_provider(spec.provider.kind).node_needs(spec, inv).probes:
        if _once("check", check.command):
            sh_syntax_ok(check.command)
            _, planted = sandboxed(check.command, [], tmp, (_stubs(tmp),))
            assert not planted, check.command


def _stubs(tmp: Path) -> Path:
    """Quiet stand-ins for the programs the checks call (the shell line is under test, not
    the AWS CLI, whose start-up alone costs half a second)."""
    stubs = tmp / "stubs"
    if not stubs.exists():
        stubs.mkdir()
        for name in ("aws", "fence_aws", "fence_azure_arm", "curl", "python3"):
            (stubs / name).write_text("#!/bin/sh\nexit 0\n")
            (stubs / name).chmod(0o755)
    return stubs


def judge(
    bundle: Bundle,
    clean: Bundle,
    tmp: Path,
    marked: Bundle | None = None,
    value: str | None = None,
    key: bool = False,
    bypassed: bool = False,
) -> None:
    """All judges. ``bypassed``: the value skipped validation, so drbdadm/corosync may refuse
    the file, but only for that value (accepted values must pass the tools)."""
    judge_cib(bundle.cib, clean.cib, marked.cib if marked else None, value, tmp, key, bypassed)
    judge_files(bundle, clean, tmp, value if bypassed else None)


# ---------------------------------------------------------------- spec: through the loader


def _parsed(doc: dict[str, Any]) -> Spec | None:
    try:
        spec = spec_of(doc)
    except SpecError as exc:
        assert exc.exit_code == 2 and exc.problems
        assert all(p.message and p.remedy for p in exc.problems)
        event("refused by the loader")
        return None
    event("accepted by the loader, rendered and judged")
    return spec


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("crm_verify", "crm_simulate", "drbdadm", "corosync", "ip", "unshare")
    return tmp_path_factory.mktemp("fuzz")


def _ids(fields: list[tuple[Any, ...]]) -> list[str]:
    return [f"{f[0]}:{'.'.join(map(str, f[1]))}" for f in fields]


@pytest.mark.parametrize(("base", "path", "bypass"), SPEC_FIELDS, ids=_ids(SPEC_FIELDS))
@FUZZ
@given(data=st.data())
def test_spec_field_through_the_loader(
    base: str, path: Path_, bypass: bool, data: st.DataObject, tmp: Path
) -> None:
    doc = BASES[base]()
    value = data.draw(hostile(_value_at(doc, path)), label="value")
    set_in_doc(doc, path, value)
    spec = _parsed(doc)
    if spec is None:
        return
    clean_spec, clean, _ = _clean(base)
    bundle = render(spec)  # accepted by the grammar: it must render, no UnsafeValue
    judge_node_checks(spec, None, tmp)
    same = str(get_in(spec, path)) == value if bypass else False
    marked = render(replace_in(clean_spec, path, SENTINEL)) if same else None
    judge(bundle, clean, tmp, marked, value if same else None)


@pytest.mark.parametrize(
    ("base", "path", "bypass"), [f for f in SPEC_FIELDS if f[2]], ids=_ids([f for f in SPEC_FIELDS if f[2]])
)
@FUZZ
@given(data=st.data())
def test_spec_field_past_the_loader(
    base: str, path: Path_, bypass: bool, data: st.DataObject, tmp: Path
) -> None:
    clean_spec, clean, _ = _clean(base)
    current = get_in(clean_spec, path)
    value = data.draw(hostile("" if current is None else str(current)), label="value")
    spec = replace_in(clean_spec, path, value)
    try:
        bundle = render(spec)
    except HacloudError as exc:  # the render-side guard (UnsafeValue): refused, exit 2
        assert exc.exit_code == 2 and "refusing to write" in exc.message
        event("past the loader: refused by the render guard")
        return
    event("past the loader: written and judged")
    judge(bundle, clean, tmp, render(replace_in(clean_spec, path, SENTINEL)), value, bypassed=True)
    judge_node_checks(spec, None, tmp)


@pytest.mark.parametrize(("base", "path", "key"), KEY_FIELDS, ids=[f"{b}:{k}" for b, _, k in KEY_FIELDS])
@FUZZ
@given(data=st.data())
def test_spec_key_both_ways(base: str, path: Path_, key: str, data: st.DataObject, tmp: Path) -> None:
    clean_spec, clean, _ = _clean(base)
    name = data.draw(hostile(key), label="name")
    doc = BASES[base]()
    mapping = doc
    for step in path:
        mapping = mapping.setdefault(step, {})
    mapping[name] = mapping.pop(key, 1)
    spec = _parsed(doc)
    if spec is not None:
        judge(render(spec), clean, tmp, value=name, key=True)
    old = dict(get_in(clean_spec, path))
    old[name] = old.pop(key, 1)
    try:
        bundle = render(replace_in(clean_spec, path, old))
    except HacloudError as exc:  # the render-side guard (UnsafeValue): refused, exit 2
        assert exc.exit_code == 2 and "refusing to write" in exc.message
        event("past the loader: refused by the render guard")
        return
    event("past the loader: written and judged")
    judge(bundle, clean, tmp, value=name, key=True, bypassed=True)


# ---------------------------------------------------------------- inventory: both ways

INVENTORY_FIELDS: list[tuple[str, Path_]] = [
    ("ipmi", ("nodes", 0, "links", 0)),
    ("ipmi", ("nodes", 1, "links", 1)),
    ("ipmi", ("nodes", 0, "replication_address")),
    ("ipmi", ("nodes", 0, "ssh_address")),
    ("ipmi", ("nodes", 0, "volumes", "r0")),
    ("ipmi", ("nodes", 0, "zone")),
    ("ipmi", ("nodes", 0, "bmc_address")),
    ("ipmi", ("nodes", 0, "extra", "subnet")),
    ("ipmi", ("network", "vpc_cidr")),
    ("ipmi", ("network", "route_tables", 0)),
    ("aws-provider", ("nodes", 0, "id")),
    ("azure-provider", ("nodes", 1, "id")),
]


def _real(inv: Inventory) -> Inventory:
    """The planned inventory as a provider reports it once the machines exist."""
    ids = {"aws": ("i-0123456789abcdef0", "i-0123456789abcdef1"), "azure": ("node1", "node2")}.get(
        inv.provider
    )
    nodes = tuple(
        dataclasses.replace(n, placeholder=False, id=ids[i] if ids else n.id) for i, n in enumerate(inv.nodes)
    )
    return dataclasses.replace(inv, nodes=(nodes[0], nodes[1]))


@pytest.mark.parametrize(("base", "path"), INVENTORY_FIELDS, ids=_ids(INVENTORY_FIELDS))
@FUZZ
@given(data=st.data())
def test_inventory_field_both_ways(base: str, path: Path_, data: st.DataObject, tmp: Path) -> None:
    spec, _, planned = _clean(base)
    inv = _real(planned)
    clean = render(spec, inv)
    raw = json.loads(inv.to_json())
    start = _value_at(raw, path) or "x"
    value = data.draw(hostile(start), label="value")
    # through the loader: the inventory grammar, then the match with the spec
    set_in_doc(raw, path, value)
    try:
        loaded = INVENTORY_ADAPTER.validate_python(raw)
        check_inventory_matches(spec, loaded, "inventory.json")
    except (ValidationError, SpecError):
        loaded = None
    if loaded is not None:
        judge(render(spec, loaded), clean, tmp)
        judge_node_checks(spec, loaded, tmp)
    # past the loader
    try:
        bundle = render(spec, replace_in(inv, path, value))
    except HacloudError as exc:  # the render-side guard (UnsafeValue): refused, exit 2
        assert exc.exit_code == 2 and "refusing to write" in exc.message
        event("past the loader: refused by the render guard")
        return
    event("past the loader: written and judged")
    judge(bundle, clean, tmp, render(spec, replace_in(inv, path, SENTINEL)), value, bypassed=True)
    judge_node_checks(spec, replace_in(inv, path, value), tmp)


# ---------------------------------------------------------------- Terraform import


def azure_state(**node1: Any) -> dict[str, Any]:
    """A hand-written azurerm state (format 4): two Linux VMs, each with a data disk at LUN 0."""
    rg = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"

    def vm(vm_name: str, i: int, **attrs: Any) -> dict[str, Any]:
        base = {
            "id": f"{rg}/providers/Microsoft.Compute/virtualMachines/{vm_name}",
            "name": vm_name,
            "computer_name": vm_name,
            "private_ip_address": f"192.0.2.{11 + i}",
            "zone": str(i + 1),
        }
        base.update(attrs)
        return {
            "mode": "managed",
            "type": "azurerm_linux_virtual_machine",
            "name": vm_name,
            "instances": [{"attributes": base}],
        }

    vms = [vm("node1", 0, **node1), vm("node2", 1)]
    attach = [
        {
            "mode": "managed",
            "type": "azurerm_virtual_machine_data_disk_attachment",
            "name": f"d{i}",
            "instances": [
                {"attributes": {"virtual_machine_id": v["instances"][0]["attributes"]["id"], "lun": 0}}
            ],
        }
        for i, v in enumerate(vms)
    ]
    return {"version": 4, "terraform_version": "1.9.0", "resources": [*vms, *attach], "outputs": {}}


# ---------------------------------------------------------------- Terraform import


TF_FIELDS: list[tuple[str, tuple[str, ...], str]] = [
    ("aws", ("id",), "i-0123456789abcdef0"),
    ("aws", ("private_ip",), "192.0.2.11"),
    ("aws", ("public_ip",), "198.51.100.11"),
    ("aws", ("availability_zone",), "eu-central-1a"),
    ("aws", ("tags", "Name"), "node1"),
    ("aws", ("volume_id",), "vol-0123456789abcdef0"),
    ("azure", ("name",), "node1"),
    ("azure", ("computer_name",), "node1"),
    ("azure", ("private_ip_address",), "192.0.2.11"),
    ("azure", ("zone",), "1"),
]


def _state(kind: str, field: tuple[str, ...], value: str) -> dict[str, Any]:
    from test_injection import aws_state

    if kind == "azure":
        return azure_state(**{field[0]: value})
    if field == ("volume_id",):
        return aws_state(_volume=value)
    if field == ("tags", "Name"):
        return aws_state(tags={"Name": value})
    return aws_state(**{field[0]: value})


@pytest.mark.parametrize(
    ("kind", "field", "base"), TF_FIELDS, ids=[f"{k}:{'.'.join(f)}" for k, f, _ in TF_FIELDS]
)
@FUZZ
@given(data=st.data())
def test_terraform_value_through_the_import(
    kind: str, field: tuple[str, ...], base: str, data: st.DataObject, tmp: Path
) -> None:
    from hacloud.provision.terraform import TerraformSource, import_inventory

    spec = spec_of(_tf_doc(kind))
    value = data.draw(hostile(base), label="value")
    file = tmp / f"state-{_digest(kind, value)[:10]}.tfstate"
    file.write_text(json.dumps(_state(kind, field, value)))
    try:
        inv = import_inventory(spec, TerraformSource(file), get_provider(kind)).inventory
    except SpecError as exc:
        assert exc.exit_code == 2 and exc.problems
        event("refused on import")
        return
    except HacloudError as exc:  # e.g. the Name tag no longer picks a node: listed, exit 1
        assert exc.remedy and "refusing to write" not in exc.message
        event("refused on import (no node matches)")
        return
    event("imported, rendered and judged")
    clean_file = tmp / f"clean-{kind}.tfstate"
    clean_file.write_text(json.dumps(_state(kind, field, base)))
    clean = render(spec, import_inventory(spec, TerraformSource(clean_file), get_provider(kind)).inventory)
    judge(render(spec, inv), clean, tmp)
    judge_node_checks(spec, inv, tmp)


def _tf_doc(kind: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / f"templates/init/{kind}.yaml").read_text())
    if kind == "aws":
        doc["provider"]["options"]["ssh_address"] = "public"
    return doc


@pytest.mark.parametrize("kind", ["aws", "azure"])
def test_the_clean_hand_written_states_import(kind: str, tmp_path: Path) -> None:
    """The fuzzed states are real imports: unchanged, both nodes come out with their disk."""
    from hacloud.provision.terraform import TerraformSource, import_inventory

    file = tmp_path / "terraform.tfstate"
    file.write_text(
        json.dumps(
            _state(
                kind, ("id",) if kind == "aws" else ("zone",), "i-0123456789abcdef0" if kind == "aws" else "1"
            )
        )
    )
    inv = import_inventory(spec_of(_tf_doc(kind)), TerraformSource(file), get_provider(kind)).inventory
    assert [n.name for n in inv.nodes] == ["node1", "node2"]
    assert all(len(n.volumes) == 1 and n.links for n in inv.nodes)
    hostile = "node1'; touch INJECTED; '" if kind == "azure" else "i-0'; touch INJECTED; '"
    file.write_text(json.dumps(_state(kind, ("name",) if kind == "azure" else ("id",), hostile)))
    with pytest.raises(SpecError) as err:
        import_inventory(spec_of(_tf_doc(kind)), TerraformSource(file), get_provider(kind))
    assert "nodes[0].id" in [p.path for p in err.value.problems]
