"""Cloud VIP and fencing rules: Azure load balancer and probe (HAC060-HAC062), AWS overlay IP
and its interface (HAC070/HAC071, HAC091), fence_azure_arm on RHEL and its cloud
(HAC103/HAC104), the AWS CLI configuration and region of the agents (HAC110-HAC112)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from hacloud.render import Bundle
from hacloud.spec.inventory import Inventory
from hacloud.spec.model import AwsMoveIpVip, AzureFencing, AzureLbVip, Spec
from hacloud.spec.profiles import Profile
from hacloud.verify.invariants.rule import Cib, Finding, first_node_file, node_file, ok


def azure(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC060-HAC062: behind an Azure load balancer, TCP timestamps off, the azure-lb port the
    probe's, and the VIP one of the balancer's frontends."""
    if not isinstance(spec.vip, AzureLbVip):
        return
    src = "MS-NFS ('Enabling TCP timestamps will cause the health probes to fail')"
    sysctl = first_node_file(b, "90-hacloud.conf")
    if not re.search(r"^net\.ipv4\.tcp_timestamps\s*=\s*0$", sysctl, re.MULTILINE):
        yield Finding(
            "HAC060",
            "error",
            "net.ipv4.tcp_timestamps is not 0 behind an Azure load balancer",
            "set overrides: sysctl.net.ipv4.tcp_timestamps: 0",
            src,
        )
    else:
        yield ok("HAC060", "net.ipv4.tcp_timestamps = 0", src)
    lb = [p for p in cib.root.iter("primitive") if p.get("type") == "azure-lb"]
    port = Cib.params(lb[0]).get("port") if lb else None
    if port != str(spec.vip.probe_port):
        yield Finding(
            "HAC061",
            "error",
            f"azure-lb listens on {port}, the probe uses {spec.vip.probe_port}",
            "make vip.probe_port and the azure-lb port equal",
            "STAF-const; best-practices §3.5 (8)",
        )
    else:
        yield ok("HAC061", f"azure-lb port = probe port {port}", "best-practices §3.5 (8)")
    # a drop-in pair: the load balancer is Terraform's, and the VIP is one of its frontends
    fronts = [
        a for key in ("lb_frontend", "lb_frontends") for a in inv.network.extra.get(key, "").split(",") if a
    ]
    src = "MS-SLES (the load balancer's frontend IP is the cluster's virtual IP)"
    if fronts and str(spec.vip.address) not in fronts:
        yield Finding(
            "HAC062",
            "error",
            f"vip.address {spec.vip.address} is no frontend of the load balancer "
            f"(frontends: {', '.join(fronts)}): clients would never reach the service",
            "set vip.address to the load balancer's frontend address, or give the load balancer a "
            "frontend at vip.address in Terraform",
            src,
        )
    elif fronts:
        yield ok("HAC062", f"vip.address {spec.vip.address} is the load balancer's frontend", src)


