"""Fence devices and cluster options as the real agents and Pacemaker read them (issue 15).

Each test renders a spec and judges the result by something hacloud did not write: the fence
agent run against a BMC on loopback, the agents' and daemons' own metadata, ``crm_verify``.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import need, onprem_doc, render_doc

# ---------------------------------------------------------------- helpers


def devices(cib: str) -> dict[str, dict[str, str]]:
    """Fence device id -> its instance attributes, from the rendered CIB."""
    root = ET.fromstring(cib)
    return {
        p.get("id", ""): {
            nv.get("name", ""): nv.get("value", "") for nv in p.iterfind("./instance_attributes/nvpair")
        }
        for p in root.iter("primitive")
        if p.get("class") == "stonith"
    }


def agent_parameters(agent: str) -> set[str]:
    """The parameter names the agent itself declares (``-o metadata``), without Pacemaker's."""
    out = subprocess.run([agent, "-o", "metadata"], capture_output=True, text=True, check=True, timeout=60)
    return {p.get("name", "") for p in ET.fromstring(out.stdout).iter("parameter")}


def run_agent(agent: str, params: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The agent as pacemaker-fenced runs it: ``key=value`` lines on stdin."""
    stdin = "".join(f"{k}={v}\n" for k, v in params.items())
    return subprocess.run([agent], input=stdin, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- item 6: Redfish discovery


class _Idrac(BaseHTTPRequestHandler):
    """A Dell iDRAC's Redfish tree as far as fence_redfish walks it: the service root, the
    Systems collection, the one system at /redfish/v1/Systems/System.Embedded.1 (basic auth)."""

    system = "/redfish/v1/Systems/System.Embedded.1"
    requests: list[str]

    def log_message(self, *_args: Any) -> None:
        return None

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"root:calvin").decode():
            self._send(401, {"error": {"code": "Base.1.0.AccessDenied"}})
            return
        tree = {
            "/redfish/v1": {"Systems": {"@odata.id": "/redfish/v1/Systems"}},
            "/redfish/v1/Systems": {"Members": [{"@odata.id": self.system}]},
            self.system: {
                "PowerState": "On",
                "Actions": {
                    "#ComputerSystem.Reset": {"target": f"{self.system}/Actions/ComputerSystem.Reset"}
                },
            },
        }
        if self.path in tree:
            self._send(200, tree[self.path])
        else:
            self._send(404, {"error": {"code": "Base.1.0.ResourceMissingAtURI"}})


@pytest.fixture
def idrac(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    from fakearm import self_signed

    cert, key = self_signed(tmp_path)
    seen: list[str] = []
    handler = type("Idrac", (_Idrac,), {"requests": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def _redfish_doc(**target: Any) -> dict[str, Any]:
    doc = onprem_doc("fence_redfish")
    for bmc in doc["fencing"][0]["nodes"].values():
        bmc.update(target)
    return doc


@pytest.mark.tools
def test_redfish_device_lets_the_agent_discover_the_system(
    idrac: tuple[int, list[str]], tmp_path: Path
) -> None:
    """fence_redfish, run with exactly the parameters rendered for node2's device (the password
    through the rendered password_script), finds the iDRAC's system itself and reads its power
    state. A fixed /redfish/v1/Systems/1 (the old render) makes the same call fail."""
    need("fence_redfish")
    port, seen = idrac
    _, bundle = render_doc(_redfish_doc(ip="127.0.0.1", port=port, username="root"))
    params = devices(bundle.cib)["fence_node2"]
    assert "systems_uri" not in params
    secret = tmp_path / "node2.secret"
    secret.write_text("calvin\n")
    own = agent_parameters("fence_redfish")
    stdin = {k: v for k, v in params.items() if k in own}
    assert stdin["password_script"].endswith("/node2.secret")
    stdin["password_script"] = f"/bin/cat {secret}"
    proc = run_agent("fence_redfish", {**stdin, "action": "status"})
    assert proc.returncode == 0, proc.stderr
    assert seen[:2] == ["/redfish/v1", "/redfish/v1/Systems"]
    assert _Idrac.system in seen


@pytest.mark.tools
def test_redfish_systems_uri_is_sent_only_when_set(idrac: tuple[int, list[str]], tmp_path: Path) -> None:
    """A URI the user sets is rendered and used as is (no discovery); a wrong one fails, which
    is what the old fixed default did on every iDRAC."""
    need("fence_redfish")
    port, seen = idrac
    secret = tmp_path / "pw"
    secret.write_text("calvin\n")
    for uri, rc in ((_Idrac.system, 0), ("/redfish/v1/Systems/1", 1)):
        seen.clear()
        _, bundle = render_doc(_redfish_doc(ip="127.0.0.1", port=port, username="root", systems_uri=uri))
        params = devices(bundle.cib)["fence_node2"]
        assert params["systems_uri"] == uri
        own = agent_parameters("fence_redfish")
        stdin = {k: v for k, v in params.items() if k in own} | {"password_script": f"/bin/cat {secret}"}
        proc = run_agent("fence_redfish", {**stdin, "action": "status"})
        assert proc.returncode == rc, (uri, proc.stderr)
        assert "/redfish/v1/Systems" not in seen


# ---------------------------------------------------------------- item 17: Pacemaker 3 options


def _options(cib: str) -> dict[str, str]:
    root = ET.fromstring(cib)
    props = root.iterfind("./configuration/crm_config/cluster_property_set/nvpair")
    ops = root.iterfind("./configuration/op_defaults/meta_attributes/nvpair")
    return {nv.get("name", ""): nv.get("value", "") for nv in [*props, *ops]}


@pytest.mark.parametrize("version", ["3.0.0", "3.0.2"])
def test_pacemaker3_gets_no_deprecated_options(version: str) -> None:
    """Pacemaker 3.0.0 deprecated concurrent-fencing (now true by default) and record-pending
    (ChangeLog 3.0.0; PX operations.rst 'deprecated since 3.0.0'): a 3.x render sets neither,
    and check has nothing to say about it."""
    from test_checks import findings

    doc = onprem_doc()
    doc["targets"] = {"pacemaker": version}
    _, bundle = render_doc(doc)
    options = _options(bundle.cib)
    assert "concurrent-fencing" not in options and "record-pending" not in options, options
    assert options["timeout"]  # op_defaults still carries the operation timeout
    assert findings(doc)["HAC101"] == {"ok"}


@pytest.mark.tools
def test_pacemaker2_keeps_the_options_its_daemons_know() -> None:
    """Before 3.0 concurrent-fencing defaults to false (configure default): it stays rendered,
    and the host's Pacemaker 2.1 scheduler lists it as a live option."""
    need("/usr/lib/pacemaker/pacemaker-schedulerd")
    doc = onprem_doc()
    doc["targets"] = {"pacemaker": "2.1.5"}
    _, bundle = render_doc(doc)
    options = _options(bundle.cib)
    assert options["concurrent-fencing"] == "true" and options["record-pending"] == "true"
    meta = subprocess.run(
        ["/usr/lib/pacemaker/pacemaker-schedulerd", "metadata"], capture_output=True, text=True, check=True
    ).stdout
    assert "concurrent-fencing" in {p.get("name") for p in ET.fromstring(meta).iter("parameter")}


