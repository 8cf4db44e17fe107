"""Values only the nodes can supply (issue 15 items 7, 8, 18; item 3 is in test_render_tools):
the primary interface, the service's own start/stop limits and umbrella units.

The facts script's probes run for real here: `ip` inside a network namespace made by the test,
the OCF agents' own meta-data, and the `systemctl show` lines against a stand-in that answers
with the real unit files' values as systemd formats them (`systemd-analyze timespan`: this
machine runs no systemd manager). What they read is rendered, and the render is judged by
independent tools: the kernel's interface list, `crm_resource --show-metadata`, `crm_verify`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXED_SECRETS, REPO, need, onprem_doc, spec_of
from tools import run, with_quorum

from hacloud.deploy.facts import IFACE_PROBE, node_facts, parse_facts, service_probe, systemd_seconds
from hacloud.errors import HacloudError
from hacloud.provision.provider import get_provider
from hacloud.render import Bundle, effective_profile, render_all
from hacloud.spec.inventory import Inventory, NodeFacts, ServiceLimits
from hacloud.spec.model import Spec
from hacloud.spec.profiles import load_profile
from hacloud.verify.invariants import Finding, run_checks

UNITS = Path("/lib/systemd/system")
AGENTS = Path("/usr/lib/ocf/resource.d")


def render_with(doc: dict[str, Any], facts: dict[str, NodeFacts]) -> tuple[Spec, Inventory, Bundle]:
    """Render ``doc`` for nodes whose facts are ``facts`` (node name -> facts)."""
    spec = spec_of(doc)
    inv = get_provider(spec.provider.kind).planned_inventory(spec)
    nodes = [dataclasses.replace(n, facts=facts.get(n.name, n.facts)) for n in inv.nodes]
    inv = dataclasses.replace(inv, nodes=(nodes[0], nodes[1]))
    profile = effective_profile(spec, load_profile(spec.profile_name))
    return spec, inv, render_all(spec, inv, profile, FIXED_SECRETS, {})


def findings(spec: Spec, inv: Inventory, bundle: Bundle, code: str) -> list[Finding]:
    profile = effective_profile(spec, load_profile(spec.profile_name))
    return [f for f in run_checks(spec, inv, profile, bundle) if f.code == code]


def params(cib: str, rid: str) -> dict[str, str]:
    prim = next(p for p in ET.fromstring(cib).iter("primitive") if p.get("id") == rid)
    return {nv.get("name", ""): nv.get("value", "") for nv in prim.iterfind("./instance_attributes/nvpair")}


def op_timeouts(cib: str) -> dict[str, int]:
    """The service primitive's start/stop timeouts (seconds) as rendered."""
    prim = next(p for p in ET.fromstring(cib).iter("primitive") if p.get("id", "").startswith("svc_"))
    return {
        op.get("name", ""): int(op.get("timeout", "0").removesuffix("s"))
        for op in prim.iter("op")
        if op.get("name") in ("start", "stop")
    }


def crm_verify(cib: str, tmp_path: Path) -> None:
    """crm_verify on the CIB with both nodes up (offline, unseen nodes would be fenced first)."""
    path = tmp_path / f"cib-{uuid.uuid4().hex[:6]}.xml"
    path.write_text(with_quorum(cib))
    up = path.with_suffix(".up.xml")
    run(["crm_simulate", "-x", str(path), "-u", "node1", "-u", "node2", "-O", str(up)])
    run(["crm_verify", "-x", str(up)])


# ---------------------------------------------------------------- item 7: the primary interface


@pytest.fixture()
def nitro_netns() -> Iterator[str]:
    """A namespace shaped like a Debian/Ubuntu Nitro instance: the node's address on ``ens5``, a
    second network on ``ens6`` that carries the default route (so the address, not the route,
    must decide), no eth0. veth pairs: not every kernel has the dummy module."""
    need("ip")
    ns = f"hacloud-nf-{uuid.uuid4().hex[:8]}"
    run(["ip", "netns", "add", ns])
    try:
        for dev, peer, addr in (("ens5", "ens5p", "192.0.2.11/24"), ("ens6", "ens6p", "198.51.100.11/24")):
            run(["ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", peer])
            run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
            for d in (dev, peer):
                run(["ip", "-n", ns, "link", "set", d, "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", "198.51.100.1", "dev", "ens6"])
        yield ns
    finally:
        run(["ip", "netns", "del", ns], check=False)


