"""Render every file a node needs (pure).

Contract: :func:`node_files` returns the files for one node in a fixed order; equal input gives
byte-equal output. Files that hold secrets are marked ``secret`` with mode 0600/0400 and
are never shown by the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hacloud.model import Inventory, NodeInfo, RenderedFile
from hacloud.profiles import Profile
from hacloud.render import resources as r
from hacloud.render.env import render_template
from hacloud.render.versions import Targets
from hacloud.secrets import ClusterSecrets
from hacloud.spec import DemoService, IpmiFencing, RedfishFencing, SbdFencing, Spec

AUTHKEY_PATH = "/etc/corosync/authkey"
AWS_CONFIG_PATH = "/root/.aws/config"
LINKS_SCRIPT = "/usr/local/lib/hacloud/corosync-links.sh"
LINKS_DROPIN = "/etc/systemd/system/corosync.service.d/hacloud-links.conf"
DEMO_PROGRAM = "/usr/local/lib/hacloud/hacloud-demo.py"
DEMO_AGENT = "/usr/lib/ocf/resource.d/hacloud/demo"
DRBD_KEYS = (
    "on_io_error",
    "c_plan_ahead",
    "c_max_rate",
    "c_min_rate",
    "c_fill_target",
    "after_sb_0pri",
    "after_sb_1pri",
    "after_sb_2pri",
    "ping_int",
    "ping_timeout",
    "timeout",
    "connect_int",
    "ko_count",
    "max_buffers",
)
# Resource agents that call `aws --profile <profile>` (default "default"); the CLI refuses a
# profile that no config file defines, so the VIP never starts without /root/.aws/config.
AWS_CLI_AGENTS = frozenset({"aws-vpc-move-ip", "awseip", "awsvip", "aws-vpc-route53"})
COROSYNC_KEYS = ("token", "consensus", "token_retransmits_before_loss_const", "join", "max_messages")


def _text(path: str, content: str, mode: int = 0o644, secret: bool = False) -> RenderedFile:
    return RenderedFile(path, content.encode("utf-8"), mode, secret)


def drbd_global(profile: Profile, targets: Targets) -> str:
    values = {k: profile.get(f"drbd.{k}") for k in DRBD_KEYS}
    return render_template("drbd/global_common.conf.j2", drbd=targets.drbd, profile=profile.name, p=values)


def volume_device(spec: Spec, node: NodeInfo, index: int) -> str:
    vol = spec.volumes[index]
    return node.volumes.get(vol.name) or vol.device or ""


def drbd_resource(
    spec: Spec, inventory: Inventory, index: int, targets: Targets, secrets: ClusterSecrets
) -> str:
    vol = spec.volumes[index]
    nodes = [
        {"name": n.name, "disk": volume_device(spec, n, index), "address": n.replication_address}
        for n in inventory.nodes
    ]
    return render_template(
        "drbd/resource.res.j2",
        drbd=targets.drbd,
        name=vol.name,
        minor=r.volume_minor(spec, index),
        port=r.volume_port(spec, index),
        nodes=nodes,
        secret=secrets.drbd_secret,
    )


def corosync_conf(spec: Spec, inventory: Inventory, profile: Profile) -> str:
    count = len(inventory.nodes[0].links)
    return render_template(
        "corosync/corosync.conf.j2",
        cluster=spec.cluster.name,
        profile=profile.name,
        cipher=spec.corosync.crypto_cipher,
        hash=spec.corosync.crypto_hash,
        keyfile=AUTHKEY_PATH,
        p={k: profile.num(f"corosync.{k}") for k in COROSYNC_KEYS},
        links=[{"number": i, "port": spec.corosync.cluster_port + i} for i in range(count)],
        nodes=[{"name": n.name, "id": i, "links": n.links} for i, n in enumerate(inventory.nodes, start=1)],
    )


def aws_cli_agents(spec: Spec, inventory: Inventory, profile: Profile) -> list[str]:
    """The resource agents in the CIB's service group that shell out to the AWS CLI, sorted.

    Decided from the primitives the CIB holds (the same builders ``render_cib`` uses), not from
    the provider kind: an on-prem pair of EC2 instances runs them as well. fence_aws is not one:
    it uses boto3 and gets its region as a parameter."""
    from hacloud.render.cib import group_members

    return sorted(
        {p.type for p in group_members(spec, inventory, profile) if p.standard == "ocf"} & AWS_CLI_AGENTS
    )


def aws_config(spec: Spec, inventory: Inventory, agents: list[str]) -> str:
    """``/root/.aws/config`` with the ``[default]`` profile those agents pass to ``aws --profile``.

    The region is the spec's (fence_aws method, else provider.options.region), else the one the
    provider found the nodes in; with none (on-prem without fence_aws) the file has no region
    line and AWS CLI v2 asks the instance metadata service for it."""
    region = r.aws_region(spec) or inventory.network.extra.get("region", "")
    return render_template("os/aws-config.j2", region=region, agents=", ".join(agents))


def link_files(inventory: Inventory, node: NodeInfo) -> list[RenderedFile]:
    """The secondary link addresses the provider gave the node but its OS may not bring up
    (``extra["os_links"]``, comma-separated): a script that adds them to the interface holding
    the node's first link, run by corosync before it starts. None when the provider gave none."""
    addresses = [a for a in node.extra.get("os_links", "").split(",") if a]
    if not addresses:
        return []
    origin = {"aws": "AWS: a secondary IP of the primary ENI", "azure": "Azure: a second ip configuration"}
    script = render_template(
        "os/links.sh.j2",
        primary=node.links[0],
        addresses=addresses,
        origin=origin.get(inventory.provider, inventory.provider),
    )
    return [
        _text(LINKS_SCRIPT, script, 0o755),
        _text(LINKS_DROPIN, render_template("os/links-dropin.conf.j2", script=LINKS_SCRIPT)),
    ]


