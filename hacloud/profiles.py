"""Platform profiles: tuning values as data, each with its source.

Contract: :func:`load_profile` returns an immutable :class:`Profile`; every profile defines
the same keys (``sysctl.*`` keys are free-form OS settings). A profile may carry variants per
OS family (``variants.<family>``: values where a vendor's guide for that OS differs, each
with its source); :meth:`Profile.for_os` applies one, :meth:`Profile.with_overrides` the spec's
overrides on top (overrides always win). :func:`override_problems` lists what is wrong with a
spec's overrides without raising, so the spec loader can report it with every other problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from types import MappingProxyType

import yaml

from hacloud.resources import templates_dir

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


def override_problems(profile: Profile, overrides: Mapping[str, object]) -> list[tuple[str, str, str]]:
    """(key, message, remedy) for each override that names no value or has the wrong type."""
    import difflib

    out: list[tuple[str, str, str]] = []
    for key, value in overrides.items():
        if key.startswith("sysctl."):
            if not isinstance(value, int | str) or len(key) <= len("sysctl."):
                out.append(
                    (
                        key,
                        "a sysctl override needs a name and a number or text",
                        "write e.g. `sysctl.vm.swappiness: 10`",
                    )
                )
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
        current = profile.values[key].value
        if type(value) is not type(current) and not (
            isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool)
        ):
            out.append(
                (
                    key,
                    f"must be {_type_name(current)} like the profile's {current!r}, not {_type_name(value)}",
                    f"write e.g. `{key}: {_example(current)}`",
                )
            )
        elif isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            out.append((key, "must not be negative", f"write e.g. `{key}: {_example(current)}`"))
        elif key == "corosync.links" and value not in (1, 2):
            out.append((key, "corosync takes one or two links here", "write `corosync.links: 2` (or 1)"))
    return out


def _type_name(value: object) -> str:
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text"}.get(
        type(value), type(value).__name__
    )


def _example(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