def _in_ns(ns: str, script: str) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ns, "sh", "-c", script], check=False)


def _aws_doc(**vip: str) -> dict[str, Any]:
    doc = onprem_doc(vip="aws-vpc-move-ip", fencing="fence_ipmilan")
    doc["vip"].update(vip)
    return doc


@pytest.mark.tools
def test_the_overlay_ip_goes_on_the_interface_holding_the_nodes_address(nitro_netns: str) -> None:
    text = _in_ns(nitro_netns, IFACE_PROBE).stdout
    host = parse_facts("node1", text)
    spec = spec_of(_aws_doc())
    node1 = get_provider("onprem").planned_inventory(spec).nodes[0]  # links 192.0.2.11, 198.51.100.11
    facts = node_facts(host, node1)
    assert host.default_interface == "ens6"
    assert facts.primary_interface == "ens5"  # the node's address is there, not the default route

    spec, inv, bundle = render_with(_aws_doc(), {"node1": facts, "node2": facts})
    iface = params(bundle.cib, "vip_aws")["interface"]
    # The step that failed with the old eth0: the agent's own `ip addr add` (aws-vpc-move-ip
    # ec2ip_get_and_configure), run with the rendered interface in the node's namespace.
    added = _in_ns(nitro_netns, f"ip addr add 192.168.200.10/32 dev {iface}")
    assert added.returncode == 0, added.stderr
    # and the interface carries the node's own address (so its ENI is the node's)
    shown = _in_ns(nitro_netns, f"ip -o -4 addr show dev {iface}").stdout
    assert "192.0.2.11/24" in shown
    assert [f.severity for f in findings(spec, inv, bundle, "HAC091")] == ["ok"]


def test_a_spec_interface_wins_and_check_flags_the_mismatch() -> None:
    facts = NodeFacts(primary_interface="ens5")
    spec, inv, bundle = render_with(_aws_doc(interface="eth1"), {"node1": facts, "node2": facts})
    assert params(bundle.cib, "vip_aws")["interface"] == "eth1"
    found = findings(spec, inv, bundle, "HAC091")
    assert [f.severity for f in found] == ["warning"] and "ens5" in found[0].message


def test_an_unknown_interface_is_reported_and_a_split_one_refused() -> None:
    spec, inv, bundle = render_with(_aws_doc(), {})
    assert params(bundle.cib, "vip_aws")["interface"] == "eth0"  # the agent's own default
    found = findings(spec, inv, bundle, "HAC091")
    assert [f.severity for f in found] == ["warning"] and "not known" in found[0].message
    # nothing to say where the interface does not matter (IPaddr2 finds its own)
    s2, i2, b2 = render_with(onprem_doc(), {})
    assert findings(s2, i2, b2, "HAC091") == []
    with pytest.raises(HacloudError) as err:
        render_with(
            _aws_doc(),
            {"node1": NodeFacts(primary_interface="ens5"), "node2": NodeFacts(primary_interface="eth0")},
        )
    assert "node1 ens5" in err.value.args[0] and "node2 eth0" in err.value.args[0]


# ---------------------------------------------------------------- item 8: service timeouts


def _timespan(value: str) -> tuple[str, int]:
    """(how systemd prints ``value``, its microseconds), from systemd's own formatter."""
    out = run(["systemd-analyze", "timespan", value]).stdout
    human = re.search(r"Human:\s*(.+)", out)
    usec = re.search(r"μs:\s*(\d+)", out)
    assert human and usec, out
    return human.group(1).strip(), int(usec.group(1))


@pytest.mark.tools
@pytest.mark.parametrize("value", ["90s", "1h", "5min 20s", "1.5s", "2d 3h", "250ms", "infinity", "0"])
def test_systemd_time_spans_read_as_systemd_means_them(value: str) -> None:
    need("systemd-analyze")
    human, usec = _timespan(value)
    # systemd.service(5): "infinity" disables the timeout; 0 is read the same way
    want = None if usec in (0, 2**64 - 1) else math.ceil(usec / 1e6)
    assert systemd_seconds(human) == want


