"""DRBD data safety (issue 15 items 1, 2, 14, 20): the fence-peer handler outlasts the fence
path, split brains wait for the operator, verify-alg is set, DRBD rides out what corosync does.

The handler arguments are judged by LINBIT's own scripts (their argument parser, run the way
drbdadm runs a handler) after ``drbdadm dump`` has read the rendered file; the bounds are
computed here from the profile values, not by the code under test.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import PROFILES, need, onprem_doc, render_doc, spec_of
from tools import DRBDADM84, run, write_files

from hacloud.provision.provider import get_provider
from hacloud.render import Bundle, effective_profile
from hacloud.spec.profiles import load_profile, override_problems
from hacloud.verify.invariants import Finding, run_checks

# the fencing each profile is made for (onprem: both BMC and SBD)
CASES = [
    ("lab", "fence_ipmilan"),
    ("onprem", "fence_ipmilan"),
    ("onprem", "sbd"),
    ("aws", "fence_aws"),
    ("azure", "fence_azure_arm"),
    ("azure", "sbd"),
]
SCRIPTS = {"8.4": "/usr/lib/drbd/crm-fence-peer.sh", "9": "/usr/lib/drbd/crm-fence-peer.9.sh"}


def _doc(profile: str, fencing: str, drbd: str = "9") -> dict[str, Any]:
    doc = onprem_doc(fencing=fencing, profile=profile)
    doc["targets"] = {"drbd": drbd}
    return doc


def _conf(bundle: Bundle, node: str, root: Path) -> Path:
    base = write_files(bundle, node, root)
    conf = base / "drbd.conf"
    d = base / "etc" / "drbd.d"
    conf.write_text(f'include "{d}/global_common.conf";\ninclude "{d}/*.res";\n')
    return conf


def _dumped_handler(conf: Path, drbd: str) -> str:
    """The fence-peer command as drbdadm itself reads it from the rendered files."""
    drbdadm = DRBDADM84 if drbd == "8.4" else "drbdadm"
    dump = run([drbdadm, "-c", str(conf), "dump", "all"]).stdout
    # drbdadm prints the value quoted only when it contains blanks
    m = re.search(r'^\s*fence-peer\s+"?([^";]+)"?;', dump, re.MULTILINE)
    assert m, dump
    return m.group(1)


def _script_parse(handler: str) -> tuple[dict[str, int], str]:
    """Run the handler the way drbdadm runs it (``/bin/sh -c``), with bash tracing on and no
    DRBD_RESOURCE: LINBIT's script parses its arguments, applies its defaults (traced as
    ``== timeout == N``) and exits 1 at its environment check, before touching anything."""
    proc = subprocess.run(
        ["/bin/sh", "-c", handler],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SHELLOPTS": "xtrace"},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1 and "DRBD_RESOURCE not found" in proc.stderr, proc.stderr[-2000:]
    values = {
        m.group(1): int(m.group(2)) for m in re.finditer(r"== (timeout|dc_timeout)\s+== (\d+)'", proc.stderr)
    }
    return values, proc.stderr


def _lower_bound(profile: str, fencing: str) -> float:
    """The issue's fence path, from the profile values: token + consensus + priority-fencing-delay
    + the device delays + the fence action time (the larger of fencing-timeout and the device's
    own timeout for the configured action)."""
    p = load_profile(profile)
    if fencing == "sbd":
        # an SBD-only cluster fences with SBD's timing: fencing-timeout and the device's own
        # action timeout are both the SBD timeout (issue 15 item 11)
        stonith = action_timeout = p.num("pacemaker.stonith_timeout_sbd")
    else:
        stonith = p.num("pacemaker.stonith_timeout")
        # rendered as pcmk_<action>_timeout for the action in force (issue 15 item 9)
        action_timeout = p.num("fencing.reboot_timeout")
    return (
        (p.num("corosync.token") + p.num("corosync.consensus")) / 1000
        + p.num("pacemaker.priority_fencing_delay")
        + p.num("fencing.pcmk_delay_base")
        + p.num("fencing.pcmk_delay_max")
        + max(stonith, action_timeout)
    )


@pytest.mark.tools
@pytest.mark.parametrize("drbd", ["8.4", "9"])
@pytest.mark.parametrize(("profile", "fencing"), CASES)
def test_fence_peer_timeout_covers_the_fence_path(
    profile: str, fencing: str, drbd: str, tmp_path: Path
) -> None:
    need("drbdadm", DRBDADM84, SCRIPTS[drbd])
    _, bundle = render_doc(_doc(profile, fencing, drbd))
    handler = _dumped_handler(_conf(bundle, "node1", tmp_path), drbd)
    assert shlex.split(handler)[0] == SCRIPTS[drbd]
    parsed, trace = _script_parse(handler)
    assert "ignoring" not in trace  # every argument is one the script knows
    bound = _lower_bound(profile, fencing)
    assert parsed["timeout"] >= bound, f"{handler}: --timeout {parsed['timeout']} < fence path {bound}"
    assert parsed["dc_timeout"] > parsed["timeout"]


def _findings(bundle: Bundle, doc: dict[str, Any]) -> dict[str, Finding]:
    spec = spec_of(doc)
    inventory = get_provider(spec.provider.kind).planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    return {f.code: f for f in run_checks(spec, inventory, profile, bundle)}


def _edit_global(bundle: Bundle, edit: Any) -> Bundle:
    files = {}
    for node, node_files in bundle.files.items():
        files[node] = tuple(
            dataclasses.replace(f, content=edit(f.content.decode()).encode())
            if f.path.endswith("global_common.conf")
            else f
            for f in node_files
        )
    return dataclasses.replace(bundle, files=files)


def _no_handler_args(text: str) -> str:
    # what hacloud rendered before: the script's defaults (--timeout 90, --dc-timeout 20)
    return re.sub(r'(fence-peer "[^" ]+)[^"]*"', r'\1"', text)


@pytest.mark.parametrize(("profile", "fencing"), CASES)
def test_hac080_hac081_fire_on_a_bad_handler_only(profile: str, fencing: str) -> None:
    doc = _doc(profile, fencing)
    _, bundle = render_doc(doc)
    good = _findings(bundle, doc)
    assert good["HAC080"].severity == "ok" and good["HAC081"].severity == "ok"

    old = _findings(_edit_global(bundle, _no_handler_args), doc)
    # the script's default 90 s is below every profile's fence path (lab: 2.2 + 3 + 90)
    assert old["HAC080"].severity == "error", old["HAC080"]
    assert "--timeout" in old["HAC080"].remedy
    assert old["HAC081"].severity == "error"  # the defaults break LINBIT's dc-timeout > timeout too
    swapped = _findings(_edit_global(bundle, lambda t: re.sub(r"--dc-timeout \d+", "--dc-timeout 5", t)), doc)
    assert swapped["HAC081"].severity == "error"
    assert swapped["HAC080"].severity == "ok"


# ---------------------------------------------------------------- item 20: DRBD vs corosync


@pytest.mark.parametrize("profile", PROFILES)
def test_drbd_rides_out_what_corosync_rides_out(profile: str) -> None:
    """Every profile: a peer pause shorter than the corosync token must not cost a DRBD
    disconnect (ping-timeout and ko-count x timeout both >= token)."""
    p = load_profile(profile)
    token = p.num("corosync.token") / 1000
    assert p.num("drbd.ping_timeout") / 10 >= token
    assert p.num("drbd.ko_count") * p.num("drbd.timeout") / 10 >= token
    for key in ("drbd.ping_timeout", "drbd.socket_check_timeout"):
        assert p.values[key].source and "DRBD-opts" in p.values[key].source
    doc = onprem_doc(profile=profile)
    _, bundle = render_doc(doc)
    found = _findings(bundle, doc)
    assert found["HAC083"].severity == "ok"
    assert "HAC084" not in found


@pytest.mark.parametrize("profile", ["aws", "azure"])
def test_hac083_fires_when_drbd_drops_a_paused_peer_first(profile: str) -> None:
    doc = onprem_doc(profile=profile)
    doc["overrides"] = {"drbd.ping_timeout": 5}  # DRBD's default, what the profiles had
    _, bundle = render_doc(doc)
    found = _findings(bundle, doc)
    assert found["HAC083"].severity == "warning"
    assert "drbd.ping_timeout: 300" in found["HAC083"].remedy

    doc["overrides"] = {"drbd.ko_count": 2}  # 2 x 6 s < 30 s
    _, bundle = render_doc(doc)
    assert "drbd.ko_count: 5" in _findings(bundle, doc)["HAC083"].remedy

    doc["overrides"] = {"corosync.token": 40000, "corosync.consensus": 48000}
    _, bundle = render_doc(doc)
    found = _findings(bundle, doc)
    assert found["HAC083"].severity == "warning" and "corosync.token to 30000" in found["HAC083"].remedy

    doc["overrides"] = {"drbd.socket_check_timeout": 0}
    _, bundle = render_doc(doc)
    assert _findings(bundle, doc)["HAC084"].severity == "warning"


@pytest.mark.tools
def test_ping_timeout_300_is_drbds_maximum(tmp_path: Path) -> None:
    """The cloud profiles use DRBD's largest ping-timeout: drbdadm itself refuses one more, and
    so does the override grammar, before anything is rendered."""
    from hacloud.errors import SpecError
    from hacloud.spec.profiles import GRAMMAR

    need("drbdadm")
    doc = _doc("aws", "fence_aws")
    _, bundle = render_doc(doc)
    conf = _conf(bundle, "node1", tmp_path / "ok")
    run(["drbdadm", "-c", str(conf), "dump", "all"])
    common = conf.parent / "etc" / "drbd.d" / "global_common.conf"
    assert "ping-timeout 300;" in common.read_text()
    common.write_text(common.read_text().replace("ping-timeout 300;", "ping-timeout 301;"))
    proc = run(["drbdadm", "-c", str(conf), "dump", "all"], check=False)
    assert proc.returncode != 0 and "ping-timeout" in proc.stderr
    rule = GRAMMAR["drbd.ping_timeout"]
    assert rule.check(300) is None and rule.check(301) is not None  # the grammar's bound is drbdadm's
    doc["overrides"] = {"drbd.ping_timeout": 301}
    with pytest.raises(SpecError):
        render_doc(doc)


# ---------------------------------------------------------------- item 2: split-brain policy


@pytest.mark.tools
@pytest.mark.parametrize("drbd", ["8.4", "9"])
@pytest.mark.parametrize("profile", PROFILES)
def test_split_brain_waits_for_the_operator_unless_opted_in(profile: str, drbd: str, tmp_path: Path) -> None:
    need("drbdadm", DRBDADM84)
    drbdadm = DRBDADM84 if drbd == "8.4" else "drbdadm"
    doc = _doc(profile, "fence_ipmilan", drbd)
    _, bundle = render_doc(doc)
    dump = run([drbdadm, "-c", str(_conf(bundle, "node1", tmp_path / "manual")), "dump", "all"]).stdout
    assert re.search(r"after-sb-1pri\s+disconnect;", dump)
    assert _findings(bundle, doc)["HAC082"].severity == "ok"

    doc["drbd"] = {"split_brain_recovery": "discard-secondary"}
    _, bundle = render_doc(doc)
    dump = run([drbdadm, "-c", str(_conf(bundle, "node1", tmp_path / "auto")), "dump", "all"]).stdout
    assert re.search(r"after-sb-1pri\s+discard-secondary;", dump)
    finding = _findings(bundle, doc)["HAC082"]
    assert finding.severity == "warning" and "opted in" in finding.message


def test_hac082_is_an_error_when_nobody_opted_in() -> None:
    """A hand-edited (or old) config that discards data without the spec saying so."""
    doc = onprem_doc()
    _, bundle = render_doc(doc)
    old = _edit_global(
        bundle, lambda t: t.replace("after-sb-1pri disconnect", "after-sb-1pri discard-secondary")
    )
    finding = _findings(old, doc)["HAC082"]
    assert finding.severity == "error" and "after-sb-1pri discard-secondary" in finding.message


def test_the_old_override_says_where_the_policy_lives_now() -> None:
    problems = override_problems(load_profile("aws"), {"drbd.after_sb_1pri": "discard-secondary"})
    assert problems and "split_brain_recovery" in problems[0][2]


def test_bad_split_brain_policy_is_refused_naming_the_field(tmp_path: Path) -> None:
    from hacloud.errors import SpecError

    doc = onprem_doc()
    doc["drbd"] = {"split_brain_recovery": "discard-younger-primary"}
    with pytest.raises(SpecError) as err:
        spec_of(doc)
    assert "drbd.split_brain_recovery" in err.value.report()


# ---------------------------------------------------------------- item 14: verify-alg


@pytest.mark.tools
@pytest.mark.parametrize("drbd", ["8.4", "9"])
def test_verify_alg_is_rendered_for_both_syntaxes(drbd: str, tmp_path: Path) -> None:
    need("drbdadm", DRBDADM84)
    drbdadm = DRBDADM84 if drbd == "8.4" else "drbdadm"
    doc = _doc("onprem", "fence_ipmilan", drbd)
    _, bundle = render_doc(doc)
    conf = _conf(bundle, "node1", tmp_path)
    dump = run([drbdadm, "-c", str(conf), "dump", "all"]).stdout
    net = re.search(r"\n\s*net\s*\{([^}]*)\}", dump)
    assert net and re.search(r"verify-alg\s+sha256;", net.group(1))
    assert _findings(bundle, doc)["HAC085"].severity == "ok"
    broken = _edit_global(bundle, lambda t: re.sub(r"\s*verify-alg[^;]*;", "", t))
    assert _findings(broken, doc)["HAC085"].severity == "warning"


# ---------------------------------------------------------------- the CLI, as a user runs it


def _hacloud(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hacloud", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_profile_shows_the_drbd_timers_and_their_sources(tmp_path: Path) -> None:
    out = _hacloud("profile", "aws", cwd=tmp_path).stdout
    line = next(x for x in out.splitlines() if x.strip().startswith("drbd.ping_timeout"))
    assert "300" in line and "DRBD-opts" in line and "token 30000" in line
    assert "why:" in out.split("drbd.ping_timeout", 1)[1].split("drbd.", 1)[0]
    assert "drbd.after_sb_1pri" not in out


def test_verify_refuses_an_unknown_volume_before_touching_anything(tmp_path: Path) -> None:
    assert _hacloud("init", "--provider", "lab", cwd=tmp_path).returncode == 0
    proc = _hacloud("verify", "-r", "nosuch", cwd=tmp_path)
    assert proc.returncode == 2 and "nosuch" in proc.stderr and "r0" in proc.stderr
    assert not (tmp_path / ".hacloud").exists()
