"""Golden files for representative specs (regenerate: pytest tests/test_golden.py --update-golden).

Golden files catch unintended changes; correctness is proven by the real tools in the other
render tests, which also run on these same specs (the examples `hacloud init` writes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, grouped_doc, render_doc

GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = ["lab", "onprem", "aws", "azure", "onprem-grouped"]


def _outputs(name: str) -> dict[str, str]:
    example, _, variant = name.partition("-")
    doc = yaml.safe_load((REPO / "templates/init" / f"{example}.yaml").read_text())
    if variant == "grouped":  # data + WAL in one DRBD resource, logs in its own
        doc = grouped_doc(doc)
    names = [n["name"] for n in doc["nodes"]]
    _, bundle = render_doc(doc, passwords={n: "golden-password" for n in names})
    out = {"cib.xml": bundle.cib}
    for node, files in bundle.files.items():
        for f in files:
            if f.path.endswith("authkey") or f.path.endswith("hacloud-demo.py"):
                continue  # key bytes are the fixture's; the demo program is hacloud's own file
            out[f"{node}{f.path}"] = f.content.decode()
    return out


@pytest.mark.parametrize("name", EXAMPLES)
def test_golden(name: str, request: pytest.FixtureRequest) -> None:
    outputs = _outputs(name)
    root = GOLDEN / name
    if request.config.getoption("--update-golden"):
        for rel, text in outputs.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    expected = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}
    assert sorted(expected) == sorted(outputs), "files differ; regenerate with --update-golden"
    for rel, text in outputs.items():
        assert text == expected[rel], f"{name}/{rel} changed; review, then --update-golden"


def test_rendering_is_byte_stable() -> None:
    assert _outputs("azure") == _outputs("azure")