def sbd_delay_start(profile: Profile) -> int:
    """token + consensus + pcmk_delay_max + msgwait, in seconds, rounded up."""
    ms = profile.num("corosync.token") + profile.num("corosync.consensus")
    return math.ceil(ms / 1000) + profile.num("fencing.pcmk_delay_max") + profile.num("sbd.msgwait")


def node_files(
    spec: Spec,
    inventory: Inventory,
    node: NodeInfo,
    profile: Profile,
    targets: Targets,
    secrets: ClusterSecrets,
    fence_passwords: Mapping[str, str],
) -> list[RenderedFile]:
    files = [_text("/etc/drbd.d/global_common.conf", drbd_global(profile, targets))]
    for index, vol in enumerate(spec.volumes):
        files.append(
            _text(
                f"/etc/drbd.d/{vol.name}.res",
                drbd_resource(spec, inventory, index, targets, secrets),
                0o600,
                True,
            )
        )
    files.append(_text("/etc/corosync/corosync.conf", corosync_conf(spec, inventory, profile)))
    files.append(RenderedFile(AUTHKEY_PATH, secrets.authkey, 0o400, True))
    sysctl = profile.sysctl()
    if sysctl:
        files.append(
            _text(
                "/etc/sysctl.d/90-hacloud.conf",
                render_template("os/sysctl.conf.j2", profile=profile.name, sysctl=sorted(sysctl.items())),
            )
        )
    if isinstance(spec.service, DemoService):
        files += demo_files(spec)
    files += link_files(inventory, node)
    agents = aws_cli_agents(spec, inventory, profile)
    if agents:
        files.append(_text(AWS_CONFIG_PATH, aws_config(spec, inventory, agents)))
    for method in spec.fencing:
        if isinstance(method, SbdFencing):
            files += _sbd_files(method, profile, targets)
        elif isinstance(method, IpmiFencing | RedfishFencing):
            # Each node can be asked to fence its peer, so both hold both BMC passwords.
            for target in sorted(method.nodes):
                if target in fence_passwords:
                    files.append(_text(r.secret_path(target), fence_passwords[target] + "\n", 0o600, True))
    return files


def demo_files(spec: Spec) -> list[RenderedFile]:
    """The demo service: its program (shipped with hacloud) and its OCF agent ``ocf:hacloud:demo``."""
    from pathlib import Path

    assert isinstance(spec.service, DemoService)
    program = (Path(__file__).resolve().parent.parent / "demo_service.py").read_text(encoding="utf-8")
    agent = render_template(
        "service/hacloud-demo.ocf.j2",
        program=DEMO_PROGRAM,
        data=r.demo_data_dir(spec),
        port=spec.service.port,
    )
    return [_text(DEMO_PROGRAM, program, 0o755), _text(DEMO_AGENT, agent, 0o755)]


def _sbd_files(method: SbdFencing, profile: Profile, targets: Targets) -> list[RenderedFile]:
    delay = sbd_delay_start(profile)
    config = "/etc/default/sbd" if targets.os_family == "debian" else "/etc/sysconfig/sbd"
    return [
        _text(
            config,
            render_template(
                "os/sbd.j2",
                profile=profile.name,
                devices=method.devices,
                delay_start=delay,
                watchdog_device=method.watchdog_device,
                watchdog=profile.num("sbd.watchdog_timeout"),
                msgwait=profile.num("sbd.msgwait"),
            ),
        ),
        _text(
            "/etc/systemd/system/sbd.service.d/hacloud.conf",
            render_template("os/sbd-timeout.conf.j2", delay_start=delay, timeout=math.ceil(delay * 1.2)),
        ),
    ]