def azure_rhel_delays(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """fence_azure_arm on RHEL follows Microsoft's RHEL guide: priority-fencing-delay alone (no
    random device delay) and pcmk_monitor_timeout=120; SUSE's values are for SLES."""
    arm = [d for d in cib.stonith_devices() if d.get("type") == "fence_azure_arm"]
    if not arm or b.targets.os_family != "rhel":
        return
    src = "MS-RHEL (priority-fencing-delay 15 without pcmk_delay_max, pcmk_monitor_timeout=120)"
    delayed = [d.get("id", "") for d in arm if "pcmk_delay_max" in Cib.params(d)]
    untimed = [d.get("id", "") for d in arm if "pcmk_monitor_timeout" not in Cib.params(d)]
    if delayed:
        yield Finding(
            "HAC103",
            "warning",
            f"{', '.join(delayed)} on RHEL nodes use pcmk_delay_max: a random delay on top of "
            "priority-fencing-delay slows every failover",
            "run `hacloud up` (it applies the azure profile's rhel variant), or set overrides: "
            "fencing.pcmk_delay_max: 0 and pacemaker.priority_fencing_delay: 15",
            src,
        )
    if untimed:
        yield Finding(
            "HAC103",
            "warning",
            f"{', '.join(untimed)} on RHEL nodes have no pcmk_monitor_timeout",
            "run `hacloud up`, or set overrides: fencing.pcmk_monitor_timeout: 120",
            src,
        )
    if not delayed and not untimed:
        yield ok(
            "HAC103", "fence_azure_arm on RHEL: priority-fencing-delay alone, pcmk_monitor_timeout set", src
        )


def azure_cloud(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """fence_azure_arm talks to the cloud of the cluster's ARM endpoint (cloud=, none = public)."""
    from hacloud.spec.azurecloud import PUBLIC_ENDPOINT, cloud_of

    options = getattr(spec.provider, "options", None)
    endpoint = str(getattr(options, "arm_endpoint", "") or "")
    methods = [m for m in spec.fencing if isinstance(m, AzureFencing)]
    arm = [d for d in cib.stonith_devices() if d.get("type") == "fence_azure_arm"]
    if not arm:
        return
    wanted = next((m.cloud for m in methods if m.cloud), None) or cloud_of(endpoint or PUBLIC_ENDPOINT)
    src = "fence_azure_arm cloud= (fence-agents azure_fence.py); Azure SDK get_arm_endpoints"
    for dev in arm:
        cloud = Cib.params(dev).get("cloud", "public")
        if wanted and cloud != wanted:
            yield Finding(
                "HAC104",
                "error",
                f"{dev.get('id')} talks to Azure {cloud}, the cluster's ARM endpoint "
                f"{endpoint or PUBLIC_ENDPOINT} is Azure {wanted}: every fence would fail",
                f"run `hacloud up` (it renders cloud={wanted})"
                if wanted != "public"
                else "run `hacloud up` (it renders no cloud= for public Azure)",
                src,
            )
            return
    yield ok("HAC104", f"fence_azure_arm talks to Azure {wanted or 'public'}", src)


def overlay(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """The overlay IP against the network the inventory reports (on a drop-in pair the
    provider's own validation never saw the VPC)."""
    import ipaddress

    vip = spec.vip
    if not isinstance(vip, AwsMoveIpVip):
        return
    src = 'best-practices AWS "Overlay IP": a /32 outside the VPC CIDR (scalingbits.com)'
    cidr = inv.network.vpc_cidr
    if cidr:
        if vip.address in ipaddress.ip_network(cidr, strict=False):
            yield Finding(
                "HAC070",
                "error",
                f"overlay IP {vip.address} is inside the VPC CIDR {cidr}: the VPC routes it locally, "
                "the route table entry never applies",
                "choose vip.address outside every VPC CIDR (e.g. from 192.168.0.0/16 when the VPC is 10/8)",
                src,
            )
        else:
            yield ok("HAC070", f"overlay IP {vip.address} is outside the VPC CIDR {cidr}", src)
    known = set(inv.network.route_tables)
    unknown = [r for r in vip.route_tables if known and r not in known]
    if unknown:
        yield Finding(
            "HAC071",
            "warning",
            f"vip.route_tables names {', '.join(unknown)}, which the inventory's network does not list "
            f"({', '.join(sorted(known))})",
            "check the route table ids (a typo leaves clients without a route to the VIP)",
            src,
        )


def vip_interface(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """HAC091: aws-vpc-move-ip adds the overlay IP to the interface that holds the node's address."""
    vip = spec.vip
    if not isinstance(vip, AwsMoveIpVip):
        return
    src = "aws-vpc-move-ip meta-data (interface, default eth0); Debian/Ubuntu Nitro AMIs name it ens5"
    agent = next((p for p in cib.root.iter("primitive") if p.get("type") == "aws-vpc-move-ip"), None)
    rendered = Cib.params(agent).get("interface", "") if agent is not None else ""
    found = {n.name: n.facts.primary_interface for n in inv.nodes if n.facts.primary_interface}
    wrong = {n: i for n, i in found.items() if i != rendered}
    if wrong:
        named = ", ".join(f"{n} {i}" for n, i in sorted(wrong.items()))
        yield Finding(
            "HAC091",
            "error" if not vip.interface else "warning",
            f"aws-vpc-move-ip uses interface {rendered}, but the node's address is on {named}: the "
            "route moves, then `ip addr add` fails (or the route names the wrong ENI)",
            "drop vip.interface to use the discovered one, or set it to the interface holding the "
            "node's address",
            src,
        )
    elif len(found) < len(inv.nodes) and not vip.interface:
        yield Finding(
            "HAC091",
            "warning",
            f"the nodes' primary interface is not known yet: rendered the agent's default {rendered}",
            "`hacloud up` reads it from the nodes; to review the final value, render with "
            "--inventory from a deployed pair or set vip.interface",
            src,
        )
    else:
        how = "set in the spec" if vip.interface else "read from the nodes"
        yield ok("HAC091", f"aws-vpc-move-ip interface {rendered} ({how})", src)


def _aws_profiles(text: str) -> dict[str, dict[str, str]]:
    """The profiles of an AWS CLI config file (``[default]``, ``[profile NAME]``) and their keys."""
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        section = re.fullmatch(r"\[\s*(?:profile\s+)?([^\]\s]+)\s*\]", line)
        if section:
            current = out.setdefault(section.group(1), {})
        elif current is not None and "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            current[key] = value
    return out


def aws_cli(spec: Spec, inv: Inventory, prof: Profile, b: Bundle, cib: Cib) -> Iterator[Finding]:
    """Every AWS CLI agent in the CIB finds its profile (and a region) in /root/.aws/config on
    every node, and every AWS region the cluster names is the one its nodes live in."""
    from hacloud.render.files import AWS_CLI_AGENTS, AWS_CONFIG_PATH

    agents = [
        p for p in cib.root.iter("primitive") if p.get("class") == "ocf" and p.get("type") in AWS_CLI_AGENTS
    ]
    src = (
        "resource-agents awseip/aws-vpc-move-ip meta-data (`profile`: a profile of ~/.aws/config, "
        "default 'default'; the agents run `aws --profile`); AWS CLI configuration files"
    )
    regions: dict[str, set[str]] = {}
    bad: list[Finding | None] = []
    for node in b.files:
        text = node_file(b, node, AWS_CONFIG_PATH)
        profiles = _aws_profiles(text or "")
        for name, keys in profiles.items():
            if keys.get("region"):
                regions.setdefault(keys["region"], set()).add(f"{AWS_CONFIG_PATH} [{name}] on {node}")
        bad += [_aws_cli_profile(agent, node, text, profiles, src) for agent in agents]
    found = [f for f in bad if f is not None]
    yield from found
    if agents and not found:
        yield ok("HAC110", f"{AWS_CONFIG_PATH} defines a region for every AWS CLI agent's profile", src)
    yield from _aws_regions(inv, cib, regions)


def _aws_cli_profile(
    agent: ET.Element, node: str, text: str | None, profiles: dict[str, dict[str, str]], src: str
) -> Finding | None:
    from hacloud.render.files import AWS_CONFIG_PATH

    want = Cib.params(agent).get("profile") or "default"
    if want not in profiles:
        where = "no such file" if text is None else f"no [{want}] profile in it"
        return Finding(
            "HAC110",
            "error",
            f"{agent.get('id')} ({agent.get('type')}) runs `aws --profile {want}` on {node}, but "
            f"{AWS_CONFIG_PATH} has {where}: the AWS CLI refuses the call and the VIP never starts",
            "re-render and deploy with hacloud (it writes the file wherever an AWS CLI agent runs), "
            f"or add a [{want}] profile with the region to {AWS_CONFIG_PATH}",
            src,
        )
    if not profiles[want].get("region"):
        return Finding(
            "HAC111",
            "warning",
            f"{AWS_CONFIG_PATH} [{want}] on {node} names no region: AWS CLI v2 asks the instance "
            "metadata for it, AWS CLI v1 (SLES aws-cli) stops with 'You must specify a region'",
            "give the fence_aws method a `region:` (hacloud writes it into the file)",
            src,
        )
    return None


def _aws_regions(inv: Inventory, cib: Cib, regions: dict[str, set[str]]) -> Iterator[Finding]:
    for dev in cib.stonith_devices():
        if dev.get("type") == "fence_aws" and Cib.params(dev).get("region"):
            regions.setdefault(Cib.params(dev)["region"], set()).add(f"{dev.get('id')} region")
    if inv.provider == "aws" and inv.network.extra.get("region"):
        regions.setdefault(inv.network.extra["region"], set()).add("the nodes (provider.options.region)")
    if not regions:
        return
    src = "fence-agents fence_aws (instances are looked up by id in `region` only); AWS CLI region"
    if len(regions) > 1:
        said = "; ".join(f"{r}: {', '.join(sorted(w))}" for r, w in sorted(regions.items()))
        yield Finding(
            "HAC112",
            "error",
            f"the cluster names more than one AWS region ({said}): an agent asking the wrong region "
            "finds no instance, route or address, so fencing or the VIP fails",
            "use one region: drop fencing[].region (it defaults to provider.options.region) and re-render",
            src,
        )
    else:
        yield ok("HAC112", f"one AWS region: {next(iter(regions))}", src)