def test_deprecated_options_on_pacemaker3_are_found() -> None:
    """HAC101 fires on a 3.x CIB that still carries them (as an older hacloud wrote it)."""
    from test_checks import cib, findings

    doc = onprem_doc()
    doc["targets"] = {"pacemaker": "3.0.2"}
    old = '<nvpair id="cib-bootstrap-options-concurrent-fencing" name="concurrent-fencing" value="true"/>'
    mutate = cib(
        lambda c: c.replace(
            '<nvpair id="cib-bootstrap-options-no-quorum', old + '<nvpair id="cib-bootstrap-options-no-quorum'
        )
    )
    assert findings(doc, mutate)["HAC101"] == {"warning"}
    doc["targets"] = {"pacemaker": "2.1.5"}
    assert "HAC101" not in findings(doc)


# ---------------------------------------------------------------- item 9: the action in force


@pytest.mark.tools
@pytest.mark.parametrize(("profile", "action"), [("lab", "off"), ("aws", "off"), ("onprem", "reboot")])
def test_device_knobs_follow_the_action_pacemaker_runs(profile: str, action: str, tmp_path: Path) -> None:
    """The real scheduler decides which action fences the failed node (crm_simulate's
    transition: 'Fence (off)' or 'Fence (reboot)'); each device carries pcmk_<that action>_timeout
    and _retries, which pacemaker-fenced declares, and none for the other action."""
    from tools import simulate_failover

    need("crm_simulate", "/usr/lib/pacemaker/pacemaker-fenced")
    _, bundle = render_doc(onprem_doc(profile=profile))
    active, _, summary, _ = simulate_failover(bundle.cib, tmp_path)
    assert f"Fence ({action}) {active}" in summary, summary
    fenced = subprocess.run(
        ["/usr/lib/pacemaker/pacemaker-fenced", "metadata"], capture_output=True, text=True, check=True
    ).stdout
    declared = {p.get("name") for p in ET.fromstring(fenced).iter("parameter")}
    other = "reboot" if action == "off" else "off"
    for dev, params in devices(bundle.cib).items():
        for knob in (f"pcmk_{action}_timeout", f"pcmk_{action}_retries"):
            assert knob in params and knob in declared, (dev, knob)
        assert not {f"pcmk_{other}_timeout", f"pcmk_{other}_retries"} & set(params), (dev, params)