def _unit_keys(path: Path) -> dict[str, str]:
    keys: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            k, _, v = line.partition("=")
            keys[k.strip()] = v.strip()
    return keys


def _default_timeout() -> str:
    """systemd's DefaultTimeoutStartSec/StopSec as this machine's system.conf documents it."""
    conf = Path("/etc/systemd/system.conf").read_text()
    m = re.search(r"^#?DefaultTimeoutStartSec=(\S+)", conf, re.MULTILINE)
    return m.group(1) if m else "90s"


def _show_text(unit_file: Path) -> str:
    """What `systemctl show -p LoadState,Type,RemainAfterExit,TimeoutStartUSec,TimeoutStopUSec`
    prints for a unit file: values from the file (defaults from system.conf), time spans in
    systemd's own format, TimeoutStartSec=0 as infinity (systemd.service(5)), booleans as yes/no."""
    keys = _unit_keys(unit_file)

    def span(key: str) -> str:
        value = keys.get(key, _default_timeout())
        return "infinity" if value in ("0", "infinity") else _timespan(value)[0]

    remain = keys.get("RemainAfterExit", "no").lower() in ("yes", "on", "true", "1")
    return (
        "LoadState=loaded\n"
        f"Type={keys.get('Type', 'simple')}\n"
        f"RemainAfterExit={'yes' if remain else 'no'}\n"
        f"TimeoutStartUSec={span('TimeoutStartSec')}\n"
        f"TimeoutStopUSec={span('TimeoutStopSec')}\n"
    )


def _probe_with_systemctl(unit: str, unit_file: Path, tmp_path: Path) -> ServiceLimits | None:
    """Run the facts script's service lines with a `systemctl` on PATH that answers `show` for
    ``unit`` as systemd would for ``unit_file``, and parse the result."""
    stub = tmp_path / "bin" / "systemctl"
    stub.parent.mkdir(exist_ok=True)
    answer = tmp_path / f"{unit}.show"
    answer.write_text(_show_text(unit_file))
    stub.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = show ] && [ "$(eval echo \\${{$#}})" = {unit} ] && exec cat {answer}\n'
        "echo 'Failed to connect to bus' >&2; exit 1\n"
    )
    stub.chmod(0o755)
    out = run(["sh", "-c", f"PATH={stub.parent}:$PATH; {service_probe(f'systemd:{unit}')}"]).stdout
    return parse_facts("node1", out).service


def _systemd_doc(unit: str, **timeouts: int) -> dict[str, Any]:
    doc = onprem_doc()
    doc["service"] = {"kind": "systemd", "unit": unit, **timeouts}
    return doc


