"""Platform profiles: tuning values as data, each with its source.

Contract: :func:`load_profile` returns an immutable :class:`Profile`; every profile defines
the same keys (``sysctl.*`` keys are free-form OS settings). A profile may carry variants per
OS family (``variants.<family>``: values where a vendor's guide for that OS differs, each
with its source); :meth:`Profile.for_os` applies one, :meth:`Profile.with_overrides` the spec's
overrides on top (overrides always win). :func:`override_problems` lists what is wrong with a
spec's overrides without raising, so the spec loader can report it with every other problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from types import MappingProxyType

import yaml

from hacloud.datafiles import templates_dir

PROFILE_NAMES = ("lab", "onprem", "aws", "azure")
# Values that left the profiles: an override of one says where the setting lives now.
MOVED = {
    "drbd.after_sb_1pri": (
        "split-brain recovery is a data-loss policy, chosen in the spec, not a profile tuning value",
        "drop the override; to discard the Secondary's writes after a split brain automatically, "
        "write `drbd: {split_brain_recovery: discard-secondary}`",
    ),
}
Scalar = int | float | bool | str


@dataclass(frozen=True)
class ProfileValue:
    value: Scalar
    source: str
    why: str = ""


@dataclass(frozen=True)
class Variant:
    """Values of a profile that differ on one OS family (``platform.os_family``)."""

    description: str
    values: Mapping[str, ProfileValue] = field(repr=False)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    values: Mapping[str, ProfileValue] = field(repr=False)
    variants: Mapping[str, Variant] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    #: the OS family whose variant is applied ("" = none)
    variant: str = ""

    @property
    def label(self) -> str:
        """``azure`` or, with a variant applied, ``azure (rhel)``."""
        return f"{self.name} ({self.variant})" if self.variant else self.name

    def for_os(self, family: str) -> Profile:
        """This profile with the variant for ``family`` applied, if it has one."""
        variant = self.variants.get(family)
        if variant is None or self.variant:
            return self
        merged = {**self.values, **variant.values}
        return replace(self, values=MappingProxyType(merged), variant=family)

    def get(self, key: str) -> Scalar:
        return self.values[key].value

    def num(self, key: str) -> int:
        value = self.values[key].value
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"profile {self.name}: {key} is not an integer: {value!r}")
        return value

    def text(self, key: str) -> str:
        return str(self.values[key].value)

    def flag(self, key: str) -> bool:
        value = self.values[key].value
        if not isinstance(value, bool):
            raise TypeError(f"profile {self.name}: {key} is not true/false: {value!r}")
        return value

    def sysctl(self) -> dict[str, str]:
        return {
            key.removeprefix("sysctl."): _sysctl_text(v.value)
            for key, v in sorted(self.values.items())
            if key.startswith("sysctl.")
        }

    def with_overrides(self, overrides: Mapping[str, Scalar]) -> Profile:
        """Apply validated overrides (see :func:`override_problems`); source says 'spec'."""
        if not overrides:
            return self
        merged = dict(self.values)
        for key, value in overrides.items():
            merged[key] = ProfileValue(value, "overridden in the spec")
        return replace(self, values=MappingProxyType(merged))


def _sysctl_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


@cache
def load_profile(name: str) -> Profile:
    if name not in PROFILE_NAMES:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(PROFILE_NAMES)}")
    path = templates_dir() / "profiles" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    values = _values(raw["values"])
    variants = {}
    for family, body in (raw.get("variants") or {}).items():
        unknown = set(body["values"]) - set(values)
        if unknown:  # a variant only changes values the profile defines
            raise KeyError(f"profile {name}: variant {family} names unknown values {sorted(unknown)}")
        variants[family] = Variant(body["description"], MappingProxyType(_values(body["values"])))
    return Profile(name, raw["description"], MappingProxyType(values), MappingProxyType(variants))


def _values(raw: Mapping[str, Mapping[str, Scalar]]) -> dict[str, ProfileValue]:
    return {
        key: ProfileValue(entry["value"], str(entry["source"]), str(entry.get("why", "")))
        for key, entry in raw.items()
    }


# ---------------------------------------------------------------- the grammar of every value


@dataclass(frozen=True)
class Grammar:
    """What one profile key accepts; ``check`` returns what is wrong (None: the value is fine).

    ``kind`` is ``int`` (``lo``..``hi``), ``bool``, ``enum`` (``choices``), ``size`` (a whole
    number with an optional k/M/G suffix whose value in ``unit_bytes`` units lies in
    ``lo``..``hi``) or ``version`` (``N.N[.N]``). ``source`` names where the limits come from.
    """

    kind: str
    lo: int = 0
    hi: int = 0
    choices: tuple[str, ...] = ()
    unit_bytes: int = 1
    source: str = ""

    def describe(self) -> str:
        if self.kind == "int":
            return f"a whole number from {self.lo} to {self.hi}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "enum":
            return f"one of: {', '.join(self.choices)}"
        if self.kind == "size":
            return f"a size such as 250k, 100M or 1G (at most {self.hi * self.unit_bytes // 1024}k)"
        return "a version such as 2.1.5"

    def check(self, value: object) -> str | None:
        return None if self._ok(value) else f"must be {self.describe()}, not {value!r}"

    def _ok(self, value: object) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool) and self.lo <= value <= self.hi
        if not isinstance(value, str):
            return False
        if self.kind == "enum":
            return value in self.choices
        if self.kind == "size":
            return self._size_ok(value)
        return re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){1,2}", value) is not None

    def _size_ok(self, text: str) -> bool:
        m = re.fullmatch(r"([0-9]{1,10})([kMG]?)", text)
        if not m:
            return False
        scale = {"": self.unit_bytes, "k": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]
        units = int(m.group(1)) * scale // self.unit_bytes
        return self.lo <= units <= self.hi


def _int(lo: int, hi: int, source: str) -> Grammar:
    return Grammar("int", lo, hi, source=source)


def _enum(*choices: str, source: str) -> Grammar:
    return Grammar("enum", choices=choices, source=source)


_DAY = 86400
_OPS = _int(1, _DAY, "Pacemaker op timeout/interval in seconds; at most a day")
_DRBD_OPTS = "drbdsetup(8) net-options/peer-device-options/disk-options (drbd-utils 9)"
_KIB = 1024
_SECTOR = 512

GRAMMAR: Mapping[str, Grammar] = MappingProxyType(
    {
        "platform.drbd": _enum("8.4", "9", source="DRBD generations hacloud renders"),
        "platform.pacemaker": Grammar("version", source="Pacemaker release numbers"),
        "platform.os_family": _enum("debian", "rhel", "suse", source="OS families hacloud deploys"),
        "corosync.token": _int(100, 600_000, "corosync.conf(5), milliseconds"),
        "corosync.consensus": _int(100, 720_000, "corosync.conf(5), milliseconds"),
        "corosync.token_retransmits_before_loss_const": _int(1, 100, "corosync.conf(5)"),
        "corosync.join": _int(10, 60_000, "corosync.conf(5), milliseconds"),
        "corosync.max_messages": _int(1, 1000, "corosync.conf(5)"),
        "corosync.links": _int(1, 2, "knet links hacloud gives a cloud node: link 0, plus link 1 or not"),
        "pacemaker.stonith_timeout": _int(1, _DAY, "Pacemaker cluster option, seconds"),
        "pacemaker.stonith_timeout_sbd": _int(1, _DAY, "Pacemaker cluster option, seconds"),
        "pacemaker.stonith_action": _enum("reboot", "off", source="Pacemaker stonith-action"),
        "pacemaker.priority_fencing_delay": _int(0, 3600, "Pacemaker cluster option, seconds"),
        "pacemaker.concurrent_fencing": Grammar("bool"),
        "pacemaker.resource_stickiness": _int(0, 1_000_000, "Pacemaker scores (INFINITY = 1000000)"),
        "pacemaker.migration_threshold": _int(0, 1_000_000, "Pacemaker scores (INFINITY = 1000000)"),
        "pacemaker.resource_priority": _int(0, 1_000_000, "Pacemaker scores (INFINITY = 1000000)"),
        "pacemaker.op_timeout": _OPS,
        "pacemaker.record_pending": Grammar("bool"),
        "fencing.pcmk_delay_max": _int(0, 3600, "Pacemaker fencing.rst, seconds"),
        "fencing.pcmk_delay_base": _int(0, 3600, "Pacemaker fencing.rst, seconds"),
        "fencing.power_timeout": _int(1, 3600, "fence-agents power_timeout, seconds"),
        "fencing.power_wait": _int(-1, 3600, "fence-agents power_wait, seconds (-1: the agent's own)"),
        "fencing.reboot_timeout": _int(1, _DAY, "Pacemaker pcmk_reboot_timeout, seconds"),
        "fencing.reboot_retries": _int(1, 100, "Pacemaker pcmk_reboot_retries"),
        "fencing.start_timeout": _OPS,
        "fencing.monitor_interval": _OPS,
        "fencing.monitor_timeout": _OPS,
        "fencing.pcmk_monitor_timeout": _int(0, _DAY, "Pacemaker pcmk_monitor_timeout, seconds (0: not set)"),
        "fencing.sbd_monitor_interval": _OPS,
        "fencing.sbd_monitor_timeout": _OPS,
        "sbd.watchdog_timeout": _int(1, 600, "sbd(8) -1 watchdog timeout, seconds"),
        "sbd.msgwait": _int(1, 3600, "sbd(8) -4 msgwait, seconds"),
        "drbd.ping_int": _int(1, 120, _DRBD_OPTS),
        "drbd.ping_timeout": _int(1, 300, _DRBD_OPTS),
        "drbd.timeout": _int(1, 600, _DRBD_OPTS),
        "drbd.connect_int": _int(1, 120, _DRBD_OPTS),
        "drbd.ko_count": _int(0, 200, _DRBD_OPTS),
        "drbd.socket_check_timeout": _int(0, 300, _DRBD_OPTS),
        "drbd.max_buffers": _int(32, 131072, _DRBD_OPTS),
        "drbd.on_io_error": _enum("pass_on", "call-local-io-error", "detach", source=_DRBD_OPTS),
        "drbd.after_sb_0pri": _enum(
            "disconnect",
            "discard-younger-primary",
            "discard-older-primary",
            "discard-zero-changes",
            "discard-least-changes",
            "discard-local",
            "discard-remote",
            source=_DRBD_OPTS,
        ),
        "drbd.after_sb_1pri": _enum(
            "disconnect",
            "consensus",
            "discard-secondary",
            "call-pri-lost-after-sb",
            "violently-as0p",
            source=_DRBD_OPTS,
        ),
        "drbd.after_sb_2pri": _enum(
            "disconnect", "call-pri-lost-after-sb", "violently-as0p", source=_DRBD_OPTS
        ),
        "drbd.c_plan_ahead": _int(0, 300, _DRBD_OPTS),
        "drbd.c_max_rate": Grammar("size", 0, 4_194_304, unit_bytes=_KIB, source=f"{_DRBD_OPTS}, KiB/s"),
        "drbd.c_min_rate": Grammar("size", 0, 4_194_304, unit_bytes=_KIB, source=f"{_DRBD_OPTS}, KiB/s"),
        "drbd.c_fill_target": Grammar(
            "size", 0, 1_048_576, unit_bytes=_SECTOR, source=f"{_DRBD_OPTS}, sectors"
        ),
        "ops.service.unit_margin": _int(0, 3600, "seconds added to a unit's own start/stop limit"),
        **{
            f"ops.{kind}.{name}": _OPS
            for kind, names in {
                "drbd": (
                    "start_timeout",
                    "stop_timeout",
                    "promote_timeout",
                    "demote_timeout",
                    "notify_timeout",
                    "monitor_promoted",
                    "monitor_unpromoted",
                    "monitor_timeout",
                ),
                "filesystem": ("start_timeout", "stop_timeout", "monitor_interval", "monitor_timeout"),
                "vip": ("start_timeout", "stop_timeout", "monitor_interval", "monitor_timeout"),
                "service": (
                    "start_timeout",
                    "stop_timeout",
                    "monitor_interval",
                    "monitor_timeout",
                    "unbounded_start_timeout",
                ),
            }.items()
            for name in names
        },
    }
)
# sysctl names: dotted words (net.ipv4.conf.eth0.rp_filter); values: numbers or words
# separated by single spaces (net.ipv4.tcp_rmem = 4096 87380 6291456). No '|', '%', quotes
# or newlines: a value is never a pipe (kernel.core_pattern) or a second line.
SYSCTL_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[A-Za-z0-9_-]+){1,8}")
SYSCTL_VALUE = re.compile(r"-?[A-Za-z0-9_.:,/+-]{1,64}( -?[A-Za-z0-9_.:,/+-]{1,64}){0,7}")


def grammar(key: str) -> Grammar | None:
    """The grammar of a profile key (None for ``sysctl.*``, which has its own)."""
    return GRAMMAR.get(key)


def _sysctl_problem(key: str, value: object) -> str | None:
    if not SYSCTL_NAME.fullmatch(key.removeprefix("sysctl.")):
        return "a sysctl override needs a dotted kernel parameter name"
    if isinstance(value, bool) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    if isinstance(value, str) and SYSCTL_VALUE.fullmatch(value):
        return None
    return f"a sysctl value must be a number or words of letters, digits and ._:,/+- (got {value!r})"


def override_problems(profile: Profile, overrides: Mapping[str, object]) -> list[tuple[str, str, str]]:
    """(key, message, remedy) for each override that names no value or breaks its grammar."""
    import difflib

    out: list[tuple[str, str, str]] = []
    for key, value in overrides.items():
        if key.startswith("sysctl."):
            problem = _sysctl_problem(key, value)
            if problem:
                out.append((key, problem, "write e.g. `sysctl.vm.swappiness: 10`"))
            continue
        if key in MOVED:
            out.append((key, *MOVED[key]))
            continue
        if key not in profile.values:
            close = difflib.get_close_matches(key, list(profile.values), n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            out.append(
                (
                    key,
                    f"profile {profile.name} has no value named {key}",
                    f"{hint}list the names with `hacloud profile {profile.name}`",
                )
            )
            continue
        rule = GRAMMAR.get(key)
        problem = rule.check(value) if rule else f"{key} cannot be overridden"
        if problem:
            current = profile.values[key].value
            out.append((key, problem, f"write e.g. `{key}: {_example(current)}`"))
    return out


def _example(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