def test_check_judges_the_knob_of_the_action_in_force() -> None:
    """HAC011 compares stonith-timeout with pcmk_off_timeout under stonith-action=off (the old
    rule read pcmk_reboot_timeout, which the off action never uses); HAC100 flags reboot knobs
    left on an off cluster, as older renders wrote them."""
    from test_checks import cib, findings

    doc = onprem_doc(profile="lab")
    good = findings(doc)
    assert good["HAC011"] == {"ok"} and good["HAC100"] == {"ok"}
    too_long = cib(
        lambda c: c.replace('name="pcmk_off_timeout" value="60"', 'name="pcmk_off_timeout" value="600"')
    )
    assert findings(doc, too_long)["HAC011"] == {"error"}
    old = cib(lambda c: c.replace('"pcmk_off_', '"pcmk_reboot_').replace("-pcmk_off_", "-pcmk_reboot_"))
    found = findings(doc, old)
    assert found["HAC100"] == {"warning"} and found["HAC011"] == {"ok"}


# ---------------------------------------------------------------- item 11: SBD timing on Azure


def _primitive(cib: str, rid: str) -> ET.Element:
    found = [p for p in ET.fromstring(cib).iter("primitive") if p.get("id") == rid]
    assert found, rid
    return found[0]


@pytest.mark.tools
def test_azure_sbd_device_has_sbd_timing(tmp_path: Path) -> None:
    """Azure + SBD: stonith-timeout 210 (MS-SLES; = crmsh's max(1.2 x msgwait, 60) + token +
    consensus, computed here from the rendered corosync.conf), fence_sbd's power_timeout above
    msgwait (the agent's own rule, read from its source), monitor 600/15; nothing of the ARM
    agent's 900/240/3600. crm_verify accepts the CIB, fence_sbd declares every parameter."""
    import re

    from tools import simulate_failover

    need("crm_verify", "crm_simulate", "fence_sbd")
    _, bundle = render_doc(onprem_doc("sbd", "azure-lb", profile="azure"))
    options = _options(bundle.cib)
    corosync = next(f for f in bundle.files["node1"] if f.path.endswith("corosync.conf")).content.decode()
    token = int(re.search(r"\btoken:\s*(\d+)", corosync).group(1))  # type: ignore[union-attr]
    consensus = int(re.search(r"\bconsensus:\s*(\d+)", corosync).group(1))  # type: ignore[union-attr]
    msgwait = 120  # MS-SLES `sbd -4 120`
    assert (
        options["stonith-timeout"] == f"{int(max(1.2 * msgwait, 60) + (token + consensus) / 1000)}s" == "210s"
    )
    source = Path("/usr/sbin/fence_sbd").read_text()
    assert "if 0 < power_timeout <= sbd_msg_timeout:" in source  # the rule: power_timeout > msgwait
    device = _primitive(bundle.cib, "fence_node1")
    params = devices(bundle.cib)["fence_node1"]
    assert int(params["power_timeout"]) > msgwait and params["power_timeout"] != "240"
    assert int(params["pcmk_reboot_timeout"]) <= 210
    monitor = device.find("./operations/op[@name='monitor']")
    assert monitor is not None and (monitor.get("interval"), monitor.get("timeout")) == ("600s", "15s")
    own = agent_parameters("fence_sbd")
    assert {k for k in params if not k.startswith("pcmk_")} <= own
    active, _, summary, _ = simulate_failover(bundle.cib, tmp_path)  # crm_verify runs in there
    assert f"Fence (reboot) {active}" in summary


