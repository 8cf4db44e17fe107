"""The lab guest image: Debian with the cluster stack and the UML kernel's modules.

Contract: :func:`ensure_image` returns the path of a root filesystem image for the guests,
building it only when no cached image with the same inputs exists. The cache key is a hash of
every input (suite, mirrors, packages, kernel module tree, first-boot script, recipe version),
so a changed input builds a new image and never alters one that copy-on-write layers use.
The mirror is read from this machine's own apt sources, never hard-coded.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hacloud.errors import HacloudError
from hacloud_lab import kernel as kernel_mod

RECIPE_VERSION = "4"
IMAGE_SIZE = "2G"
Progress = Callable[[str], None]

PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "sudo",
    "corosync",
    "pacemaker",
    "pacemaker-cli-utils",
    "drbd-utils",
    "resource-agents",
    "fence-agents",
    "ipmitool",
    "sbd",
    "kmod",
    "iproute2",
    "iputils-ping",
    "e2fsprogs",
    "xfsprogs",
    "procps",
    "psmisc",  # fuser: ocf:heartbeat:Filesystem refuses to run without it
    "curl",
    "netcat-openbsd",
    "socat",
    "ca-certificates",
    "python3",
    # the AWS agents (fence_aws, aws-vpc-move-ip, awseip) and hacloud's AWS checks in the AWS box,
    # whose guests have no package network (hacloud_aws.AWS_PACKAGES["apt-get"])
    "awscli",
    "python3-boto3",
    "python3-requests",
)

# Runs at every boot: identity, addresses and the admin key come from the kernel command
# line (UML passes unknown arguments through to /proc/cmdline), so one image serves all guests.
FIRST_BOOT = r"""#!/bin/sh
set -eu
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    lab.hostname=*) NAME="${arg#*=}" ;;
    lab.ip0=*) IP0="${arg#*=}" ;;
    lab.ip1=*) IP1="${arg#*=}" ;;
    lab.key=*) KEY="${arg#*=}" ;;
    lab.hosts=*) HOSTS="${arg#*=}" ;;
    lab.if=*) IFP="${arg#*=}" ;;
    lab.ifname=*) IFNAME="${arg#*=}" ;;
    lab.gw=*) GW="${arg#*=}" ;;
    lab.ca=*) CA="${arg#*=}" ;;
  esac
