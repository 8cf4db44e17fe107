"""The engine's first steps on each node: read its facts, install the missing packages, run the
provider's read-only checks, and write the rendered files whose checksum differs.

Contracts: a file is written only when the sha256 the facts read differs from the rendered
content's, with the mode the renderer gave it (secrets 0600), atomically by
:meth:`hacloud.deploy.remote.Connection.put`; a secret's content is never shown in a change.
A retired file is removed only when the bundle does not render the same path.
"""

from __future__ import annotations

import shlex

from hacloud.deploy.facts import gather
from hacloud.deploy.remote import sha256_hex
from hacloud.deploy.step import EngineBase, on_nodes
from hacloud.errors import HacloudError
from hacloud.render.files import LINKS_SCRIPT
from hacloud.spec.inventory import RenderedFile

PACKAGES = {
    "apt-get": "drbd-utils corosync pacemaker pacemaker-cli-utils resource-agents fence-agents "
    "ipmitool python3 curl xfsprogs e2fsprogs util-linux psmisc",
    "dnf": "drbd-utils corosync pacemaker resource-agents fence-agents-all python3 curl xfsprogs psmisc",
    "zypper": "drbd drbd-utils corosync pacemaker resource-agents fence-agents python3 curl xfsprogs psmisc",
}
INSTALL = {
    "apt-get": "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends",
    "dnf": "dnf install -y -q",
    "zypper": "zypper --non-interactive install --no-recommends",
}


# Files earlier hacloud versions installed and this one replaced, with how to retire them:
# the demo ran as a systemd unit before it got its own OCF agent; a unit left running would
# keep the port and make the agent's start fail.
RETIRED_FILES = {
    "/etc/systemd/system/hacloud-demo.service": "systemctl stop hacloud-demo 2>/dev/null; "
    "rm -f /etc/systemd/system/hacloud-demo.service; systemctl daemon-reload",
}


class InstallSteps(EngineBase):
    """Facts, packages, provider checks and files (see the module doc)."""

    def paths(self, node: str) -> list[str]:
        return [f.path for f in self.bundle.files[node]] + list(RETIRED_FILES) + self._retired(node)

    def _retired(self, node: str) -> list[str]:
        """This node's retired paths the bundle does not also render (never remove a file we write)."""
        written = {f.path for f in self.bundle.files[node]}
        return [p for p in self.bundle.retired.get(node, ()) if p not in written]

    def read_facts(self) -> None:
        results = on_nodes(lambda n: gather(self.conns[n], self.paths(n), self.commands), self.names)
        self.facts = dict(zip(self.names, results, strict=True))

    def packages(self) -> None:
        for name in self.names:
            facts = self.facts[name]
            missing = [c for c in self.commands if c not in facts.commands]
            if not missing:
                continue
            pm = facts.package_manager
            if pm not in PACKAGES:
                raise HacloudError(
                    f"{name}: missing {', '.join(missing)} and no apt-get, dnf or zypper",
                    "install DRBD utils, corosync, pacemaker and the agents by hand",
                    code="HAC413",
                )
            packages = " ".join(p for p in (PACKAGES[pm], self.needs.packages.get(pm, "")) if p)
            self.change(name, "packages", f"install {packages} (missing {', '.join(missing)})")
            if self.apply:
                if pm == "apt-get":
                    self.conns[name].run("apt-get update -q", timeout=600)
                self.conns[name].run(f"{INSTALL[pm]} {packages}", timeout=1800)
        if self.apply and any(c.step == "packages" for c in self.changes):
            self.read_facts()

    def host_names(self) -> None:
        """Each node's host name is its node name: DRBD finds its own `on NAME` section by
        `uname -n`, and the vendors' AWS/Azure HA guides set it (with cloud-init told to keep it).
        Only on machines the provider made for the cluster (``needs.name_hosts``); elsewhere a
        different host name is refused before anything is written."""
        for name in self.names:
            current = self.facts[name].hostname
            if not current or current == name:
                continue
            if not self.needs.name_hosts:
                raise HacloudError(
                    f"{name}: the host's name is {current!r}, not {name!r}; DRBD and Pacemaker "
                    "know a node by its host name",
                    f"name the node {current!r} in nodes[].name, or rename the host to {name!r}",
                    code="HAC429",
                )
            self.change(name, "hostname", f"set the host name to {name} (was {current})")
            if self.apply:
                self.conns[name].run(self._hostname_command(name), timeout=60)

    def _hostname_command(self, name: str) -> str:
        q = shlex.quote(name)
        keep = (
            # cloud-init would give the instance its metadata name back at the next boot
            "printf 'preserve_hostname: true\n' > /etc/cloud/cloud.cfg.d/99-hacloud-hostname.cfg; "
            if self.facts[name].cloud_init
            else ""
        )
        return (
            f"{keep}hostnamectl set-hostname {q} 2>/dev/null || {{ echo {q} > /etc/hostname; hostname {q}; }}"
        )

    def node_probes(self) -> None:
        """The provider's read-only node checks (IMDS, cloud API reach, agent listing), before
        the CIB that enables fencing goes in: a fence agent that cannot work must stop `up`."""
        for check in self.needs.probes:
            for name in self.names:
                res = self.conns[name].run(check.command, check=False, timeout=120)
                if res.rc != 0:
                    detail = " / ".join((res.stdout + res.stderr).strip().splitlines()[-3:]) or f"rc {res.rc}"
                    raise HacloudError(
                        f"{name}: check {check.code} failed: {check.what} ({detail})",
                        check.remedy,
                        code="HAC414",
                    )

    # -------------------------------------------------------------- files

    def files(self) -> dict[str, set[str]]:
        """Upload every file whose checksum differs; returns node -> changed paths."""
        changed: dict[str, set[str]] = {n: set() for n in self.names}
        for name in self.names:
            for path, retire in RETIRED_FILES.items():
                if self.facts[name].sums.get(path):
                    self.change(name, "file", f"retire {path} (replaced in this hacloud version)")
                    if self.apply:
                        self.conns[name].run(retire)
            for path in self._retired(name):
                if self.facts[name].sums.get(path):
                    self.change(name, "file", f"remove {path} (a node holds only its peer's BMC password)")
                    if self.apply:
                        # exactly this regular file: rm -f never follows into a directory
                        self.conns[name].run(f"rm -f -- {shlex.quote(path)}")
            for f in self.bundle.files[name]:
                if self.facts[name].sums.get(f.path) != sha256_hex(f.content):
                    changed[name].add(f.path)
                    what = "(secret, content not shown)" if f.secret else f"{len(f.content)} bytes"
                    self.change(name, "file", f"write {f.path} {what}")

        def upload(name: str) -> None:
            by_path: dict[str, RenderedFile] = {f.path: f for f in self.bundle.files[name]}
            for path in sorted(changed[name]):
                f = by_path[path]
                self.conns[name].put(f.path, f.content, f.mode)
            if any(p.startswith("/etc/systemd/") for p in changed[name]):
                self.conns[name].run("systemctl daemon-reload")
            if any(p.startswith("/etc/sysctl.d/") for p in changed[name]):
                self.conns[name].run("sysctl --system >/dev/null")
            if LINKS_SCRIPT in changed[name]:
                # corosync runs it before it starts; a running corosync reloads the new link
                # right after the files, so the address must be up now.
                self.conns[name].run(LINKS_SCRIPT)

        if self.apply:
            on_nodes(upload, self.names)
        return changed

    # -------------------------------------------------------------- DRBD