def test_sbd_next_to_the_arm_agent_keeps_each_timing() -> None:
    """Two levels (ARM agent, then SBD): the cluster timeout covers the ARM agent (900), the SBD
    devices keep their own."""
    from conftest import fencing_block

    doc = onprem_doc("fence_azure_arm", "azure-lb", profile="azure")
    doc["fencing"].append(fencing_block("sbd"))
    doc["fencing_topology"] = True
    _, bundle = render_doc(doc)
    assert _options(bundle.cib)["stonith-timeout"] == "900s"
    params = devices(bundle.cib)
    assert (
        params["fence_node1"]["pcmk_reboot_timeout"] == "900"
        and params["fence_node1"]["power_timeout"] == "240"
    )
    assert params["fence_node1_l2"]["pcmk_reboot_timeout"] == "210"


def test_sbd_with_agent_timing_is_found() -> None:
    """HAC102 on a CIB as the old render wrote it for Azure + SBD (ARM timeouts on fence_sbd)."""
    from test_checks import cib, findings

    doc = onprem_doc("sbd", "azure-lb", profile="azure")
    assert findings(doc)["HAC102"] == {"ok"}
    old = cib(
        lambda c: (
            c.replace('name="stonith-timeout" value="210s"', 'name="stonith-timeout" value="900s"')
            .replace('interval="600s"', 'interval="3600s"')
            .replace('name="power_timeout" value="144"', 'name="power_timeout" value="90"')
        )
    )
    assert findings(doc, old)["HAC102"] == {"warning", "error"}


# ---------------------------------------------------------------- item 10: Azure on RHEL


def _render_for(doc: dict[str, Any], family: str) -> Any:
    """Render as `up` does once it has read the nodes: with their OS family in the facts."""
    import dataclasses

    from conftest import FIXED_SECRETS, spec_of

    from hacloud.provision.provider import get_provider
    from hacloud.render import effective_profile, render_all
    from hacloud.spec.inventory import NodeFacts
    from hacloud.spec.profiles import load_profile

    spec = spec_of(doc)
    inv = get_provider(spec.provider.kind).planned_inventory(spec)
    nodes = tuple(dataclasses.replace(n, facts=NodeFacts(os_family=family)) for n in inv.nodes)  # type: ignore[arg-type]
    inv = dataclasses.replace(inv, nodes=nodes)
    profile = effective_profile(spec, load_profile(spec.profile_name), inv)
    return spec, inv, profile, render_all(spec, inv, profile, FIXED_SECRETS)


@pytest.mark.tools
@pytest.mark.parametrize(
    ("family", "pfd", "delay", "monitor"), [("rhel", "15s", None, "120"), ("suse", "30s", "15s", None)]
)
def test_azure_fence_delays_follow_the_os_family(
    family: str, pfd: str, delay: str | None, monitor: str | None, tmp_path: Path
) -> None:
    """RHEL nodes get Microsoft's RHEL values (priority-fencing-delay 15, no pcmk_delay_max,
    pcmk_monitor_timeout=120), SLES nodes SUSE's (30 with pcmk_delay_max 15). The real scheduler
    still fences the failed node first, and pacemaker-fenced declares every knob."""
    from tools import simulate_failover

    need("crm_simulate", "/usr/lib/pacemaker/pacemaker-fenced")
    _, _, _, bundle = _render_for(onprem_doc("fence_azure_arm", "azure-lb", profile="azure"), family)
    assert _options(bundle.cib)["priority-fencing-delay"] == pfd
    fenced = subprocess.run(
        ["/usr/lib/pacemaker/pacemaker-fenced", "metadata"], capture_output=True, text=True, check=True
    ).stdout
    declared = {p.get("name") for p in ET.fromstring(fenced).iter("parameter")}
    for params in devices(bundle.cib).values():
        assert params.get("pcmk_delay_max") == delay
        assert params.get("pcmk_monitor_timeout") == monitor
        assert {k for k in params if k.startswith("pcmk_")} <= declared
    assert f"azure ({family})" in bundle.cib if family == "rhel" else "profile azure," in bundle.cib
    active, _, summary, _ = simulate_failover(bundle.cib, tmp_path)
    assert f"Fence (reboot) {active}" in summary


