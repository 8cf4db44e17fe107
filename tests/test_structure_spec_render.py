"""The shape of the spec, render and invariant stages (issue 17; sizes: tests/test_structure.py):
every `hacloud check` rule run exactly once, severities from one closed set, and no spec model
named like a provider plug-in class."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import get_args

import pytest
import yaml
from conftest import REPO, render_doc

from hacloud.provision.provider import get_provider
from hacloud.render import effective_profile
from hacloud.spec.profiles import load_profile
from hacloud.verify import invariants
from hacloud.verify.invariants import RULES, Severity, run_checks


def _rule_functions() -> dict[str, object]:
    """Every function of the invariants package with a rule's signature, by qualified name."""
    found: dict[str, object] = {}
    for info in pkgutil.iter_modules(invariants.__path__):
        module = importlib.import_module(f"hacloud.verify.invariants.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            params = list(inspect.signature(fn).parameters)
            if fn.__module__ == module.__name__ and params == ["spec", "inv", "prof", "b", "cib"]:
                found[f"{module.__name__}.{name}"] = fn
    return found


def test_every_rule_runs_exactly_once() -> None:
    """A rule written in a topic module but left out of RULES would never run: `check` would
    stay silent about what it guards."""
    rules = _rule_functions()
    assert len(rules) >= 20, sorted(rules)  # the scan found the rules
    listed = [f"{r.__module__}.{r.__name__}" for r in RULES]
    assert sorted(listed) == sorted(set(listed)), "a rule is listed twice"
    assert sorted(listed) == sorted(rules), set(rules) ^ set(listed)


@pytest.mark.parametrize("example", ["lab", "onprem", "aws", "azure"])
def test_findings_have_a_known_severity_and_a_code(example: str) -> None:
    doc = yaml.safe_load((REPO / "templates/init" / f"{example}.yaml").read_text())
    spec, bundle = render_doc(doc)  # rendered with the provider's planned inventory
    inventory = get_provider(spec.provider.kind).planned_inventory(spec)
    profile = effective_profile(spec, load_profile(spec.profile_name))
    findings = run_checks(spec, inventory, profile, bundle)
    assert findings
    assert {f.severity for f in findings} <= set(get_args(Severity))
    assert all(f.code.startswith("HAC") and len(f.code) == 6 for f in findings)


def _classes(paths: list[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                out[node.name] = str(path.relative_to(REPO))
    return out


def test_no_spec_model_is_named_like_a_provider_plugin_class() -> None:
    spec = _classes(sorted((REPO / "hacloud/spec").glob("*.py")))
    plugins = _classes(sorted((REPO / "providers").rglob("*.py")))
    shared = {name: (spec[name], plugins[name]) for name in spec.keys() & plugins.keys()}
    assert not shared, f"one name, two concepts: {shared}"
