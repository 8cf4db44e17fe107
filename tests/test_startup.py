"""`hacloud --help` imports no cloud SDK and no SSH library."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("boto3", "botocore", "azure", "paramiko")


def test_help_imports_no_cloud_sdk() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from hacloud.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "for cmd in ('render', 'check', 'init', 'schema', 'profile'):\n"
        "    assert CliRunner().invoke(app, [cmd, '--help']).exit_code == 0\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.split()
    assert "hacloud.cli" in loaded  # the probe can see what was imported
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert not bad, bad


def test_loading_every_provider_imports_no_cloud_sdk() -> None:
    code = (
        "import sys\n"
        "from hacloud.provider import get_provider, provider_names\n"
        "for name in provider_names(): get_provider(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "hacloud_aws" in proc.stdout.split()
    assert not [m for m in proc.stdout.split() if m.split(".")[0] in FORBIDDEN]