def test_overrides_win_over_the_os_variant() -> None:
    doc = onprem_doc("fence_azure_arm", "azure-lb", profile="azure")
    doc["overrides"] = {"pacemaker.priority_fencing_delay": 40, "fencing.pcmk_delay_max": 10}
    _, _, profile, bundle = _render_for(doc, "rhel")
    assert _options(bundle.cib)["priority-fencing-delay"] == "40s"
    assert devices(bundle.cib)["fence_node1"]["pcmk_delay_max"] == "10s"
    assert profile.values["fencing.pcmk_monitor_timeout"].value == 120


def test_suse_delays_on_rhel_nodes_are_found() -> None:
    """HAC103 on RHEL nodes whose devices carry SUSE's delay (what the old render gave them)."""
    from hacloud.verify.invariants import run_checks

    spec, inv, profile, bundle = _render_for(
        onprem_doc("fence_azure_arm", "azure-lb", profile="azure"), "rhel"
    )
    codes = {f.severity for f in run_checks(spec, inv, profile, bundle) if f.code == "HAC103"}
    assert codes == {"ok"}
    nvpair = '<nvpair id="fence_node1-instance_attributes-{0}" name="{0}" value="{1}"/>'
    old = bundle.cib.replace(
        nvpair.format("pcmk_monitor_timeout", "120"), nvpair.format("pcmk_delay_max", "15s")
    )
    assert old != bundle.cib
    import dataclasses

    found = [
        f for f in run_checks(spec, inv, profile, dataclasses.replace(bundle, cib=old)) if f.code == "HAC103"
    ]
    assert {f.severity for f in found} == {"warning"} and len(found) == 2


def test_profile_command_shows_the_variant() -> None:
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "hacloud", "profile", "azure", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rhel = json.loads(out)["variants"]["rhel"]
    assert rhel["values"]["pacemaker.priority_fencing_delay"]["value"] == 15
    assert all(v["source"] for v in rhel["values"].values())


# ---------------------------------------------------------------- item 5: sovereign clouds


def _azure_doc(endpoint: str | None = None, cloud: str | None = None) -> dict[str, Any]:
    import yaml
    from conftest import REPO

    doc: dict[str, Any] = yaml.safe_load((REPO / "templates/init/azure.yaml").read_text())
    if endpoint is not None:
        doc["provider"]["options"]["arm_endpoint"] = endpoint
    if cloud is not None:
        doc["fencing"][0]["cloud"] = cloud
    return doc


def _agent_clouds() -> dict[str, str]:
    """The agent's cloud names and the SDK cloud each selects, from the installed agent's library
    (fence-agents 4.12: msrestazure constants; the US one is AZURE_US_GOVERNMENT in azure-core)."""
    import re

    source = Path("/usr/share/fence/azure_fence.py").read_text()
    pairs = re.findall(
        r'Cloud\.lower\(\) == "(\w+)"\):\s*\n\s*from msrestazure\.azure_cloud import (\w+)', source
    )
    rename = {"AZURE_US_GOV_CLOUD": "AZURE_US_GOVERNMENT"}
    return {name: rename.get(const, const) for name, const in pairs}


@pytest.mark.tools
def test_fence_azure_arm_talks_to_the_cloud_of_the_arm_endpoint() -> None:
    """For each cloud the Azure SDK knows, its ARM endpoint (azure.mgmt.core's table, not
    hacloud's) in provider.options.arm_endpoint renders the cloud= value that makes the installed
    fence_azure_arm select that same cloud; public Azure gets no cloud= (the agent's default)."""
    from azure.core import AzureClouds
    from azure.mgmt.core.tools import get_arm_endpoints

    need("fence_azure_arm", "/usr/share/fence/azure_fence.py")
    assert "cloud" in agent_parameters("fence_azure_arm")
    agent = _agent_clouds()
    assert {"china", "usgov"} <= set(agent), agent
    for sdk_cloud in (
        AzureClouds.AZURE_PUBLIC_CLOUD,
        AzureClouds.AZURE_CHINA_CLOUD,
        AzureClouds.AZURE_US_GOVERNMENT,
    ):
        endpoint = get_arm_endpoints(sdk_cloud)["resource_manager"].rstrip("/")
        _, bundle = render_doc(_azure_doc(endpoint))
        for params in devices(bundle.cib).values():
            if sdk_cloud == AzureClouds.AZURE_PUBLIC_CLOUD:
                assert "cloud" not in params
            else:
                assert agent[params["cloud"]] == sdk_cloud.name, (endpoint, params.get("cloud"))


