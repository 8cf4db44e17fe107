"""Pacemaker 3 as an independent judge of renders for Pacemaker >= 3.0.

The host runs Debian 12's Pacemaker 2.1.5, whose tools accept the 3.x option names
(`fencing-*`) only as unknown names: a misspelt 3.x option would pass them. So the tests also
validate 3.x renders with Pacemaker 3's own files, fetched from Debian unstable into a side
directory the way the lab fetches its UML kernel (providers/hacloud_lab/kernel.py): a private
apt configuration (its own sources list, lists and cache; the host's dpkg status only to read),
``apt-get download`` and ``dpkg-deb -x``. The host's packages are never touched.

What is fetched: ``pacemaker-cli-utils`` (crm_verify, crm_simulate, crm_attribute,
crm_resource), ``pacemaker-common`` (the RelaxNG schemas of /usr/share/pacemaker) and the
closure of their ``lib*`` dependencies, C library included. The 3.x binaries are started
through that C library's own loader (``ld-linux-x86-64.so.2 --library-path``), so they run on
this older host without patching anything; ``PCMK_schema_directory`` points them at the 3.x
schemas (their compiled-in path is the host's 2.1 copy).

What :func:`validate` checks, each by a Pacemaker 3 source:

1. ``xmllint --relaxng`` against the 3.x package's schema file for the version the CIB
   declares (``validate-with``);
2. Pacemaker 3's ``crm_simulate`` brings both nodes online and its ``crm_verify -V`` must
   accept the result (schema, constraints, resource definitions, as a 3.x cluster would);
3. every option name against Pacemaker 3's own option metadata (``crm_attribute
   --list-options=cluster``, ``crm_resource --list-options=primitive|fencing``): cluster
   properties, resource meta-attributes (``rsc_defaults`` and each resource's) and the
   ``pcmk_*`` parameters of fence devices. Pacemaker ignores an unknown option name silently,
   which is why a misspelling passes both tools above. Names the metadata marks deprecated
   are reported separately (with their replacement, when it names one). Clone options
   (``clone-max``, ``promotable``, ``interleave``...) have no metadata listing in 3.x: a clone's
   meta-attribute passes when it is a primitive option or a string constant of the 3.x
   scheduler libraries that read clones (``libpe_status``, ``libpacemaker``), where a
   misspelling is not.

The side directory is ``$HACLOUD_PCMK3_DIR``, else ``~/.cache/hacloud/pacemaker3``;
``.ci/setup`` fills it (``python tests/pcmk3.py fetch``), the tests' fixture fetches it when
it is missing. A complete copy is kept as it is: delete the directory to take a newer
Pacemaker 3 from unstable. Run ``python tests/pcmk3.py validate CIB.xml`` to judge a render by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "unstable"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# the packages whose files are used; their lib* dependencies are added by apt-cache
ROOTS = ("pacemaker-cli-utils", "pacemaker-common")
LIBDIR = Path("usr/lib/x86_64-linux-gnu")
TOOLS = ("crm_verify", "crm_simulate", "crm_attribute", "crm_resource", "crm_mon")


class FetchError(RuntimeError):
    """Pacemaker 3 could not be fetched (no mirror, no network, a package missing)."""


def side_dir() -> Path:
    env = os.environ.get("HACLOUD_PCMK3_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hacloud" / "pacemaker3"


def host_mirror() -> str:
    """The Debian archive this machine's apt uses (as the lab does), else Debian's CDN name."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "providers"))
    try:
        from hacloud_lab.image import debian_mirror, host_codename, mirror_sources

        codename = host_codename()
        return debian_mirror(codename, mirror_sources(codename))
    except Exception:
        return DEFAULT_MIRROR


