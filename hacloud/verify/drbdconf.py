"""Read DRBD resource files (``/etc/drbd.d/*.res``) back into their volumes (pure).

Contract: :func:`parse_resources` understands the subset of drbd.conf(5) syntax a resource
file uses, in DRBD 8.4 and 9 form, with and without ``volume`` sections (none means the
implicit volume 0, with ``device``/``meta-disk`` at resource or host level). ``hacloud check``
judges the rendered files with it, so the rules read what the nodes will read, not the
spec. It raises ``ValueError`` on unbalanced braces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r'"[^"]*"|[{};]|[^\s{};"]+')


@dataclass
class _Section:
    words: list[str]
    body: list[_Section | list[str]] = field(default_factory=list)

    def statements(self) -> dict[str, list[str]]:
        return {s[0]: s[1:] for s in self.body if isinstance(s, list) and s}

    def sections(self, keyword: str) -> list[_Section]:
        return [s for s in self.body if isinstance(s, _Section) and s.words[:1] == [keyword]]


@dataclass(frozen=True)
class Volume:
    number: int
    minor: int | None
    disk: str
    meta_disk: str


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # "ip:port"
    volumes: tuple[Volume, ...]


@dataclass(frozen=True)
class Resource:
    name: str
    hosts: tuple[Host, ...]

    @property
    def port(self) -> str:
        return self.hosts[0].address.rpartition(":")[2] if self.hosts else ""


def _tree(text: str) -> _Section:
    text = re.sub(r"(?m)#.*$", "", text)
    root = _Section([])
    stack = [root]
    words: list[str] = []
    for tok in _TOKEN.findall(text):
        if tok == "{":
            child = _Section(words)
            stack[-1].body.append(child)
            stack.append(child)
            words = []
        elif tok == "}":
            if len(stack) == 1:
                raise ValueError("unbalanced '}'")
            stack.pop()
            words = []
        elif tok == ";":
            stack[-1].body.append(words)
            words = []
        else:
            words.append(tok.strip('"'))
    if len(stack) != 1:
        raise ValueError("unbalanced '{'")
    return root


def _minor(device: list[str] | None) -> int | None:
    """``device /dev/drbd3;``, ``device /dev/drbd3 minor 3;`` or ``device minor 3;`` -> 3."""
    if not device:
        return None
    if "minor" in device[:-1]:
        value = device[device.index("minor") + 1]
        return int(value) if value.isdigit() else None
    m = re.fullmatch(r"/dev/drbd(\d+)", device[0])
    return int(m.group(1)) if m else None


def _volume(number: int, own: dict[str, list[str]], *outer: dict[str, list[str]]) -> Volume:
    """A volume's settings: its own, else inherited from the host, else the resource."""

    def get(key: str) -> list[str] | None:
        for scope in (own, *outer):
            if key in scope:
                return scope[key]
        return None

    return Volume(
        number,
        _minor(get("device")),
        " ".join(get("disk") or []),
        " ".join(get("meta-disk") or []),
    )


def parse_resources(text: str) -> list[Resource]:
    out = []
    for res in _tree(text).sections("resource"):
        top = res.statements()
        shared = {int(v.words[1]): v.statements() for v in res.sections("volume")}
        hosts = []
        for on in res.sections("on"):
            here = on.statements()
            own = {int(v.words[1]): v.statements() for v in on.sections("volume")}
            numbers = sorted(set(own) | set(shared)) or [0]
            vols = tuple(_volume(n, own.get(n, {}), shared.get(n, {}), here, top) for n in numbers)
            address = (here.get("address") or [""])[-1]
            hosts.append(Host(on.words[1] if len(on.words) > 1 else "", address, vols))
        out.append(Resource(res.words[1] if len(res.words) > 1 else "", tuple(hosts)))
    return out
