"""Write docs/errors.md: every runtime error code hacloud raises, read from the source.

    python scripts/errors_doc.py          # rewrite docs/errors.md
    python scripts/errors_doc.py --check  # exit 1 when docs/errors.md is out of date

Each ``raise SomeError(message, remedy, code="HACnnn")`` in hacloud/ and providers/ is one row:
the code, where it is raised, the message and the fix as written in the source (f-string fields
shown as ``{...}``). Class-level codes (``code = "HAC2xx"`` in an error class) are rows too.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "errors.md"
CODE = re.compile(r"HAC[2-7]\d\d")
STAGES = {
    "2": "spec and input",
    "3": "provision and use cases",
    "4": "deploy and node queries",
    "5": "verify and fence-test",
    "6": "provider plug-ins",
    "7": "emulated clouds",
}


@dataclass(frozen=True)
class Row:
    code: str
    where: str
    message: str
    remedy: str


def _text(node: ast.expr | None) -> str:
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{...}"
            for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    return "{...}"


def _is_code(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(CODE.fullmatch(node.value))


def _code_kw(call: ast.Call) -> str | None:
    """The code a call passes: ``code="HACnnn"``, or positionally to a helper that raises."""
    for node in [*(k.value for k in call.keywords if k.arg == "code"), *call.args]:
        if _is_code(node):
            return str(node.value)  # type: ignore[attr-defined]
    return None


def _name(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")


def _arg(call: ast.Call, index: int, name: str) -> str:
    if len(call.args) > index:
        return _text(call.args[index])
    return _text(next((k.value for k in call.keywords if k.arg == name), None))


def rows_of(path: Path) -> list[Row]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = str(path.relative_to(REPO))
    rows = []
    for node in ast.walk(tree):
        call = node  # every construction, raised or not (a Raise's exc is walked as a Call too)
        if isinstance(call, ast.Call) and (code := _code_kw(call)):
            if _name(call)[:1].isupper():  # an error class: (message, remedy)
                message, remedy = _arg(call, 0, "message"), _arg(call, 1, "remedy")
            else:  # a helper that builds the error from its parts
                message, remedy = " ".join(_text(a) for a in call.args if not _is_code(a)), ""
            rows.append(Row(code, where, message, remedy))
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and [getattr(t, "id", None) for t in stmt.targets] == ["code"]
                    and isinstance(stmt.value, ast.Constant)
                    and stmt.value.value != "HAC200"  # the unclassified default, never raised as such
                ):
                    doc = (ast.get_docstring(node) or "").split("\n\n")[0].replace("\n", " ")
                    rows.append(Row(str(stmt.value.value), f"{where} ({node.name})", doc, ""))
    return rows


def all_rows() -> list[Row]:
    files = sorted([*REPO.glob("hacloud/**/*.py"), *REPO.glob("providers/**/*.py")])
    return sorted((r for f in files for r in rows_of(f)), key=lambda r: (r.code, r.where))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    lines = [
        "# hacloud's error codes",
        "",
        "Every error hacloud stops with carries a stable code: printed after the `fix:` line and",
        "as `code` in `--json` output. Scripts and tests match the code, not the wording. This file",
        "is generated from the source by `python scripts/errors_doc.py` (a test keeps it current).",
        "",
    ]
    rows = all_rows()
    for digit, stage in STAGES.items():
        mine = [r for r in rows if r.code.startswith(f"HAC{digit}")]
        if not mine:
            continue
        lines += [f"## HAC{digit}xx — {stage}", "", "| code | raised in | error | fix |", "|---|---|---|---|"]
        lines += [f"| {r.code} | `{r.where}` | {_cell(r.message)} | {_cell(r.remedy)} |" for r in mine]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not DOC.exists() or DOC.read_text(encoding="utf-8") != text:
            print(
                f"{DOC.relative_to(REPO)} is out of date: run python scripts/errors_doc.py", file=sys.stderr
            )
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