def test_arm_endpoint_of_no_cloud_is_a_spec_error() -> None:
    """An endpoint fence_azure_arm cannot be pointed at is refused naming the field, before
    anything renders; a proxy may name its cloud; a contradicting cloud names that field."""
    from conftest import spec_of

    from hacloud.errors import SpecError

    def paths(doc: dict[str, Any]) -> list[str]:
        with pytest.raises(SpecError) as info:
            spec_of(doc)
        return [p.path for p in info.value.problems]

    assert paths(_azure_doc("https://management.example.net")) == ["provider.options.arm_endpoint"]
    closed = _azure_doc("https://management.microsoftazure.de", cloud="public")
    assert paths(closed) == ["provider.options.arm_endpoint"]
    assert paths(_azure_doc("https://management.chinacloudapi.cn", cloud="usgov")) == ["fencing[0].cloud"]
    _, bundle = render_doc(_azure_doc("https://arm-proxy.example.net", cloud="china"))
    assert {p["cloud"] for p in devices(bundle.cib).values()} == {"china"}


def test_arm_endpoint_with_a_bad_port_is_listed_not_a_traceback() -> None:
    """An endpoint whose port is no number or out of range (urlsplit raises ValueError) is a
    listed problem on the field, never a traceback: at load, and past the loader the cloud
    derivation treats it as no known cloud."""
    from conftest import spec_of

    from hacloud.errors import SpecError
    from hacloud.spec.azurecloud import cloud_of, refused

    for bad in (
        "https://management.azure.com:x",
        "https://management.azure.com:99999",
        "https://management.azure.com:0",
        "https://a:1:2",
        "https://management.azure.com]",
        "https://management.azure.com/path",
    ):
        with pytest.raises(SpecError) as info:
            spec_of(_azure_doc(bad))
        assert info.value.exit_code == 2
        assert "provider.options.arm_endpoint" in [p.path for p in info.value.problems], bad
        if ":" in bad.removeprefix("https://"):  # urlsplit(...).port raises for these
            assert cloud_of(bad) is None and refused(bad) == "", bad
    assert spec_of(_azure_doc("https://management.azure.com:443")) is not None
    assert cloud_of("https://management.azure.com:443") == "public"


def test_fence_device_in_the_wrong_cloud_is_found() -> None:
    """HAC104 on a China cluster whose devices carry no cloud= (the old render)."""
    from test_checks import cib, findings

    doc = _azure_doc("https://management.chinacloudapi.cn")
    assert findings(doc)["HAC104"] == {"ok"}
    old = cib(lambda c: c.replace('name="cloud" value="china"', 'name="msi" value="true"'))
    assert findings(doc, old)["HAC104"] == {"error"}


# ---------------------------------------------------------------- item 15: least-privilege BMC secrets

PASSWORDS = {"node1": "pw-of-node1-bmc", "node2": "pw-of-node2-bmc"}


def _secret_paths(bundle: Any, node: str) -> list[str]:
    return [f.path for f in bundle.files[node] if f.path.startswith("/etc/hacloud/fencing/")]


@pytest.mark.parametrize("kind", ["fence_ipmilan", "fence_redfish"])
def test_each_node_gets_only_its_peers_bmc_password(kind: str) -> None:
    """The device fencing node1 is banned from node1 (the CIB's -INFINITY location), so only
    node2 needs node1's password, and the other way round."""
    _, bundle = render_doc(onprem_doc(kind), PASSWORDS)
    root = ET.fromstring(bundle.cib)
    for node, peer in (("node1", "node2"), ("node2", "node1")):
        banned = [
            c.get("rsc")
            for c in root.iter("rsc_location")
            if c.get("node") == node and c.get("score") == "-INFINITY"
        ]
        fencing_node = [d for d in banned if d and d.startswith("fence_")]
        assert fencing_node == [f"fence_{node}"]  # its own device never runs on it
        assert _secret_paths(bundle, node) == [f"/etc/hacloud/fencing/{peer}.secret"]
        assert bundle.retired[node] == (f"/etc/hacloud/fencing/{node}.secret",)
        devices_here = [d for d in devices(bundle.cib) if d != f"fence_{node}"]
        assert all(f"/{peer}.secret" in devices(bundle.cib)[d]["password_script"] for d in devices_here)


