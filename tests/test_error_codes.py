"""Runtime errors carry stable codes: every raise site has one, in its stage's range, documented.

The rules are read from the source with ``ast`` (an independent reading of what the code raises),
and the CLI is run as a user runs it to see the code reach the `fix:` line and ``--json``.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hacloud import errors

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO.glob("hacloud/**/*.py"), *REPO.glob("providers/**/*.py")])
CODE = re.compile(r"HAC[2-7]\d\d")
# stage ranges (hacloud/errors.py's docstring): the top-level package of a module -> first digit
RANGES = {
    "hacloud/spec": "2",
    "hacloud/render": "2",
    "hacloud/verify/invariants": "2",
    "hacloud/verify/drbdconf": "2",
    "hacloud/provision": "3",
    "hacloud/ops": "3",
    "hacloud/cli": "3",
    "hacloud/deploy": "4",
    "hacloud/verify": "5",
    "providers/hacloud_lab": "6",
    "providers/hacloud_onprem": "6",
    "providers/hacloud_aws": "6",
    "providers/hacloud_azure": "6",
    "providers/hacloud_aws/box": "67",  # the AWS box began in 69x, goes on in 7xx
}


def _class_code(node: ast.ClassDef) -> str | None:
    """The ``code = "HACnnn"`` a class body sets, if any."""
    for stmt in node.body:
        if (
            isinstance(stmt, ast.Assign)
            and [getattr(t, "id", None) for t in stmt.targets] == ["code"]
            and isinstance(stmt.value, ast.Constant)
        ):
            return str(stmt.value.value)
    return None


#: error classes that carry their own code (one failure each): a raise of one needs no code=
OWN_CODE: dict[str, str] = {}


def _error_classes() -> set[str]:
    """Names of every HacloudError subclass defined anywhere in hacloud/ and providers/."""
    names = {"HacloudError"}
    bases: dict[str, list[str]] = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [
                    b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
                ]
                if (code := _class_code(node)) and code != errors.HacloudError.code:
                    OWN_CODE[node.name] = code
    grew = True
    while grew:
        grew = False
        for name, parents in bases.items():
            if name not in names and any(p in names for p in parents):
                names.add(name)
                grew = True
    return names


def _raises(path: Path, classes: set[str]) -> list[tuple[int, str, str | None]]:
    """(line, class, code) for each HacloudError (subclass) constructed in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name not in classes or name == "SpecError":  # SpecError's problems carry their paths
            continue
        given = next((k.value for k in node.keywords if k.arg == "code"), None)
        if isinstance(given, ast.Constant) and isinstance(given.value, str):
            code: str | None = given.value
        elif given is not None:
            code = "passed-through"  # code=exc.code: a re-raise keeps its cause's code
        else:
            code = OWN_CODE.get(name)
        found.append((node.lineno, name, code))
    return found


def _stage_digit(path: Path) -> str:
    rel = str(path.relative_to(REPO))
    return max(((k, v) for k, v in RANGES.items() if rel.startswith(k)), key=lambda kv: len(kv[0]))[1]


def test_every_raise_site_has_a_code_in_its_stage_range() -> None:
    classes = _error_classes()
    missing, misplaced = [], []
    for path in SOURCES:
        if path.name == "errors.py" and path.parent.name == "hacloud":
            continue
        rel = path.relative_to(REPO)
        for line, name, code in _raises(path, classes):
            if code is None:
                missing.append(f"{rel}:{line} {name}(...) has no code=")
            elif code != "passed-through" and (not CODE.fullmatch(code) or code[3] not in _stage_digit(path)):
                misplaced.append(f"{rel}:{line} {code} is outside HAC{_stage_digit(path)}xx")
    assert not missing, "\n".join(missing)
    assert not misplaced, "\n".join(misplaced)


def test_a_code_means_one_failure() -> None:
    """Two raise sites may share a code only for the same failure (same message text), or when
    the code is an error class's own (one kind of failure, each message naming its field: a
    spec problem, a refused box control request)."""
    _error_classes()  # fills OWN_CODE
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import errors_doc
    finally:
        sys.path.pop(0)
    by_code: dict[str, set[str]] = {}
    for row in errors_doc.all_rows():
        by_code.setdefault(row.code, set()).add(row.message)
    shared = {code: sorted(m) for code, m in by_code.items() if len(m) > 1 and code not in OWN_CODE.values()}
    assert not shared, json.dumps(shared, indent=2)


def test_docs_list_every_code() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "errors_doc.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_code_reaches_the_user(tmp_path: Path) -> None:
    """A missing spec file: the code is printed with the fix and is the `code` in --json."""
    hacloud = [sys.executable, "-m", "hacloud"]
    text = subprocess.run(
        [*hacloud, "check", "-f", str(tmp_path / "none.yaml")], capture_output=True, text=True
    )
    assert text.returncode != 0
    shown = re.findall(r"\[(HAC\d{3})\]", text.stderr)
    assert shown and CODE.fullmatch(shown[0]), text.stderr
    as_json = subprocess.run(
        [*hacloud, "check", "--json", "-f", str(tmp_path / "none.yaml")], capture_output=True, text=True
    )
    assert json.loads(as_json.stdout)[0]["code"] == shown[0]


@pytest.mark.parametrize("cls", [errors.SpecError, errors.UsageError, errors.ProviderUnavailable])
def test_error_classes_have_their_own_code(cls: type[errors.HacloudError]) -> None:
    assert cls.code != errors.HacloudError.code
    assert CODE.fullmatch(cls.code)
