"""The box's instances as user-mode Linux guests: the image, one guest's configuration, its tap
on the router, and UML's management console (mconsole) for the power button and EBS hot-plug.

Contract:
- ``ensure_image(root, progress)`` runs in hacloud's process (it may build the lab image for
  minutes; the daemon never does): it selects the UML kernel and ensures the lab image with
  ``hacloud_lab``'s functions (one image serves lab and box), then writes ``<root>/image.json``
  {base_image, kernel, network, seccomp}. ``load_image(root)`` reads it (HAC701 if missing).
- ``guest_config(...)`` is pure: the ``GuestConfig`` of an instance (tap ``t<8 hex>`` on its
  subnet's bridge in the router namespace, the ENI's MAC and IP, default route via the subnet's
  ``.1``, ``ens5``, ``ip-a-b-c-d`` host name, the box key, the box CA, the endpoint names).
- ``mconsole(sock, command)`` sends one command (magic 0xcafebabe, version 2) and returns the
  reply text; a refused command raises HAC702, no answer HAC703.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import struct
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hacloud_lab.guest import GuestConfig

from hacloud.errors import HacloudError
from hacloud_aws.box import layout, pki
from hacloud_aws.box.layout import BoxPaths
from hacloud_aws.box.netstate import bridge, gateway_address
from hacloud_aws.box.state import Instance

MCONSOLE_MAGIC = 0xCAFEBABE
MCONSOLE_VERSION = 2
MCONSOLE_MAX_DATA = 512  # UML's MCONSOLE_MAX_DATA: the request's data field is always this long
IFNAME = "ens5"  # the first interface on Nitro Debian AMIs


@dataclass(frozen=True)
class ImageInfo:
    base_image: str
    kernel: str
    network: str
    seccomp: bool


def image_json(root: Path) -> Path:
    return root / "image.json"


def ensure_image(root: Path, progress: Callable[[str], None]) -> None:
    """Select the kernel, ensure the lab image (built when missing), record both in image.json."""
    from hacloud_lab import image

    uml = image.select_kernel(progress)
    base = image.ensure_image(uml, progress)
    info = ImageInfo(str(base), uml.binary, uml.network, uml.seccomp)
    target = image_json(root)
    target.write_text(json.dumps(info.__dict__, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def load_image(root: Path) -> ImageInfo:
    """The image and kernel ``ensure_image`` recorded (HAC701 when it never ran or they are gone)."""
    path = image_json(root)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        info = ImageInfo(
            str(raw["base_image"]), str(raw["kernel"]), str(raw["network"]), bool(raw["seccomp"])
        )
    except (OSError, ValueError, KeyError) as exc:
        raise HacloudError(
            f"the box runs instances as guests but has no usable {path} ({exc})",
            "let hacloud prepare the guest image first (`hacloud up` does; or "
            "hacloud_aws.box.guests.ensure_image), or start the box without --guests",
            code="HAC701",
        ) from None
    missing = [p for p in (info.base_image, info.kernel) if not Path(p).exists()]
    if missing:
        raise HacloudError(
            f"{path} names {missing[0]}, which is gone",
            "prepare the guest image again (hacloud_aws.box.guests.ensure_image, run by `hacloud up`)",
            code="HAC713",
        )
    return info


# -- one guest ---------------------------------------------------------------------------------


def tap_name(instance_id: str) -> str:
    """The instance's tap on the router (≤ 15 characters): ``t`` + the id's last 8 hex digits."""
    return "t" + instance_id.rsplit("-", 1)[-1][-8:]


def host_name(address: str) -> str:
    """EC2's default host name of a private address: ``ip-192-0-2-4``."""
    return "ip-" + address.replace(".", "-")


def volume_serial(volume_id: str) -> str:
    """The serial an EBS volume shows on Nitro: its id without the dash (``vol0123...``)."""
    return volume_id.replace("-", "")


def guest_dir(root: Path, instance_id: str) -> Path:
    return root / "guests" / instance_id


def volume_file(root: Path, volume_id: str) -> Path:
    return root / "volumes" / f"{volume_id}.img"


def ca_der_b64(paths: BoxPaths) -> str:
    """The box CA as base64 DER (fits the kernel command line; the guest rebuilds the PEM)."""
    text = paths.ca_pem.read_text(encoding="ascii")
    body = text.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    return "".join(body.split())


def subnet_cidr(subnet_id: str, subnet_ids: dict[str, str]) -> tuple[str, str]:
    """(layout name, CIDR) of a subnet of the box layout."""
    for name, cidr, _zone in layout.SUBNETS:
        if subnet_ids.get(name) == subnet_id:
            return name, cidr
    raise HacloudError(
        f"subnet {subnet_id} is not one of the box's subnets ({', '.join(sorted(subnet_ids.values()))})",
        "run instances in the box layout's subnets (box.json: layout.subnets)",
        code="HAC704",
    )


@dataclass(frozen=True)
class GuestInputs:
    """What every guest of one box shares."""

    root: Path
    region: str
    router: str
    subnet_ids: dict[str, str]
    image: ImageInfo
    public_key: str  # "ssh-ed25519 AAAA... comment"
    ca_b64: str
    memory_mib: int


