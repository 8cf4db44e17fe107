"""The package structure shows the data flow, and imports point one way (issue 17).

Every module of hacloud/ and providers/ is parsed with ``ast`` (nothing is imported), and:

- stages import only earlier stages or their own: spec -> provision -> render -> deploy ->
  verify -> ops -> cli; ``errors``, ``poll`` and ``datafiles`` are common to all and import
  nothing of hacloud's beyond each other. Imports under ``if TYPE_CHECKING:`` are annotations
  only (``from __future__ import annotations``: never executed), so they may name a later
  stage's types; every executed import, at module level or inside a function, obeys the order;
- no hacloud/ module imports a provider package (``hacloud_*``), even for types;
- only the CLI (hacloud/cli*, hacloud/__main__) imports the use-case layer ``hacloud.ops``;
- no module after the spec stage branches on a provider's kind (``x.provider.kind == ...``):
  capabilities and provider hooks say what a provider does;
- providers use only hacloud's public API: no ``_name`` imported from hacloud;
- no module over 500 lines, no function over 60 lines.

``KNOWN`` lists the violations that other work of issue 17 removes; an entry that no longer
occurs fails the test too, so the list only shrinks (delete the line it names).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("spec", "provision", "render", "deploy", "verify", "ops", "cli")
COMMON = ("errors", "poll", "datafiles")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

KNOWN: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    names: tuple[str, ...]  # names taken from it (``from m import a, b``); () for ``import m``
    line: int
    typing_only: bool  # under ``if TYPE_CHECKING:``


def module_name(path: Path, root: Path = REPO) -> str:
    """``hacloud/deploy/engine.py`` -> ``hacloud.deploy.engine`` (providers/ is a source root)."""
    rel = path.relative_to(root / "providers" if path.is_relative_to(root / "providers") else root)
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = REPO) -> list[Import]:
    """Every import in ``path``, at any depth, relative ones made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for inner in node.body:
                typing_lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(a.name, (), node.lineno, node.lineno in typing_lines) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = tuple(a.name for a in node.names)
            found.append(Import(base, names, node.lineno, node.lineno in typing_lines))
    return found


def stage_of(module: str) -> str | None:
    """The stage of a hacloud module ("common" for the shared ones, None outside hacloud)."""
    parts = module.split(".")
    if parts[0] != "hacloud":
        return None
    if len(parts) == 1:
        return "common"
    if parts[1] in COMMON:
        return "common"
    if parts[1] == "__main__":
        return "cli"
    return parts[1]


def core_files() -> list[Path]:
    return sorted((REPO / "hacloud").rglob("*.py"))


def provider_files() -> list[Path]:
    return sorted((REPO / "providers").rglob("*.py"))


def rel(path: Path, root: Path = REPO) -> str:
    return str(path.relative_to(root))


def stage_violations(files: list[Path], root: Path = REPO) -> set[str]:
    found = set()
    for path in files:
        mine = stage_of(module_name(path, root))
        where = rel(path, root)
        for imp in imports(path, root):
            theirs = stage_of(imp.module)
            if theirs is None or theirs == mine:
                continue
            if mine == "common":
                found.add(f"{where}: common module imports {imp.module}")
            elif theirs != "common" and not imp.typing_only:
                if theirs not in STAGES or mine not in STAGES:
                    found.add(f"{where}: {imp.module} is in no stage")
                elif STAGES.index(theirs) > STAGES.index(mine):
                    found.add(f"{where}: stage {mine} imports {imp.module} (stage {theirs})")
    return found


def import_rule_violations(files: list[Path], root: Path = REPO) -> set[str]:
    """hacloud_* from the core, hacloud.ops from outside the CLI, private names from providers."""
    found = set()
    for path in files:
        is_core = path.is_relative_to(root / "hacloud")
        name, where = module_name(path, root), rel(path, root)
        in_cli = is_core and stage_of(name) == "cli"
        for imp in imports(path, root):
            top = imp.module.split(".")[0]
            if is_core and top.startswith("hacloud_"):
                found.add(f"{where}: the core imports the provider package {imp.module}")
            touches_ops = imp.module == "hacloud.ops" or imp.module.startswith("hacloud.ops.")
            if touches_ops and not in_cli and not name.startswith("hacloud.ops"):
                found.add(f"{where}: only the CLI imports hacloud.ops, not {imp.module}")
            if not is_core and top == "hacloud":
                private = [p for p in imp.module.split(".") if p.startswith("_")]
                private += [n for n in imp.names if n.startswith("_")]
                if private:
                    found.add(f"{where}: imports the private {', '.join(private)} from {imp.module}")
    return found


def _is_provider_kind(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "kind"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "provider"
    )