def test_own_bmc_password_on_a_node_is_found() -> None:
    """HAC105 on files as older versions rendered them (both passwords on both nodes)."""
    import dataclasses

    from test_checks import findings

    doc = onprem_doc()
    _, bundle = render_doc(doc, PASSWORDS)
    assert findings(doc, lambda b: dataclasses.replace(b, files=bundle.files))["HAC105"] == {"ok"}
    both = {
        node: (
            *files,
            *(f for other in bundle.files.values() for f in other if f.path.endswith(f"/{node}.secret")),
        )
        for node, files in bundle.files.items()
    }
    assert findings(doc, lambda b: dataclasses.replace(b, files=both))["HAC105"] == {"warning"}


class _IsolatedNode:
    """A real sshd on loopback whose sessions see /etc through an overlay in their own mount
    namespace: the deploy engine writes and removes files there as on a node, and the host's
    /etc is never touched. ``etc`` is the overlay's upper directory (what the "node" changed)."""

    def __init__(self, root: Path, name: str) -> None:
        from test_remote import Sshd

        self.sshd = Sshd(root)
        self.name = name
        self.etc = root / "upper"
        (root / "work").mkdir()
        self.etc.mkdir()
        self.root = root

    def start(self) -> None:
        import socket
        import time

        sshd = self.sshd
        script = (
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={self.etc},workdir={self.root / 'work'} /etc"
            f" && exec /usr/sbin/sshd -D -e -f {sshd.config}"
        )
        sshd.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], stderr=subprocess.DEVNULL
        )
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", sshd.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError("sshd did not start")

    def connection(self) -> Any:
        from hacloud.deploy.remote import Connection
        from hacloud.provision.endpoint import Endpoint

        ep = Endpoint(self.name, "127.0.0.1", self.sshd.port, "root", str(self.sshd.client_key))
        return Connection(ep, self.root / "known_hosts", lambda _m: None, timeout=10)


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[dict[str, _IsolatedNode]]:
    import os

    need("/usr/sbin/sshd", "ssh-keygen", "unshare")
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd and the mount namespace need root")
    nodes = {}
    for name in ("node1", "node2"):
        (tmp_path / name).mkdir()
        nodes[name] = _IsolatedNode(tmp_path / name, name)
    try:
        for node in nodes.values():
            node.start()
        yield nodes
    finally:
        for node in nodes.values():
            node.sshd.stop()


@pytest.mark.tools
def test_up_removes_only_the_nodes_own_bmc_password(two_nodes: dict[str, _IsolatedNode]) -> None:
    """Nodes set up by an older hacloud hold both BMC passwords (and here a file of someone
    else's in the same directory): the deploy engine's file step, over real SSH, writes the
    peer's password, removes the node's own and nothing else; `plan` first only says so; a
    second run changes nothing."""
    from hacloud.deploy.engine import Engine
    from hacloud.provision.provider import get_provider

    spec, bundle = render_doc(onprem_doc(), PASSWORDS)
    for node in two_nodes.values():
        fencing = node.etc / "hacloud" / "fencing"
        fencing.mkdir(parents=True)
        for target, pw in PASSWORDS.items():  # what the old render installed
            (fencing / f"{target}.secret").write_text(pw + "\n")
            (fencing / f"{target}.secret").chmod(0o600)
        (fencing / "keep-me.secret").write_text("not hacloud's\n")
    inventory = get_provider("onprem").planned_inventory(spec)
    conns = {name: node.connection().connect() for name, node in two_nodes.items()}
    try:

        def run(apply: bool) -> list[str]:
            engine = Engine(spec, inventory, bundle, conns, lambda _m: None, apply=apply)
            engine.read_facts()
            engine.files()
            return [
                f"{c.node}: {c.detail}" for c in engine.changes if c.step == "file" and "secret" in c.detail
            ]

        planned = run(apply=False)
        assert (
            "node1: remove /etc/hacloud/fencing/node1.secret (a node holds only its peer's BMC password)"
            in planned
        )
        assert (two_nodes["node1"].etc / "hacloud/fencing/node1.secret").exists()  # plan changed nothing
        run(apply=True)
        for name, peer in (("node1", "node2"), ("node2", "node1")):
            listing = (
                conns[name]
                .run("ls /etc/hacloud/fencing; stat -c %a /etc/hacloud/fencing/*.secret")
                .stdout.split()
            )
            assert listing[:2] == ["keep-me.secret", f"{peer}.secret"], listing
            assert (
                conns[name].read(f"/etc/hacloud/fencing/{peer}.secret") == (PASSWORDS[peer] + "\n").encode()
            )
        assert (
            not Path("/etc/hacloud/fencing/node1.secret").exists() or True
        )  # the host's /etc is not the node's
        assert run(apply=True) == []  # converged: nothing to write or remove
    finally:
        for conn in conns.values():
            conn.close()


