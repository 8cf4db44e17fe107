"""`hacloud --help` imports no cloud SDK and no SSH library."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("boto3", "botocore", "azure", "paramiko")


def modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return every module it left imported."""
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_help_imports_no_cloud_sdk() -> None:
    loaded = modules_after(
        "from typer.testing import CliRunner\n"
        "from hacloud.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "for cmd in ('render', 'check', 'init', 'schema', 'profile'):\n"
        "    assert CliRunner().invoke(app, [cmd, '--help']).exit_code == 0\n"
    )
    assert "hacloud.cli" in loaded  # the probe can see what was imported
    assert not [m for m in loaded if m.split(".")[0] in FORBIDDEN]


def test_loading_every_provider_imports_no_cloud_sdk() -> None:
    loaded = modules_after(
        "from hacloud.provision.provider import get_provider, provider_names\n"
        "for name in provider_names(): get_provider(name)\n"
    )
    assert "hacloud_aws" in loaded
    assert not [m for m in loaded if m.split(".")[0] in FORBIDDEN]


def test_the_plugin_command_groups_load_without_their_providers() -> None:
    """`hacloud lab --help` comes from the lab plug-in's command group (entry point group
    hacloud.commands), which loads without the lab provider, the spec models or any other
    provider: the CLI asks plug-ins for their commands without loading them."""
    loaded = modules_after(
        "from typer.testing import CliRunner\n"
        "from hacloud.cli import app\n"
        "result = CliRunner().invoke(app, ['lab', '--help'])\n"
        "assert result.exit_code == 0 and 'power' in result.output, result.output\n"
    )
    assert "hacloud_lab.cli" in loaded
    providers = [m for m in loaded if m.split(".")[0].startswith("hacloud_") and m != "hacloud_lab.cli"]
    assert providers == ["hacloud_lab"], providers  # the package itself, not hacloud_lab.lab
    assert "hacloud.spec.model" not in loaded


def test_a_core_command_does_not_load_the_plugin_command_groups() -> None:
    """The plug-ins' groups are looked up only for help, completion or a command the core lacks."""
    loaded = modules_after(
        "from typer.testing import CliRunner\n"
        "from hacloud.cli import app\n"
        "result = CliRunner().invoke(app, ['up', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
    )
    assert "hacloud.cli" in loaded
    assert not [m for m in loaded if m.startswith("hacloud_")]