@pytest.mark.tools
def test_unit_limits_from_the_real_unit_files(tmp_path: Path) -> None:
    need("systemd-analyze", "crm_verify", "crm_simulate")
    if not (UNITS / "postgresql@.service").exists():
        pytest.skip("postgresql-common is not installed")
    ssh = _probe_with_systemctl("ssh.service", UNITS / "ssh.service", tmp_path)
    pg = _probe_with_systemctl("postgresql@15-main.service", UNITS / "postgresql@.service", tmp_path)
    umbrella = _probe_with_systemctl("postgresql.service", UNITS / "postgresql.service", tmp_path)
    default = math.ceil(_timespan(_default_timeout())[1] / 1e6)
    assert ssh == ServiceLimits("systemd:ssh.service", default, default, False)
    # postgresql@.service: TimeoutStartSec=0 ("recovery might take arbitrarily long"), TimeoutStopSec=1h
    stop = math.ceil(_timespan(_unit_keys(UNITS / "postgresql@.service")["TimeoutStopSec"])[1] / 1e6)
    assert pg == ServiceLimits("systemd:postgresql@15-main.service", None, stop, False)
    assert umbrella is not None and umbrella.stays_active

    # rendered: never below the unit's own limits, and the CIB is valid
    spec, inv, bundle = render_with(
        _systemd_doc("postgresql@15-main.service"), {"node1": NodeFacts(service=pg)}
    )
    got = op_timeouts(bundle.cib)
    profile = load_profile("onprem")
    assert got["stop"] > stop
    assert got["start"] >= profile.num("ops.service.unbounded_start_timeout") > 100
    crm_verify(bundle.cib, tmp_path)
    start_f, stop_f = findings(spec, inv, bundle, "HAC092"), findings(spec, inv, bundle, "HAC093")
    assert [f.severity for f in start_f] == ["warning"] and "infinity" in start_f[0].message
    assert [f.severity for f in stop_f] == ["ok"]

    # a spec value wins, and check says when it is below the unit's
    spec, inv, bundle = render_with(
        _systemd_doc("postgresql@15-main.service", stop_timeout=600), {"node1": NodeFacts(service=pg)}
    )
    assert op_timeouts(bundle.cib)["stop"] == 600
    assert [f.severity for f in findings(spec, inv, bundle, "HAC093")] == ["error"]
    # no start limit, but the operator chose one: nothing left to warn about
    spec, inv, bundle = render_with(
        _systemd_doc("postgresql@15-main.service", start_timeout=1800), {"node1": NodeFacts(service=pg)}
    )
    assert op_timeouts(bundle.cib)["start"] == 1800
    assert [f.severity for f in findings(spec, inv, bundle, "HAC092")] == ["ok"]

    spec, inv, bundle = render_with(_systemd_doc("ssh.service"), {"node2": NodeFacts(service=ssh)})
    assert op_timeouts(bundle.cib) == {"start": default + 10, "stop": default + 10}


def _advised(agent: str) -> dict[str, int]:
    """start/stop timeouts of an agent as Pacemaker itself reads its meta-data."""
    xml = run(["crm_resource", "--show-metadata", agent]).stdout
    root = ET.fromstring(xml)
    out = {}
    for action in root.iterfind("./actions/action"):
        name = action.get("name", "")
        if name in ("start", "stop"):
            m = re.fullmatch(r"(\d+)(s?)", action.get("timeout", ""))
            assert m, action.attrib
            out[name] = int(m.group(1))
    return out


@pytest.mark.tools
@pytest.mark.parametrize("agent", ["ocf:heartbeat:mysql", "ocf:heartbeat:pgsql", "ocf:heartbeat:apache"])
def test_agent_limits_from_the_real_meta_data(agent: str, tmp_path: Path) -> None:
    need("crm_resource", "crm_verify", "crm_simulate")
    _, provider, kind = agent.split(":")
    if not (AGENTS / provider / kind).exists():
        pytest.skip(f"{agent} is not installed")
    out = run(["sh", "-c", service_probe(agent)]).stdout
    limits = parse_facts("node1", out).service
    advised = _advised(agent)
    assert limits == ServiceLimits(agent, advised["start"], advised["stop"])

    doc = onprem_doc()
    doc["service"] = {"kind": "ocf", "agent": agent}
    spec, inv, bundle = render_with(
        doc, {"node1": NodeFacts(service=limits), "node2": NodeFacts(service=limits)}
    )
    got = op_timeouts(bundle.cib)
    assert got["start"] >= advised["start"] and got["stop"] >= advised["stop"]
    crm_verify(bundle.cib, tmp_path)
    assert [f.severity for f in findings(spec, inv, bundle, "HAC092")] == ["ok"]

    doc["service"]["start_timeout"] = advised["start"] - 1
    spec, inv, bundle = render_with(doc, {"node1": NodeFacts(service=limits)})
    assert op_timeouts(bundle.cib)["start"] == advised["start"] - 1
    found = findings(spec, inv, bundle, "HAC092")
    assert [f.severity for f in found] == ["error"] and f"{advised['start']}" in found[0].remedy


def test_stale_facts_about_another_service_are_ignored() -> None:
    other = ServiceLimits("systemd:other.service", 5000, 5000)
    spec, inv, bundle = render_with(_systemd_doc("ssh.service"), {"node1": NodeFacts(service=other)})
    profile = load_profile("onprem")
    want = {
        "start": profile.num("ops.service.start_timeout"),
        "stop": profile.num("ops.service.stop_timeout"),
    }
    assert op_timeouts(bundle.cib) == want
    assert [f.message for f in findings(spec, inv, bundle, "HAC092")] == [
        "the service's own start/stop limits are read from the nodes at deploy"
    ]