def guest_config(inputs: GuestInputs, inst: Instance, disks: tuple[tuple[str, str], ...]) -> GuestConfig:
    """The guest of ``inst`` with ``disks`` ((file, serial) in ubd order from ubdb); pure."""
    eni = inst.interfaces[0]
    _name, cidr = subnet_cidr(eni.subnet, inputs.subnet_ids)
    prefix = ipaddress.IPv4Network(cidr).prefixlen
    address = eni.private_ips[0]
    hosts = ",".join(f"{n}:{layout.ENDPOINT_ADDRESS}" for n in pki.endpoint_names(inputs.region))
    return GuestConfig(
        name=host_name(address),
        umid=inst.id,
        directory=str(guest_dir(inputs.root, inst.id)),
        base_image=inputs.image.base_image,
        data_disks=tuple(f for f, _s in disks),
        taps=((tap_name(inst.id), eni.mac),),
        addresses=(f"{address}/{prefix}",),
        hosts=hosts,
        admin_key=inputs.public_key.split()[1],
        memory_mib=inputs.memory_mib,
        kernel=inputs.image.kernel,
        network=inputs.image.network,
        seccomp=inputs.image.seccomp,
        disk_serials=tuple(s for _f, s in disks),
        cmdline=(f"lab.gw={gateway_address(cidr)}", f"lab.ifname={IFNAME}", f"lab.ca={inputs.ca_b64}"),
        netns=inputs.router,
        uml_dir=str(runtime_dir(inputs.root)),
    )


def ensure_tap(router: str, tap: str, subnet_name: str) -> None:
    """The guest's tap in the router namespace, on its subnet's bridge (kept if it exists)."""

    def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ip", "-n", router, *args], capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise HacloudError(
                f"the box could not plug tap {tap}: `ip {' '.join(args)}`: {proc.stderr.strip()}",
                "the box's guests need root and /dev/net/tun; stop the box and start it again",
                code="HAC705",
            )
        return proc

    if ip("link", "show", tap, check=False).returncode != 0:
        ip("tuntap", "add", "dev", tap, "mode", "tap")
    ip("link", "set", tap, "master", bridge(subnet_name), "up")


def remove_tap(router: str, tap: str) -> None:
    subprocess.run(["ip", "-n", router, "link", "del", tap], capture_output=True, timeout=30, check=False)


# -- mconsole ------------------------------------------------------------------------------------


def encode_request(command: str) -> bytes:
    """One mconsole request: magic, version, length (little-endian u32) and 512 bytes of data."""
    data = command.encode()
    if len(data) >= MCONSOLE_MAX_DATA:
        raise HacloudError(
            f"mconsole command too long ({len(data)} bytes, UML takes < {MCONSOLE_MAX_DATA})",
            "use a shorter path for the box directory",
            code="HAC706",
        )
    return struct.pack("<III", MCONSOLE_MAGIC, MCONSOLE_VERSION, len(data)) + data.ljust(
        MCONSOLE_MAX_DATA, b"\0"
    )


def decode_reply(packet: bytes) -> tuple[int, bool, str]:
    """(err, more, text) of one mconsole reply packet."""
    err, more, length = struct.unpack("<III", packet[:12])
    return err, bool(more), packet[12 : 12 + length].decode(errors="replace")


def mconsole_socket(config: GuestConfig) -> Path:
    return config.runtime_dir / config.umid / "mconsole"


def runtime_dir(root: Path) -> Path:
    """UML's runtime directory for the guests of the box at ``root``: short (UML binds its
    mconsole socket there and a socket path has at most 107 bytes), root-only, one per box."""
    import hashlib

    return Path("/run/hacloud-box") / hashlib.sha256(str(root).encode()).hexdigest()[:10]


def mconsole(sock: Path, command: str, timeout: float = 10.0) -> str:
    """Send ``command`` to the guest's mconsole and return its reply (see module contract)."""
    # A unix socket path is at most 107 bytes and a box directory can be deep: reach the
    # guest's socket through its directory's descriptor (/proc/self/fd/N/mconsole), and bind
    # our own reply socket in a short private directory under /tmp.
    try:
        folder = os.open(sock.parent, os.O_PATH | os.O_DIRECTORY)
    except OSError as exc:
        raise HacloudError(
            f"the guest's console {sock} is not there ({exc.strerror})",
            "the guest is off; see its console.log",
            code="HAC714",
        ) from None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="hacmc-") as tmp,
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s,
        ):
            s.bind(os.path.join(tmp, "c"))
            s.settimeout(timeout)
            try:
                s.sendto(encode_request(command), f"/proc/self/fd/{folder}/{sock.name}")
                parts, more, err = [], True, 0
                while more:
                    err, more, text = decode_reply(s.recv(4096))
                    parts.append(text)
            except OSError as exc:
                raise HacloudError(
                    f"the guest's console {sock} did not answer `{command.split(maxsplit=1)[0]}` ({exc})",
                    "the guest is off or hung; see its console.log",
                    code="HAC703",
                ) from None
    finally:
        os.close(folder)
    reply = "".join(parts)
    if err:
        raise HacloudError(
            f"the guest refused `{command}`: {reply.strip() or err}",
            "a disk still in use cannot be removed: unmount it in the guest first"
            if command.startswith("remove")
            else "see the guest's console.log",
            code="HAC702",
        )
    return reply


def write_sparse(path: Path, size_gib: int) -> None:
    """A sparse file of ``size_gib`` GiB (created once; an existing volume is never shrunk)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.truncate(size_gib * 1024**3)