def _names_a_kind(node: ast.expr) -> bool:
    """A kind written out: ``"lab"``, or a tuple/list/set of such words."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, ast.Tuple | ast.List | ast.Set) and all(_names_a_kind(e) for e in node.elts)


def kind_branches(files: list[Path], root: Path = REPO) -> set[str]:
    """``<...>.provider.kind`` compared with a kind written out (``== "lab"``, ``in ("lab",
    "onprem")``) outside the spec stage, which defines the kinds. Comparing it with another
    value (the user's ``--provider``, an inventory's provider) checks input, not behaviour."""
    found = set()
    for path in files:
        if stage_of(module_name(path, root)) in ("spec", "common"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(_is_provider_kind(x) for x in sides) and any(_names_a_kind(x) for x in sides):
                    found.add(f"{rel(path, root)} branches on the provider's kind (line {node.lineno})")
    return found


def size_violations(files: list[Path], root: Path = REPO) -> set[str]:
    found = set()
    for path in files:
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.add(f"{rel(path, root)} is over {MAX_MODULE_LINES} lines ({len(text.splitlines())})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.add(f"{rel(path, root)}:{node.name} is over {MAX_FUNCTION_LINES} lines ({length})")
    return found


def key(violation: str) -> str:
    """A violation without its line number or count, so a KNOWN entry survives edits that move
    or shrink the code without fixing it."""
    return re.sub(r" \((?:line )?\d+\)$", "", violation)


def check(found: set[str], rule: str) -> None:
    known = {k for k in KNOWN if rule_of(k) == rule}
    new = sorted(v for v in found if key(v) not in known)
    gone = sorted(known - {key(v) for v in found})
    assert not new, "\n".join(["new violations:", *new])
    assert not gone, "\n".join(["fixed, so delete from KNOWN in tests/test_structure.py:", *gone])


def rule_of(entry: str) -> str:
    if re.search(r" is over \d+ lines", entry):
        return "size"
    if "branches on the provider's kind" in entry:
        return "kind"
    if ": stage " in entry or "is in no stage" in entry or "common module imports" in entry:
        return "stages"
    return "imports"


def test_stages_import_only_earlier_stages() -> None:
    check(stage_violations(core_files()), "stages")


def test_the_core_imports_no_provider_only_the_cli_imports_ops_providers_use_public_api() -> None:
    check(import_rule_violations(core_files() + provider_files()), "imports")


def test_no_core_module_branches_on_a_provider_kind() -> None:
    check(kind_branches(core_files()), "kind")


def test_no_module_over_500_lines_no_function_over_60() -> None:
    check(size_violations(core_files() + provider_files()), "size")


def test_the_rules_see_what_they_guard(tmp_path: Path) -> None:
    """Each rule finds a planted violation (a rule that can never fire would pass on anything)."""
    assert stage_of("hacloud.verify.invariants") == "verify" and stage_of("hacloud.errors") == "common"
    core = tmp_path / "hacloud" / "render" / "planted.py"
    core.parent.mkdir(parents=True)
    core.write_text(
        "from typing import TYPE_CHECKING\n"
        "import hacloud_lab\n"
        "from hacloud.ops.converge import converge\n"
        "from hacloud.deploy.remote import Connection\n"
        "if TYPE_CHECKING:\n"
        "    from hacloud.verify.invariants import Finding\n"
        "def f(ws):\n"
        "    from ..deploy import engine\n"
        "    return ws.spec.provider.kind == 'lab'\n"
    )
    where = "hacloud/render/planted.py"
    assert stage_violations([core], tmp_path) == {
        f"{where}: stage render imports hacloud.ops.converge (stage ops)",
        f"{where}: stage render imports hacloud.deploy.remote (stage deploy)",
        f"{where}: stage render imports hacloud.deploy (stage deploy)",  # relative, in a function
    }
    assert import_rule_violations([core], tmp_path) == {
        f"{where}: the core imports the provider package hacloud_lab",
        f"{where}: only the CLI imports hacloud.ops, not hacloud.ops.converge",
    }
    assert kind_branches([core], tmp_path) == {f"{where} branches on the provider's kind (line 9)"}
    plug_in = tmp_path / "providers" / "hacloud_lab" / "planted.py"
    plug_in.parent.mkdir(parents=True)
    plug_in.write_text("from hacloud.deploy.session import _private\nfrom hacloud.ops._x import y\n")
    where = "providers/hacloud_lab/planted.py"
    assert import_rule_violations([plug_in], tmp_path) == {
        f"{where}: imports the private _private from hacloud.deploy.session",
        f"{where}: imports the private _x from hacloud.ops._x",
        f"{where}: only the CLI imports hacloud.ops, not hacloud.ops._x",
    }
    big = tmp_path / "hacloud" / "ops" / "big.py"
    big.parent.mkdir(parents=True)
    big.write_text("def f():\n" + "    x = 1\n" * 60 + "\n" * 440)
    assert size_violations([big], tmp_path) == {
        "hacloud/ops/big.py is over 500 lines (501)",
        "hacloud/ops/big.py:f is over 60 lines (61)",
    }
    common = tmp_path / "hacloud" / "poll.py"
    common.write_text("from hacloud.errors import HacloudError\nfrom hacloud.spec.model import Spec\n")
    assert stage_violations([common], tmp_path) == {
        "hacloud/poll.py: common module imports hacloud.spec.model"
    }