def test_service_timeouts_are_validated_spec_fields() -> None:
    from hacloud.errors import SpecError

    with pytest.raises(SpecError) as err:
        spec_of(_systemd_doc("ssh.service", start_timeout=0))
    report = err.value.report()
    assert "service.start_timeout" in report and "fix:" in report


# ---------------------------------------------------------------- item 18: umbrella units


def _server_unit_file(unit: str) -> Path:
    """The unit file systemd loads for ``unit`` (an instance loads its template)."""
    name = re.sub(r"@[^.]+\.service$", "@.service", unit)
    return UNITS / name


@pytest.mark.tools
def test_the_onprem_example_names_the_server_unit_not_the_umbrella() -> None:
    doc = yaml.safe_load((REPO / "templates/init/onprem.yaml").read_text())
    unit = doc["service"]["unit"]
    path = _server_unit_file(unit)
    if not path.exists():
        pytest.skip("postgresql-common is not installed")
    keys = _unit_keys(path)
    # a unit whose state follows the server: not a oneshot that remains active
    assert not (keys.get("Type") == "oneshot" and keys.get("RemainAfterExit", "no") in ("yes", "on", "true"))
    assert "ExecStart" in keys and keys["ExecStart"] != "/bin/true"
    spec = spec_of(doc)
    inv = get_provider("onprem").planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    bundle = render_all(spec, inv, profile, FIXED_SECRETS, {})
    assert [f.severity for f in findings(spec, inv, bundle, "HAC094")] == ["ok"]


@pytest.mark.tools
def test_umbrella_units_are_reported(tmp_path: Path) -> None:
    if not (UNITS / "postgresql.service").exists():
        pytest.skip("postgresql-common is not installed")
    need("systemd-analyze")
    # by name, before the nodes are read
    spec, inv, bundle = render_with(_systemd_doc("postgresql.service"), {})
    found = findings(spec, inv, bundle, "HAC094")
    assert [f.severity for f in found] == ["warning"] and "postgresql@" in found[0].remedy
    # not on nodes known to be RHEL, where postgresql.service is the server
    rhel = NodeFacts(os_family="rhel")
    spec, inv, bundle = render_with(_systemd_doc("postgresql.service"), {"node1": rhel, "node2": rhel})
    assert [f.severity for f in findings(spec, inv, bundle, "HAC094")] == ["ok"]
    # from the node's own unit (Debian's real postgresql.service), whatever its name
    limits = _probe_with_systemctl("postgresql.service", UNITS / "postgresql.service", tmp_path)
    debian = NodeFacts(os_family="debian", service=limits)
    spec, inv, bundle = render_with(_systemd_doc("postgresql"), {"node1": debian})
    assert [f.severity for f in findings(spec, inv, bundle, "HAC094")] == ["warning"]
    pg = _probe_with_systemctl("postgresql@15-main.service", UNITS / "postgresql@.service", tmp_path)
    spec, inv, bundle = render_with(
        _systemd_doc("postgresql@15-main.service"), {"node1": NodeFacts(service=pg)}
    )
    assert [f.severity for f in findings(spec, inv, bundle, "HAC094")] == ["ok"]


@pytest.mark.tools
def test_the_new_probes_run_together_in_one_script(nitro_netns: str) -> None:
    """Section by section in one run, as the facts script strings them together: an agent's
    meta-data (XML over many lines) ends neither its own section nor starts another."""
    agent = "ocf:heartbeat:mysql"
    if not (AGENTS / "heartbeat" / "mysql").exists():
        pytest.skip(f"{agent} is not installed")
    script = f"{IFACE_PROBE}\n{service_probe(agent)}echo @data-that-looks-like-a-marker\necho @end\n"
    host = parse_facts("node1", _in_ns(nitro_netns, script).stdout)
    assert host.addresses == {"192.0.2.11": "ens5", "198.51.100.11": "ens6"}
    assert host.default_interface == "ens6"
    assert host.service is not None and host.service.service == agent and host.service.start
