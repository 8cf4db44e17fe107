"""Render every file a node needs (pure).

Contract: :func:`node_files` returns the files for one node in a fixed order; equal input gives
byte-equal output. Files that hold secrets are marked ``secret`` with mode 0600/0400 and
are never shown by the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hacloud.render import fencing
from hacloud.render import resources as r
from hacloud.render.env import render_template
from hacloud.render.fencepath import FencePath, handler_timeouts
from hacloud.render.versions import Targets
from hacloud.spec.inventory import Inventory, NodeInfo, RenderedFile
from hacloud.spec.model import DemoService, IpmiFencing, RedfishFencing, SbdFencing, Spec
from hacloud.spec.profiles import Profile
from hacloud.spec.secrets import ClusterSecrets

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
    "after_sb_2pri",
    "ping_int",
    "ping_timeout",
    "socket_check_timeout",
    "timeout",
    "connect_int",
    "ko_count",
    "max_buffers",
)
# Resource agents that call `aws --profile <profile>` (default "default"); the CLI refuses a
# profile that no config file defines, so the VIP never starts without /root/.aws/config.
AWS_CLI_AGENTS = frozenset({"aws-vpc-move-ip", "awseip", "awsvip", "aws-vpc-route53"})
COROSYNC_KEYS = ("token", "consensus", "token_retransmits_before_loss_const", "join", "max_messages")
# Where each family's corosync package logs: Debian's ships /var/log/corosync, RHEL's and SUSE's
# /var/log/cluster. corosync refuses to start when the logfile's directory is missing
# (`corosync -t` exits 7), and a directory made elsewhere would escape the package's logrotate
# file and, on RHEL, the SELinux label (cluster_var_log_t) corosync may write to.
COROSYNC_LOG_DIRS = {"debian": "/var/log/corosync", "rhel": "/var/log/cluster", "suse": "/var/log/cluster"}


def corosync_log_dir(node: NodeInfo, targets: Targets) -> str:
    """The node's corosync log directory: read from the node (deploy facts), else its OS
    family's package default (the node's family, else the cluster's target family)."""
    if node.facts.corosync_log_dir:
        return node.facts.corosync_log_dir
    return COROSYNC_LOG_DIRS.get(node.facts.os_family or targets.os_family, COROSYNC_LOG_DIRS["debian"])


def _text(path: str, content: str, mode: int = 0o644, secret: bool = False) -> RenderedFile:
    return RenderedFile(path, content.encode("utf-8"), mode, secret)


def drbd_global(spec: Spec, profile: Profile, targets: Targets, path: FencePath) -> str:
    """``global_common.conf``; ``path`` is the cluster's fence path, which the fence-peer
    handler's timeouts must cover (see :mod:`hacloud.render.fencepath`)."""
    values = {k: profile.get(f"drbd.{k}") for k in DRBD_KEYS}
    timeout, dc_timeout = handler_timeouts(path)
    return render_template(
        "drbd/global_common.conf.j2",
        drbd=targets.drbd,
        profile=profile.name,
        p=values,
        fence_timeout=timeout,
        dc_timeout=dc_timeout,
        fence_path=path.explain(),
        # only the spec can opt in to discarding data after a split brain (never a profile)
        after_sb_1pri="disconnect" if spec.drbd.split_brain_recovery == "manual" else "discard-secondary",
        verify_alg=spec.drbd.verify_alg,
    )


def volume_device(spec: Spec, node: NodeInfo, index: int) -> str:
    vol = spec.volumes[index]
    return node.volumes.get(vol.name) or vol.device or ""


def drbd_resource(
    spec: Spec, inventory: Inventory, res: r.DrbdResource, targets: Targets, secrets: ClusterSecrets
) -> str:
    """``/etc/drbd.d/<res>.res``. A one-volume resource keeps the implicit volume 0 (the file
    existing clusters already have, byte for byte); several volumes get a ``volume N`` section
    each, inside every ``on`` section since each node names its own disks."""
    nodes = [
        {
            "name": n.name,
            "address": n.replication_address,
            "volumes": [
                {"number": v.number, "minor": v.minor, "disk": volume_device(spec, n, v.index)}
                for v in res.volumes
            ],
        }
        for n in inventory.nodes
    ]
    return render_template(
        "drbd/resource.res.j2",
        drbd=targets.drbd,
        name=res.name,
        port=res.port,
        nodes=nodes,
        grouped=len(res.volumes) > 1,
        secret=secrets.drbd_secret,
    )


def corosync_conf(
    spec: Spec, inventory: Inventory, profile: Profile, node: NodeInfo, targets: Targets
) -> str:
    """``node``'s corosync.conf: the same everywhere but the log directory (its package's)."""
    count = len(inventory.nodes[0].links)
    return render_template(
        "corosync/corosync.conf.j2",
        logfile=f"{corosync_log_dir(node, targets).rstrip('/')}/corosync.log",
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
    region = fencing.aws_region(spec) or inventory.network.extra.get("region", "")
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
    fence_path: FencePath,
) -> list[RenderedFile]:
    files = [_text("/etc/drbd.d/global_common.conf", drbd_global(spec, profile, targets, fence_path))]
    for res in r.drbd_resources(spec):
        files.append(
            _text(
                f"/etc/drbd.d/{res.name}.res",
                drbd_resource(spec, inventory, res, targets, secrets),
                0o600,
                True,
            )
        )
    files.append(_text("/etc/corosync/corosync.conf", corosync_conf(spec, inventory, profile, node, targets)))
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
            # A node only ever fences its peer (its own device is banned from it): it holds the
            # peer's BMC password and never its own (least privilege).
            for target in sorted(method.nodes):
                if target in fence_passwords and target != node.name:
                    files.append(
                        _text(fencing.secret_path(target), fence_passwords[target] + "\n", 0o600, True)
                    )
    return files


def retired_files(spec: Spec, node: NodeInfo) -> tuple[str, ...]:
    """Files this node must not keep: its own BMC password, which hacloud versions before
    least-privilege rendering installed on both nodes (exactly that path, nothing else)."""
    own = any(isinstance(m, IpmiFencing | RedfishFencing) and node.name in m.nodes for m in spec.fencing)
    return (fencing.secret_path(node.name),) if own else ()


def demo_files(spec: Spec) -> list[RenderedFile]:
    """The demo service: its program (shipped with hacloud) and its OCF agent ``ocf:hacloud:demo``."""
    from pathlib import Path

    assert isinstance(spec.service, DemoService)
    program = (Path(__file__).resolve().parent.parent / "verify" / "demo_service.py").read_text(
        encoding="utf-8"
    )
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
