"""Every benchmark script still loads: benchmarks are not run in CI (they print numbers and
take minutes), so a test helper moved or renamed would otherwise break them unseen."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_benchmark_script_imports_and_has_main(script: str) -> None:
    spec = importlib.util.spec_from_file_location(f"bench_{script[:-3]}", BENCH / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)  # runs the imports, not main (guarded by __name__)
    finally:
        sys.path[:] = saved
    assert callable(getattr(module, "main", None)), f"bench/{script} has no main()"