done
# eth0, eth1 with the legacy tuntap transport; vec0, vec1 with the vector driver (later kernels)
IFP="${IFP:-eth}"
IF0="${IFP}0"
# The host name from the command line at every boot, as cloud-init gives an instance its
# metadata name, unless cloud-init is told to keep the host's own (`up` renames cloud instances
# to their node names and says so in /etc/cloud/cloud.cfg.d, as the AWS/Azure HA guides do).
if grep -qsE '^preserve_hostname: *true' /etc/cloud/cloud.cfg /etc/cloud/cloud.cfg.d/*.cfg; then
  NAME="$(cat /etc/hostname)"
else
  echo "$NAME" > /etc/hostname
fi
hostname "$NAME"
ip link set lo up
# lab.ifname: the first card's name as the cloud's images have it (ens5 on Nitro Debian AMIs)
if [ -n "${IFNAME:-}" ] && [ "$IFNAME" != "$IF0" ]; then
  ip link set "$IF0" name "$IFNAME" 2>/dev/null || true
  ip link show "$IFNAME" >/dev/null 2>&1 && IF0="$IFNAME"
fi
ip addr add "$IP0" dev "$IF0" 2>/dev/null || true
ip link set "$IF0" up
if [ -n "${GW:-}" ]; then
  ip route replace default via "$GW" dev "$IF0"
  # No DNS server behind the gateway (names come from /etc/hosts): fail a lookup at once
  # instead of waiting for the host's resolver through a router that drops it.
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > /etc/resolv.conf
fi
# lab.ca: base64 DER of a CA to trust (the AWS box's); appended, not a full
# update-ca-certificates, which takes long on one UML CPU
if [ -n "${CA:-}" ]; then
  PEM="$(echo '-----BEGIN CERTIFICATE-----'; printf '%s' "$CA" | fold -w 64
         echo; echo '-----END CERTIFICATE-----')"
  printf '%s\n' "$PEM" > /usr/local/share/ca-certificates/hacloud-box.crt
  grep -qxF "$(printf '%s' "$CA" | cut -c1-64)" /etc/ssl/certs/ca-certificates.crt ||
    printf '%s\n' "$PEM" >> /etc/ssl/certs/ca-certificates.crt
fi
if [ -n "${IP1:-}" ]; then
  ip addr add "$IP1" dev "${IFP}1" 2>/dev/null || true
  ip link set "${IFP}1" up
fi
{
  echo "127.0.0.1 localhost"
  echo "$HOSTS" | tr ',' '\n' | sed -n 's/^\([^:]*\):\(.*\)$/\2 \1/p'
} > /etc/hosts
# Host keys are made on the first boot of each guest (its own copy-on-write layer).
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A
install -d -m 700 /root/.ssh
echo "ssh-ed25519 ${KEY} hacloud-lab" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
"""

# An attached EBS volume's stable name on Nitro: udev names NVMe disks by serial, the volume id
# without the dash (hacloud_aws.tfstate.ebs_device_path). The AWS box attaches volumes as UML
# ubd disks whose serial is that id, so the same name appears here.
EBS_UDEV_RULE = (
    'SUBSYSTEM=="block", KERNEL=="ubd[b-z]", ATTR{serial}=="vol?*", '
    'SYMLINK+="disk/by-id/nvme-Amazon_Elastic_Block_Store_$attr{serial}"\n'
)

FIRST_BOOT_UNIT = """[Unit]
Description=hacloud lab identity (host name, addresses, SSH keys from the kernel command line)
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/hacloud-lab-init
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


def host_codename() -> str:
    text = Path("/etc/os-release").read_text(encoding="utf-8")
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.MULTILINE)
    if not m:
        raise HacloudError(
            "cannot tell this machine's Debian release from /etc/os-release",
            "the lab needs a Debian or Ubuntu host",
            code="HAC630",
        )
    return m.group(1)


def _parse_sources(root: Path) -> list[AptSource]:
    found: list[AptSource] = []
    files = [root / "sources.list"] if (root / "sources.list").exists() else []
    files += sorted((root / "sources.list.d").glob("*.list")) if (root / "sources.list.d").is_dir() else []
    for path in files:
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = re.sub(r"\[[^]]*\]", "", raw.split("#", 1)[0]).split()
            if len(line) >= 4 and line[0] == "deb":
                found.append(AptSource(line[1], line[2], tuple(line[3:])))
    for path in (
        sorted((root / "sources.list.d").glob("*.sources")) if (root / "sources.list.d").is_dir() else []
    ):
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            fields: dict[str, str] = {}
            for raw in stanza.splitlines():
                if raw.startswith("#") or ":" not in raw:
                    continue
                key, value = raw.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    found.append(AptSource(uri, suite, tuple(fields.get("components", "main").split())))
    return found


def mirror_sources(codename: str, apt_root: Path = Path("/etc/apt")) -> list[AptSource]:
    """This machine's apt sources for its own release (main component only), e.g. bookworm,
    bookworm-updates, bookworm-security; third-party repositories are left out."""
    wanted = {codename, f"{codename}-updates", f"{codename}-security", f"{codename}/updates"}
    out = [
        AptSource(s.uri, s.suite, ("main",))
        for s in _parse_sources(apt_root)
        if s.suite in wanted and "main" in s.components
    ]
    if not any(s.suite == codename for s in out):
        raise HacloudError(
            f"no apt source for {codename} main in {apt_root}",
            "add this machine's Debian mirror to /etc/apt/sources.list(.d); the lab builds from it",
            code="HAC631",
        )
    return list(dict.fromkeys(out))


def debian_mirror(codename: str, sources: list[AptSource]) -> str:
    """The URI of the main Debian archive among this machine's sources (for the lab kernel)."""
    for source in sources:
        if source.suite == codename:
            return source.uri
    return sources[0].uri if sources else "http://deb.debian.org/debian"


def select_kernel(progress: Progress = lambda _m: None) -> kernel_mod.Kernel:
    codename = host_codename()
    return kernel_mod.select(data_dir(), progress, debian_mirror(codename, mirror_sources(codename)))


def image_key(codename: str, sources: list[AptSource], kernel: str) -> str:
    digest = hashlib.sha256()
    for part in (
        RECIPE_VERSION,
        codename,
        kernel,
        IMAGE_SIZE,
        FIRST_BOOT,
        FIRST_BOOT_UNIT,
        EBS_UDEV_RULE,
        *PACKAGES,
        *(s.line() for s in sources),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def data_dir() -> Path:
    """Where hacloud keeps data shared by all clusters (images): $HACLOUD_DATA_DIR, else
    $XDG_DATA_HOME/hacloud, else ~/.local/share/hacloud."""
    if os.environ.get("HACLOUD_DATA_DIR"):
        return Path(os.environ["HACLOUD_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hacloud"


def ensure_image(kernel: kernel_mod.Kernel, progress: Progress = lambda _m: None) -> Path:
    """Return the cached image for the current inputs and ``kernel``'s modules, building it
    first when missing."""
    codename = host_codename()
    sources = mirror_sources(codename)
    key = image_key(codename, sources, kernel.version)
    target = data_dir() / "images" / key / "base.img"
    if target.exists():
        progress(f"image {key}: cached at {target}")
        return target
    for tool in ("mmdebstrap", "mke2fs", "depmod"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise HacloudError(
                f"{tool} is missing", "run `apt-get install mmdebstrap e2fsprogs kmod`", code="HAC632"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hacloud-image-", dir=target.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        progress(f"image {key}: mmdebstrap {codename} from {', '.join(s.uri for s in sources)}")
        _mmdebstrap(codename, sources, rootfs, progress)
        progress("image: kernel modules, first-boot unit")
        _customise(rootfs, kernel)
        progress(f"image: mke2fs {IMAGE_SIZE}")
        partial = Path(tmp) / "base.img"
        subprocess.run(
            [
                "mke2fs",
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "hacloud-root",
                "-d",
                str(rootfs),
                str(partial),
                IMAGE_SIZE,
            ],
            check=True,
            capture_output=True,
        )
        # Rename last: a half-built image never looks cached.
        partial.replace(target)
    progress(f"image {key}: built in {time.monotonic() - started:.0f} s")
    return target


def _mmdebstrap(codename: str, sources: list[AptSource], rootfs: Path, progress: Progress) -> None:
    cmd = [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        f"--include={','.join(PACKAGES)}",
        # Debian enables the stack on install; hacloud starts it once configured.
        '--customize-hook=chroot "$1" systemctl disable corosync pacemaker sbd || true',
        codename,
        str(rootfs),
        *(s.line() for s in sources),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = [*tail[-30:], line.rstrip()]
        m = re.search(r"I: (downloading|extracting|installing|running|creating)[^\n]*", line)
        if m:
            progress(f"image: {m.group(0)[3:][:70]}")
    if proc.wait() != 0:
        raise HacloudError(
            "mmdebstrap failed:\n" + "\n".join(tail),
            "check that this machine reaches its Debian mirror (apt-get update)",
            code="HAC633",
        )


def _customise(rootfs: Path, kernel: kernel_mod.Kernel) -> None:
    modules = rootfs / "usr" / "lib" / "modules" / kernel.version
    shutil.copytree(Path(kernel.modules) / kernel.version, modules, dirs_exist_ok=True)
    subprocess.run(["depmod", "-b", str(rootfs), kernel.version], check=True, capture_output=True)
    (rootfs / "etc" / "modules-load.d" / "hacloud.conf").write_text("drbd\n", encoding="utf-8")
    init = rootfs / "usr" / "local" / "sbin" / "hacloud-lab-init"
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(FIRST_BOOT, encoding="utf-8")
    init.chmod(0o755)
    unit = rootfs / "etc" / "systemd" / "system" / "hacloud-lab-init.service"
    unit.write_text(FIRST_BOOT_UNIT, encoding="utf-8")
    wants = rootfs / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "hacloud-lab-init.service").symlink_to("/etc/systemd/system/hacloud-lab-init.service")
    (rootfs / "etc" / "fstab").write_text("/dev/ubda / ext4 defaults,noatime 0 1\n", encoding="utf-8")
    (rootfs / "etc" / "machine-id").write_text("", encoding="utf-8")
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Debian's sample corosync.conf would make corosync start with the wrong cluster.
    (rootfs / "etc" / "corosync" / "corosync.conf").unlink(missing_ok=True)
    # No console login: the guests are reached over SSH only.
    for unit_name in ("getty@tty1.service", "serial-getty@ttyS0.service", "console-getty.service"):
        (rootfs / "etc" / "systemd" / "system" / unit_name).symlink_to("/dev/null")
    # where cloud-init's settings live: the first-boot script honours preserve_hostname there
    (rootfs / "etc" / "cloud" / "cloud.cfg.d").mkdir(parents=True, exist_ok=True)
    rules = rootfs / "etc" / "udev" / "rules.d" / "60-hacloud-ebs.rules"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(EBS_UDEV_RULE, encoding="utf-8")
    # UML's mconsole `cad` (the AWS box's ACPI power button for a default StopInstances) sends
    # Ctrl-Alt-Del: power off cleanly, as an EC2 instance does on that button, not reboot.
    cad = rootfs / "etc" / "systemd" / "system" / "ctrl-alt-del.target"
    cad.unlink(missing_ok=True)
    cad.symlink_to("/lib/systemd/system/poweroff.target")
    sshd = rootfs / "etc" / "ssh" / "sshd_config.d" / "hacloud.conf"
    sshd.parent.mkdir(parents=True, exist_ok=True)
    sshd.write_text(
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n", encoding="utf-8"
    )