# ---------------------------------------------------------------- item 16: one spec per state directory


def _hacloud(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_"))}
    return subprocess.run(
        [sys.executable, "-m", "hacloud", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _authkey(out: Path, node: str) -> bytes:
    return (out / node / "etc/corosync/authkey").read_bytes()


def test_two_specs_with_one_cluster_name_never_share_keys(tmp_path: Path) -> None:
    """The three examples `hacloud init` writes all name cluster prod-db: rendered side by side
    in one directory, the first gets the keys, the others are refused (exit 2, naming the owner
    and both ways out) and nothing of theirs is written."""
    for kind in ("aws", "azure", "onprem"):
        assert _hacloud(tmp_path, "init", "--provider", kind, "--out", f"{kind}.yaml").returncode == 0
    first = _hacloud(tmp_path, "render", "-f", "aws.yaml", "--out", "r-aws")
    assert first.returncode == 0, first.stderr
    for other in ("azure.yaml", "onprem.yaml"):
        for args in (("render", "-f", other, "--out", f"r-{other}"), ("check", "-f", other)):
            refused = _hacloud(tmp_path, *args)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            text = refused.stdout + refused.stderr
            assert "aws.yaml" in text and "cluster.name" in text and "owner" in text, text
            assert "Traceback" not in text
        assert not (tmp_path / f"r-{other}").exists()
    assert (tmp_path / ".hacloud/prod-db/owner").read_text() == "aws.yaml\n"
    assert ((tmp_path / ".hacloud/prod-db/owner").stat().st_mode & 0o777) == 0o600
    # the way out for a renamed spec: name it the owner, and it renders with the cluster's keys
    (tmp_path / ".hacloud/prod-db/owner").write_text("azure.yaml\n")
    assert _hacloud(tmp_path, "render", "-f", "azure.yaml", "--out", "r-azure").returncode == 0
    azure_nodes = sorted(p.name for p in (tmp_path / "r-azure").iterdir() if (p / "etc").is_dir())
    aws_nodes = sorted(p.name for p in (tmp_path / "r-aws").iterdir() if (p / "etc").is_dir())
    assert _authkey(tmp_path / "r-azure", azure_nodes[0]) == _authkey(tmp_path / "r-aws", aws_nodes[0])


def test_a_cluster_from_an_older_version_keeps_its_keys(tmp_path: Path) -> None:
    """A state directory without an owner file (older hacloud) is claimed by the spec that uses
    it next, with the keys it already holds; a different spec is refused from then on."""
    assert _hacloud(tmp_path, "init", "--provider", "onprem", "--out", "db.yaml").returncode == 0
    assert _hacloud(tmp_path, "render", "-f", "db.yaml", "--out", "r1").returncode == 0
    (tmp_path / ".hacloud/prod-db/owner").unlink()  # as an older version left it
    before = _authkey(tmp_path / "r1", "db1")
    again = _hacloud(tmp_path, "render", "-f", "db.yaml", "--out", "r2")
    assert again.returncode == 0, again.stderr
    assert _authkey(tmp_path / "r2", "db1") == before
    assert (tmp_path / ".hacloud/prod-db/owner").read_text() == "db.yaml\n"
    (tmp_path / "copy.yaml").write_text((tmp_path / "db.yaml").read_text())
    assert _hacloud(tmp_path, "render", "-f", "copy.yaml", "--out", "r3").returncode == 2
