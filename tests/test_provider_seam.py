"""The provider seam: roles, capabilities, register(), the fake provider, and the hooks the
core asks instead of branching on a provider's kind (purge, the login-failure wording, the
power-on hint, the lab's command group)."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest
import yaml
from conftest import REPO, spec_of
from contract import Target, run_contract
from fakeprovider import FakeProvider

from hacloud.errors import HacloudError, ProviderUnavailable
from hacloud.provision import provider as seam
from hacloud.provision.provider import (
    AccountChecks,
    BaseProvider,
    NodeSource,
    PowerControl,
    Role,
    TerraformAdapter,
    get_provider,
    provider_names,
    register,
    registered,
    unregister,
)
from hacloud.spec.workspace import Workspace

#: provider -> the test module that runs the shared contract (tests/contract.py) on it
CONTRACT_SUITES = {"aws": "test_aws.py", "azure": "test_azure.py", "fake": "test_provider_seam.py"}
#: providers the contract cannot judge, and why (a row here is a decision, reviewed like code)
NO_CONTRACT = {
    "onprem": "it makes nothing: ensure_nodes returns the hosts the spec names, teardown refuses "
    "(test_providers.py checks both)",
    "lab": "its ensure needs root and user-mode Linux guests; test_lab.py runs up, down and "
    "down --delete-volumes on the real lab and counts what is left",
}


def onprem_spec(tmp_path: Path) -> Workspace:
    doc = yaml.safe_load((REPO / "templates/init/onprem.yaml").read_text())
    for node in doc["nodes"]:
        node["ssh"] = {"user": "root"}
    for target in doc["fencing"][0]["nodes"].values():
        target["password_file"] = str(tmp_path / "bmc.secret")
    (tmp_path / "bmc.secret").write_text("secret\n")
    (tmp_path / "bmc.secret").chmod(0o600)
    spec_path = tmp_path / "hacloud.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    return Workspace(spec_of(doc), spec_path)


def runs_the_contract(module: str) -> bool:
    """Whether ``tests/<module>`` calls ``run_contract`` from a test function."""
    tree = ast.parse((REPO / "tests" / module).read_text())
    return any(
        isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "run_contract"
        for fn in tree.body
        if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_")
        for call in ast.walk(fn)
    )


def without_contract(names: list[str]) -> list[str]:
    """The providers among ``names`` no suite runs the contract on, and none is excused from it."""
    covered = {n for n, module in CONTRACT_SUITES.items() if runs_the_contract(module)}
    return [n for n in names if n not in NO_CONTRACT and n not in covered]


# ---------------------------------------------------------------- register() and the fake


def test_the_fake_provider_passes_the_shared_contract(tmp_path: Path) -> None:
    fake = FakeProvider()
    with registered("fake", fake):
        provider = get_provider("fake")
        assert provider is fake and "fake" in provider_names()
        run_contract(Target(provider, onprem_spec(tmp_path), fake.cloud.census, fake.cloud.leftovers))
    assert "fake" not in provider_names()


def test_every_registered_provider_has_a_contract_test() -> None:
    with registered("fake", FakeProvider()):
        assert without_contract(provider_names()) == []
    # the check itself can fail: a provider registered without a suite is named
    assert without_contract([*provider_names(), "newcloud"]) == ["newcloud"]


def test_register_refuses_a_second_provider_of_a_name_and_shadows_only_when_asked() -> None:
    fake = FakeProvider()
    with registered("fake", fake):
        with pytest.raises(HacloudError) as twice:
            register("fake", FakeProvider())
        assert twice.value.code == "HAC305"
    with pytest.raises(HacloudError) as installed:
        register("onprem", fake)
    assert installed.value.code == "HAC305"
    assert get_provider("onprem") is not fake
    with registered("onprem", fake, replace=True):
        assert get_provider("onprem") is fake
    assert get_provider("onprem") is not fake  # the installed one is back
    unregister("never-registered")  # forgetting what is not there is not an error


def test_register_refuses_what_is_not_a_provider() -> None:
    with pytest.raises(HacloudError) as info:
        register("half", object())  # type: ignore[arg-type]
    assert info.value.code == "HAC304"
    assert "half" not in provider_names()


def test_an_unknown_provider_names_the_installed_and_registered_ones() -> None:
    with registered("fake", FakeProvider()), pytest.raises(HacloudError) as info:
        get_provider("nosuch")
    assert info.value.code == "HAC303"
    assert "fake" in info.value.message and "lab" in info.value.message


def test_the_entry_point_lookup_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = seam.entry_points

    def counting(*, group: str) -> object:
        calls.append(group)
        return real(group=group)

    seam._entry_points.cache_clear()
    monkeypatch.setattr(seam, "entry_points", counting)
    try:
        for _ in range(3):
            provider_names()
            get_provider("onprem")
        assert calls == [seam.ENTRY_POINT_GROUP]
    finally:
        seam._entry_points.cache_clear()


# ---------------------------------------------------------------- roles and capabilities


@pytest.mark.parametrize("name", ["lab", "onprem", "aws", "azure"])
def test_every_installed_provider_plays_every_role_type(name: str) -> None:
    provider = get_provider(name)
    for role in (NodeSource, PowerControl, TerraformAdapter, AccountChecks):
        assert isinstance(provider, role), (name, role)


#: the method that shows a provider really plays a role (not BaseProvider's default)
ROLE_METHOD = {Role.POWER: "power", Role.TERRAFORM: "terraform_nodes", Role.ACCOUNT: "plan_infrastructure"}


@pytest.mark.parametrize("name", ["lab", "onprem", "aws", "azure"])
def test_capabilities_say_which_roles_a_provider_has_and_why_not(name: str) -> None:
    provider = get_provider(name)
    caps = provider.capabilities
    for role, method in ROLE_METHOD.items():
        implemented = getattr(type(provider), method) is not getattr(BaseProvider, method)
        assert caps.has(role) == implemented, (name, role)
        if not caps.has(role):
            # a reason written for this provider, not the generic fallback
            assert caps.why_not(role) and "does not implement" not in caps.why_not(role), (name, role)
        else:
            assert caps.why_not(role) == ""


def test_a_missing_operation_is_a_typed_error_naming_the_provider(tmp_path: Path) -> None:
    ws = onprem_spec(tmp_path)
    with pytest.raises(ProviderUnavailable) as info:
        BaseProvider().partition(ws, True)
    assert info.value.code == "HAC300" and "base" in info.value.message


def test_power_state_is_one_of_three_words(tmp_path: Path) -> None:
    fake = FakeProvider()
    ws = onprem_spec(tmp_path)
    fake.ensure_nodes(ws)
    assert fake.power(ws, "db1") == "on"
    fake.power_off(ws, "db1")
    assert fake.power(ws, "db1") == "off" and fake.power_events(ws, "db1", 0) == [(fake.clock.time(), "off")]
    assert fake.power(ws, "nosuch") == "unknown"


# ---------------------------------------------------------------- hooks instead of kinds


def test_down_purge_asks_the_provider_to_purge(tmp_path: Path) -> None:
    from hacloud.ops.down import down

    ws = onprem_spec(tmp_path)
    fake = FakeProvider()
    with registered("onprem", fake, replace=True):
        fake.ensure_volumes(ws, fake.ensure_nodes(ws))
        down(ws.spec_path, delete_volumes=False, purge=False)
        assert fake.purged == 0 and fake.cloud.leftovers()["volumes"]  # disks stay
        fake.ensure_volumes(ws, fake.ensure_nodes(ws))
        down(ws.spec_path, delete_volumes=False, purge=True)
    assert fake.purged == 1
    assert fake.cloud.leftovers() == {"machines": [], "volumes": []}  # --purge deletes the disks too


def test_the_lab_purge_drops_the_image_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hacloud_lab.lab import LabProvider

    monkeypatch.setenv("HACLOUD_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data/images").mkdir(parents=True)
    (tmp_path / "data/images/debian.img").write_bytes(b"x")
    (tmp_path / "data/keep").write_text("not the cache")
    LabProvider().purge(onprem_spec(tmp_path))
    assert not (tmp_path / "data/images").exists()
    assert (tmp_path / "data/keep").read_text() == "not the cache"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # a port nothing listens on, on any 127/8 address
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


def loopback_spec(tmp_path: Path) -> Workspace:
    ws = onprem_spec(tmp_path)
    doc = yaml.safe_load(ws.spec_path.read_text())
    for i, node in enumerate(doc["nodes"], start=1):
        node["address"] = f"127.0.0.{i}"  # loopback: the whole 127/8 answers on Linux
        node["links"] = [f"127.0.0.{i}"]
        node.pop("replication_address")
    ws.spec_path.write_text(yaml.safe_dump(doc))
    return Workspace(spec_of(doc), ws.spec_path)


def test_a_failed_login_is_worded_by_the_provider(tmp_path: Path) -> None:
    """`up` on nodes nobody answers on (a real connection to a closed loopback port): a provider
    that built infrastructure says it is in place (its default); one whose hosts are the user's
    (on-prem, lab) shows the SSH error as it is. The cause's code and remedy are kept."""
    from hacloud.ops.converge import converge

    ws = loopback_spec(tmp_path)
    errors = []
    for wrapped in (True, False):
        fake = FakeProvider(ssh_port=closed_port())
        if not wrapped:
            fake.login_failed = lambda ws, error: error  # type: ignore[method-assign]
        with registered("onprem", fake, replace=True), pytest.raises(HacloudError) as info:
            converge(ws.spec_path, lambda _m: None, apply=True)
        errors.append(info.value)
    cloud, own = errors
    prefix = "the fake infrastructure is in place, but step 'log in to the nodes over SSH' failed: "
    assert cloud.message.startswith(prefix) and not own.message.startswith(prefix)
    assert "cannot log in" in own.message and "cannot log in" in cloud.message[len(prefix) :]
    assert (cloud.code, cloud.remedy) == (own.code, own.remedy)