def _run(cmd: list[str], what: str, cwd: Path | None = None, timeout: int = 600) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if proc.returncode != 0:
        raise FetchError(f"{what} failed (rc={proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout


def _apt_options(root: Path) -> list[str]:
    # the lab kernel fetch's private apt configuration: the host's own stays untouched
    from hacloud_lab.kernel import private_apt_options

    return private_apt_options(root)


def _closure(apt_cache: list[str]) -> list[str]:
    """ROOTS plus every ``lib*`` package they depend on, transitively (39 packages for 3.0.3)."""
    seen: list[str] = []
    todo = list(ROOTS)
    while todo:
        seen += todo
        out = _run([*apt_cache, "depends", *todo], "apt-cache depends (Debian unstable)")
        deps = sorted({m for m in re.findall(r"^\s+Depends: (lib[^\s<>]+)", out, re.M)})
        todo = [d for d in deps if d not in seen]
    return seen


def fetch(target: Path | None = None, mirror: str | None = None) -> Path:
    """Pacemaker 3 from Debian unstable unpacked in ``target`` (default :func:`side_dir`);
    returns it. Idempotent: a complete copy (``fetched.json`` written last) is kept as it is."""
    target = target or side_dir()
    if (target / "fetched.json").exists():
        return target
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FetchError(f"{tool} is missing (Debian/Ubuntu host needed)")
    mirror = mirror or host_mirror()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pcmk3-apt-", dir=target.parent) as tmp:
        root = Path(tmp)
        (root / "lists" / "partial").mkdir(parents=True)
        (root / "archives" / "partial").mkdir(parents=True)
        (root / "sources.list").write_text(f"deb {mirror} {SUITE} main\n")
        opts = _apt_options(root)
        _run(["apt-get", *opts, "update", "-q"], f"apt-get update ({mirror} {SUITE})", timeout=300)
        packages = _closure(["apt-cache", *opts])
        debs_dir = root / "debs"
        debs_dir.mkdir()
        _run(["apt-get", *opts, "download", *packages], "apt-get download", cwd=debs_dir)
        debs = {p.name.split("_")[0]: p for p in debs_dir.glob("*.deb")}
        if set(debs) != set(packages):
            raise FetchError(f"apt did not download {sorted(set(packages) - set(debs))}")
        staging = root / "tree"
        for deb in debs.values():
            _run(["dpkg-deb", "-x", str(deb), str(staging)], f"dpkg-deb -x {deb.name}")
        versions = {name: deb.name.split("_")[1] for name, deb in debs.items()}
        (staging / "fetched.json").write_text(
            json.dumps({"mirror": mirror, "suite": SUITE, "packages": versions}, indent=1, sort_keys=True)
        )
        if (target / "fetched.json").exists():  # another process finished first: keep its copy
            return target
        if target.exists():  # an incomplete earlier attempt
            shutil.rmtree(target)
        staging.rename(target)
    return target


@dataclass(frozen=True)
class Option:
    name: str
    deprecated: bool
    replaced_with: str | None


@dataclass
class Report:
    """What Pacemaker 3 says of one CIB: ``errors`` must be empty for a valid render."""

    errors: list[str] = field(default_factory=list)
    deprecated: list[str] = field(default_factory=list)  # "name (use replacement)"


class Pacemaker3:
    """The fetched Pacemaker 3 tree: its tools, schemas and option metadata."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lib = root / LIBDIR
        self.schemas = root / "usr" / "share" / "pacemaker"
        meta = json.loads((root / "fetched.json").read_text())
        self.version = str(meta["packages"]["pacemaker-cli-utils"]).split("-")[0].split(":")[-1]
        self._options: dict[str, dict[str, Option]] = {}
        self._strings: bytes | None = None

    def clone_option(self, name: str) -> bool:
        """True when the scheduler libraries (which unpack clones) hold ``name`` as a C string."""
        if self._strings is None:
            libs = [sorted(self.lib.glob(f"{lib}.so.*")) for lib in ("libpe_status", "libpacemaker")]
            if not all(libs):
                raise AssertionError(f"no libpe_status/libpacemaker in {self.lib}")
            self._strings = b"".join(found[-1].read_bytes() for found in libs)
        return b"\0" + name.encode() + b"\0" in self._strings

    def run(self, tool: str, *args: str, cib_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a Pacemaker 3 tool through the fetched C library's loader."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PCMK_", "CIB_", "LD_"))} | {
            "PCMK_schema_directory": str(self.schemas),
            "LC_ALL": "C",
        }
        if cib_file is not None:
            env["CIB_file"] = str(cib_file)
        cmd = [str(self.lib / "ld-linux-x86-64.so.2"), "--library-path", str(self.lib)]
        return subprocess.run(
            [*cmd, str(self.root / "usr" / "sbin" / tool), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    def bin_dir(self) -> Path:
        """A directory of ``crm_*`` commands that run the 3.x tools (put it first on PATH to
        drive tests/tools.py's helpers, e.g. ``simulate_failover``, with Pacemaker 3)."""
        bindir = self.root / "bin"
        bindir.mkdir(exist_ok=True)
        for tool in TOOLS:
            script = bindir / tool
            text = (
                "#!/bin/sh\n"
                f"PCMK_schema_directory={self.schemas} exec {self.lib / 'ld-linux-x86-64.so.2'} "
                f'--library-path {self.lib} {self.root / "usr" / "sbin" / tool} "$@"\n'
            )
            if not script.exists() or script.read_text() != text:
                script.write_text(text)
                script.chmod(0o755)
        return bindir

    def options(self, kind: str) -> dict[str, Option]:
        """Pacemaker 3's own list of option names: ``cluster``, ``primitive`` or ``fencing``."""
        if kind not in self._options:
            tool = "crm_attribute" if kind == "cluster" else "crm_resource"
            proc = self.run(tool, f"--list-options={kind}", "--all", "--output-as=xml")
            if proc.returncode != 0:
                raise AssertionError(f"{tool} --list-options={kind} failed: {proc.stderr}")
            found: dict[str, Option] = {}
            for param in ET.fromstring(proc.stdout).iter("parameter"):
                dep = param.find("deprecated")
                repl = dep.find("replaced-with") if dep is not None else None
                name = param.get("name", "")
                found[name] = Option(name, dep is not None, repl.get("name") if repl is not None else None)
            if not found:
                raise AssertionError(f"{tool} --list-options={kind} listed no option")
            self._options[kind] = found
        return self._options[kind]


def _relaxng(p3: Pacemaker3, cib: Path, report: Report) -> None:
    declared = ET.parse(cib).getroot().get("validate-with", "")
    schema = p3.schemas / f"{declared}.rng"
    if not re.fullmatch(r"pacemaker-\d+\.\d+", declared) or not schema.exists():
        report.errors.append(
            f"validate-with={declared!r}: Pacemaker {p3.version} has no schema {schema.name}"
        )
        return
    proc = subprocess.run(
        ["xmllint", "--noout", "--relaxng", str(schema), str(cib)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        report.errors.append(f"xmllint --relaxng {schema.name}: {proc.stderr.strip()}")


def _verify(p3: Pacemaker3, cib: Path, tmp: Path, report: Report) -> None:
    online = tmp / "pcmk3-online.xml"
    nodes = [n.get("uname", "") for n in ET.parse(cib).getroot().iter("node")]
    args = [a for n in nodes for a in ("-u", n)]
    sim = p3.run("crm_simulate", "-x", str(cib), *args, "-O", str(online))
    if sim.returncode != 0:
        report.errors.append(f"crm_simulate {p3.version} rc={sim.returncode}: {sim.stderr.strip()}")
        return
    proc = p3.run("crm_verify", "-V", "-x", str(online))
    if proc.returncode != 0:
        report.errors.append(f"crm_verify {p3.version} rc={proc.returncode}: {proc.stderr.strip()}")


def _names(
    p3: Pacemaker3, where: str, names: list[str], kind: str, report: Report, clone: bool = False
) -> None:
    known = p3.options(kind)
    for name in names:
        opt = known.get(name)
        if opt is None and clone and p3.clone_option(name):
            continue
        if opt is None:
            report.errors.append(f"{where}: {name!r} is not a Pacemaker {p3.version} {kind} option")
        elif opt.deprecated:
            report.deprecated.append(f"{name} (use {opt.replaced_with})" if opt.replaced_with else name)


def _options(p3: Pacemaker3, cib: Path, report: Report) -> None:
    conf = ET.parse(cib).getroot().find("configuration")
    if conf is None:
        report.errors.append("no <configuration>")
        return
    for nvset in conf.iterfind("crm_config/cluster_property_set"):
        names = [nv.get("name", "") for nv in nvset.iter("nvpair")]
        _names(p3, f"cluster_property_set {nvset.get('id')}", names, "cluster", report)
    for meta in conf.iterfind("rsc_defaults/meta_attributes"):
        _names(p3, "rsc_defaults", [nv.get("name", "") for nv in meta.iter("nvpair")], "primitive", report)
    for rsc in conf.iter():
        if rsc.tag not in ("primitive", "group", "clone", "bundle"):
            continue
        for meta in rsc.findall("meta_attributes"):
            names = [nv.get("name", "") for nv in meta.iter("nvpair")]
            _names(p3, f"{rsc.tag} {rsc.get('id')} meta", names, "primitive", report, rsc.tag == "clone")
        if rsc.get("class") == "stonith":
            # the other parameters are the agent's own (checked against its meta-data elsewhere)
            names = [
                nv.get("name", "")
                for ia in rsc.findall("instance_attributes")
                for nv in ia.iter("nvpair")
                if nv.get("name", "").startswith("pcmk_")
            ]
            _names(p3, f"fence device {rsc.get('id')}", names, "fencing", report)


def validate(p3: Pacemaker3, cib: str, tmp: Path) -> Report:
    """Judge ``cib`` (as rendered, no status section) by Pacemaker 3: schema, crm_verify and
    option names. Pure except for files under ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "pcmk3-cib.xml"
    # A CIB built offline has no quorum; the simulated cluster would block every action.
    path.write_text(cib.replace("<cib ", '<cib have-quorum="1" ', 1))
    report = Report()
    _relaxng(p3, path, report)
    _options(p3, path, report)
    _verify(p3, path, tmp, report)
    return report


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        try:
            root = fetch()
        except (FetchError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"pacemaker3: {exc}", file=sys.stderr)
            return 1
        print(f"pacemaker3: {root} (Pacemaker {Pacemaker3(root).version})")
        return 0
    if argv[:1] == ["validate"] and len(argv) == 2:
        p3 = Pacemaker3(side_dir())
        with tempfile.TemporaryDirectory() as tmp:
            report = validate(p3, Path(argv[1]).read_text(), Path(tmp))
        for line in report.errors:
            print(f"error: {line}")
        for line in report.deprecated:
            print(f"deprecated: {line}")
        return 1 if report.errors else 0
    print("usage: pcmk3.py fetch | validate CIB.xml", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
