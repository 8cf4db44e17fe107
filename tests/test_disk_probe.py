"""The disk-signature probe that guards `create-md` and `mkfs` (issue 15 item 21), run for real:
util-linux `wipefs` on file images (wipefs reads regular files; no loop device needed) over
the real SSH transport to an sshd on loopback. A probe that cannot answer must refuse, never
read as a blank disk."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from conftest import need
from test_remote import Sshd, sshd  # noqa: F401 (the loopback sshd fixture)

from hacloud.deploy.drbdsteps import disk_signatures
from hacloud.errors import HacloudError


def _blkid_types(image: Path) -> set[str]:
    """What an independent tool (blkid, low-level probe) finds on the image."""
    proc = subprocess.run(
        ["blkid", "-p", "-o", "export", str(image)], capture_output=True, text=True, check=False
    )
    return {
        line.split("=", 1)[1] for line in proc.stdout.splitlines() if line.startswith(("TYPE=", "PTTYPE="))
    }


def _write_mbr(image: Path) -> None:
    """A DOS partition table with one Linux partition (the MBR layout, written by hand because
    the host has no fdisk): entry 1 at byte 446, boot signature 0x55AA at 510."""
    sectors = image.stat().st_size // 512
    entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 2048, sectors - 2048)
    with image.open("r+b") as f:
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")


@pytest.mark.tools
def test_probe_reads_what_is_on_a_real_image(sshd: Sshd, tmp_path: Path) -> None:  # noqa: F811
    need("wipefs", "blkid", "mkfs.ext4")
    blank = tmp_path / "blank.img"
    ext4 = tmp_path / "ext4.img"
    table = tmp_path / "mbr.img"
    for image in (blank, ext4, table):
        subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(ext4)], check=True)
    _write_mbr(table)
    conn = sshd.connection(tmp_path / "kh").connect()
    try:
        assert disk_signatures(conn, "node1", str(blank)) == ([], 0)
        assert _blkid_types(blank) == set()
        found, _ = disk_signatures(conn, "node1", str(ext4))
        assert found == ["ext4"] and _blkid_types(ext4) == {"ext4"}
        # a partition table alone (no filesystem yet) is data too
        found, _ = disk_signatures(conn, "node1", str(table))
        assert found == ["dos"] and _blkid_types(table) == {"dos"}
    finally:
        conn.close()


@pytest.mark.tools
@pytest.mark.parametrize("case", ["missing", "directory"])
def test_probe_that_cannot_answer_refuses(sshd: Sshd, tmp_path: Path, case: str) -> None:  # noqa: F811
    """A path wipefs cannot probe (gone, or not a disk) is an error naming the disk, the node,
    wipefs's own words and the way out; before the fix it read as an empty disk."""
    need("wipefs")
    target = tmp_path / "no-such-disk" if case == "missing" else tmp_path
    conn = sshd.connection(tmp_path / "kh").connect()
    try:
        with pytest.raises(HacloudError) as info:
            disk_signatures(conn, "node1", str(target))
        # the probe before mkfs offers no --force: DRBD metadata is there, data may be too
        with pytest.raises(HacloudError) as mkfs:
            disk_signatures(conn, "node1", str(target), forceable=False)
        assert "not even with --force" in mkfs.value.remedy
    finally:
        conn.close()
    err = info.value
    assert f"cannot tell whether {target} on node1 holds data" in err.message
    assert "probing initialization failed" in err.message  # wipefs's stderr, verbatim
    assert "--force" in err.remedy and "nodes[].volumes" in err.remedy