@pytest.mark.parametrize("name", ["lab", "onprem", "aws drop-in"])
def test_hosts_of_the_user_show_the_ssh_error_as_it_is(name: str, tmp_path: Path) -> None:
    """On-prem hosts and lab guests are not infrastructure hacloud just built, and neither are
    Terraform's machines under a drop-in: the SSH error is shown as it is."""
    from hacloud.provision.dropin import DropIn
    from hacloud.provision.terraform import TerraformSource

    provider = get_provider(name.split(maxsplit=1)[0])
    if name.endswith("drop-in"):
        provider = DropIn(provider, TerraformSource(tmp_path / "terraform.tfstate"))
    error = HacloudError("db1: connection refused", "start sshd", code="HAC401")
    assert provider.login_failed(onprem_spec(tmp_path), error) is error
    assert get_provider("aws").login_failed(onprem_spec(tmp_path), error) is not error


def test_the_power_on_hint_comes_from_the_provider(tmp_path: Path) -> None:
    ws = onprem_spec(tmp_path)
    assert get_provider("lab").power_on_hint(ws, "db2") == f"`hacloud lab power db2 on -f {ws.spec_path}`"
    assert "hacloud lab" not in get_provider("aws").power_on_hint(ws, "db2")


def test_the_lab_commands_come_from_the_lab_plugin() -> None:
    import typer
    import typer.main
    from hacloud_lab import cli as lab_cli
    from typer.testing import CliRunner

    from hacloud.cli import app

    assert "lab" not in {g.name for g in app.registered_groups}  # the core does not define it
    root = typer.main.get_command(app)
    lab = root.get_command(typer.Context(root), "lab")  # type: ignore[attr-defined]
    # contributed through the hacloud.commands entry point: the plug-in's own commands
    assert sorted(lab.commands) == sorted(c.name for c in lab_cli.app.registered_commands)
    callback = lab.commands["power"].callback  # typer wraps it, keeping its name and module
    assert (callback.__module__, callback.__name__) == ("hacloud_lab.cli", "lab_power")
    out = CliRunner().invoke(app, ["lab", "power", "-f", "missing.yaml", "db1"])
    # the plug-in raised; the core showed it as its own errors (the file's problems, exit 2)
    assert out.exit_code == 2 and "missing.yaml: no such file" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


def test_lab_commands_refuse_another_providers_spec(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hacloud.cli import app

    ws = onprem_spec(tmp_path)
    out = CliRunner().invoke(app, ["lab", "power", "db1", "-f", str(ws.spec_path)])
    assert out.exit_code == 2
    assert "works on lab clusters" in out.output and "[HAC600]" in out.output
