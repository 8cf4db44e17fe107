"""The modules against the real providers' schemas, release by release.

The stand-in providers (tests/tfstandin) declare what the vendored docs of each pinned
release list (tests/data/terraform-providers, byte for byte from hashicorp's repositories), so
the real Terraform binary rejects what that release would reject. Independent facts used
here: the azurerm 5.0 upgrade guide (``enable_floating_ip`` removed from ``azurerm_lb_rule``
in favour of ``floating_ip_enabled``), Terraform's own version selection (`terraform init`
takes the newest release the constraints allow) and the raw bullet lists of the docs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "tfstandin"))

import tfdocs  # noqa: E402
import tftools  # noqa: E402

pytestmark = pytest.mark.skipif(
    tftools.terraform() is None, reason="no terraform binary (.ci/run installs it)"
)

EXAMPLES = {"aws": "aws", "azurerm": "azure"}
RELEASES = [(p, v) for p in ("aws", "azurerm") for v in tftools.releases(p)]


def terraform(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tftools.terraform()), *args, "-no-color"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_terraform(tmp: Path) -> Path:
    """terraform/ (modules and examples) in ``tmp``, so the examples' ../../modules resolve."""
    target = tmp / "terraform"
    shutil.copytree(REPO / "terraform", target, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    return target


def validate(tmp: Path, provider: str, release: str) -> subprocess.CompletedProcess[str]:
    """init + validate the example of ``provider`` (and so its module) against ``release``."""
    env = tftools.setup_mirror(tmp / "mirror", {provider: [release]})
    example = tmp / "terraform" / "examples" / EXAMPLES[provider]
    init = terraform(example, env, "init", "-input=false", "-backend=false")
    assert init.returncode == 0, init.stdout + init.stderr
    return terraform(example, env, "validate")


@pytest.mark.parametrize(("provider", "release"), RELEASES, ids=[f"{p}-{v}" for p, v in RELEASES])
def test_module_and_example_validate_against_each_pinned_release(
    provider: str, release: str, tmp_path: Path
) -> None:
    copy_terraform(tmp_path)
    proc = validate(tmp_path, provider, release)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("provider", ["aws", "azurerm"])
def test_init_never_picks_an_untested_major(provider: str, tmp_path: Path) -> None:
    """A mirror (like the registry) holding the next major: the pins keep init on a tested one."""
    tested = tftools.releases(provider)
    untested = f"{int(tested[-1].split('.')[0]) + 1}.0.0"
    env = tftools.setup_mirror(tmp_path / "mirror", {provider: [*tested, untested]})
    for where in (f"examples/{EXAMPLES[provider]}", f"modules/{EXAMPLES[provider]}-ha-pair"):
        work = copy_terraform(tmp_path / where.replace("/", "-")) / where
        init = terraform(work, env, "init", "-input=false", "-backend=false")
        assert init.returncode == 0, init.stdout + init.stderr
        lock = (work / ".terraform.lock.hcl").read_text()
        picked = re.search(
            rf'provider "registry.terraform.io/hashicorp/{provider}" {{\s*version\s*=\s*"([^"]+)"', lock
        )
        assert picked and picked.group(1) == tested[-1], (where, lock)


@pytest.mark.parametrize(
    ("provider", "file", "right", "wrong", "message"),
    [
        # the bug of issue 15 item 22: azurerm >= 5.0 has no enable_floating_ip
        (
            "azurerm",
            "modules/azure-ha-pair/main.tf",
            "floating_ip_enabled            = true",
            "enable_floating_ip             = true",
            'An argument named "enable_floating_ip" is not expected here.',
        ),
        (
            "aws",
            "modules/aws-ha-pair/main.tf",
            'http_tokens   = "required"',
            'http_tokenz   = "required"',
            'An argument named "http_tokenz" is not expected here.',
        ),
        (
            "aws",
            "modules/aws-ha-pair/main.tf",
            "  metadata_options {",
            "  metadata_option {",
            'Blocks of type "metadata_option" are not expected here.',
        ),
        (
            "azurerm",
            "modules/azure-ha-pair/main.tf",
            "  location            = var.location\n  resource_group_name = var.resource_group_name\n  sku ",
            "  resource_group_name = var.resource_group_name\n  sku ",
            'The argument "location" is required, but no definition was found.',
        ),
        (
            "azurerm",
            "examples/azure/main.tf",
            "  features {}",
            "  features {}\n  skip_provider_registration = true",
            'An argument named "skip_provider_registration" is not expected here.',
        ),
    ],
    ids=["removed-argument", "nested-argument", "block", "required-argument", "provider-argument"],
)
def test_what_the_release_lacks_fails_as_with_the_real_provider(
    provider: str, file: str, right: str, wrong: str, message: str, tmp_path: Path
) -> None:
    path = copy_terraform(tmp_path) / file
    text = path.read_text()
    assert text.count(right) == 1, right
    path.write_text(text.replace(right, wrong))
    newest = tftools.releases(provider)[-1]
    proc = validate(tmp_path, provider, newest)
    assert proc.returncode != 0 and message in proc.stderr.replace("\n", " ").replace("  ", " "), proc.stderr


def test_lb_rule_docs_follow_the_5_0_upgrade_guide() -> None:
    """What the azurerm 5.0 upgrade guide says of azurerm_lb_rule, read from the vendored docs."""
    old, new = (
        tfdocs.resource("azurerm", v, "azurerm_lb_rule").arguments for v in tftools.releases("azurerm")
    )
    assert "floating_ip_enabled" in new and "enable_floating_ip" not in new
    assert "floating_ip_enabled" in old  # since 4.42.0: the module's lower bound


@pytest.mark.parametrize(("provider", "release"), RELEASES, ids=[f"{p}-{v}" for p, v in RELEASES])
def test_the_parser_places_every_documented_name(provider: str, release: str) -> None:
    """Every ``* `name` - (Required|Optional)`` bullet of an Argument(s) Reference section ends
    up in the stand-in's schema, top-level or in a block: none is silently dropped."""
    root = tfdocs.DOCS / provider / release
    for doc in sorted(root.glob("[rd]/*.html.markdown")):
        text = doc.read_text(encoding="utf-8")
        section = re.search(r"^## Arguments? Reference\n(.*?)(?=^## )", text, re.M | re.S)
        assert section, doc
        raw = set(re.findall(r"^\* `([a-z0-9_]+)`\s*-?\s*\((?:Required|Optional)", section.group(1), re.M))
        parsed = tfdocs.parse(text)
        placed = set(parsed.arguments) | {n for names in parsed.blocks.values() for n in names}
        assert raw <= placed, (doc.relative_to(tfdocs.DOCS), sorted(raw - placed))
