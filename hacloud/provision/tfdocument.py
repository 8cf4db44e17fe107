"""Terraform's JSON, read: the types a drop-in import exchanges, and :func:`read_document`,
which turns a Terraform directory, a saved ``terraform output -json`` or a state file (format
version 4) into a :class:`TfDocument` (outputs and managed resources), checking the shape
Terraform writes and listing every problem (:class:`~hacloud.errors.SpecError`). Reads only;
values of sensitive outputs never appear in an error message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hacloud.errors import HacloudError, Problem, SpecError
from hacloud.spec.inventory import Inventory
from hacloud.spec.workspace import TerraformSource

INVENTORY_OUTPUT = "hacloud_inventory"
STATE_VERSION = 4


@dataclass(frozen=True)
class Output:
    value: Any
    sensitive: bool = False


@dataclass(frozen=True)
class TfResource:
    """One instance of a managed resource in a state: ``address`` as Terraform prints it."""

    address: str
    type: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class TfDocument:
    where: str
    outputs: dict[str, Output]
    resources: tuple[TfResource, ...] = ()
    has_state: bool = False


@dataclass(frozen=True)
class Candidate:
    """A machine a provider found among the state's resources, with what identifies it."""

    address: str
    id: str
    private_ip: str
    name: str | None = None
    zone: str | None = None
    public_ip: str | None = None
    devices: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        bits = [self.id, self.private_ip]
        if self.zone:
            bits.append(f"zone {self.zone}")
        if self.name and self.name != self.id:
            bits.append(f"name {self.name}")
        return f"{self.address} ({', '.join(bits)})"


@dataclass(frozen=True)
class Imported:
    inventory: Inventory
    origin: tuple[str, ...]
    where: str


def fail(where: str, message: str, remedy: str, path: str = "") -> SpecError:
    return SpecError(where, [Problem(path, message, remedy)])


def terraform_binary() -> str | None:
    """``$HACLOUD_TERRAFORM``, else terraform (or OpenTofu's tofu) on PATH."""
    env = os.environ.get("HACLOUD_TERRAFORM")
    if env:
        return env
    return shutil.which("terraform") or shutil.which("tofu")


def _run_terraform(binary: str, directory: Path, args: list[str]) -> str:
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1")
    try:
        proc = subprocess.run(
            [binary, *args],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HacloudError(
            f"cannot run `{binary} {' '.join(args)}` in {directory}: {exc}",
            "check the terraform binary (HACLOUD_TERRAFORM), or pass a saved `terraform output -json` file",
            code="HAC341",
        ) from None
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split())[-400:]
        raise HacloudError(
            f"`terraform {' '.join(args)}` failed in {directory}: {tail}",
            "run `terraform init` there (and `terraform apply` if nothing is deployed yet), "
            "or pass a saved `terraform output -json` file",
            code="HAC342",
        )
    return proc.stdout


def _parse_outputs(data: Any, where: str, at: str = "") -> dict[str, Output]:
    if not isinstance(data, dict):
        raise fail(
            where,
            f"the outputs are a {_json_type(data)}, not an object of outputs",
            "pass the file `terraform output -json` writes (not `terraform output` text)",
            at,
        )
    outputs: dict[str, Output] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise fail(
                where,
                f"output {name!r} has no `value`",
                "pass the file `terraform output -json` writes (not `terraform output` text)",
                f"{at}.{name}" if at else str(name),
            )
        outputs[str(name)] = Output(entry["value"], bool(entry.get("sensitive", False)))
    return outputs


def _json_type(value: Any) -> str:
    """JSON's name for the type of ``value`` (what a user sees in the file)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _module_prefix(module: str | None) -> str:
    return f"{module}." if module else ""


STATE_FIX = (
    "pass the state as Terraform writes it (`terraform state pull > state.json`); "
    "a hand-edited or truncated state cannot be read"
)


def _state_shape(data: dict[str, Any]) -> list[Problem]:
    """Every place where a version-4 state does not have the shape Terraform writes: what is
    read below (resources, their type/name/mode, instances, attributes) must be there with its
    JSON type, so reading it cannot fail half-way."""
    problems: list[Problem] = []

    def want(value: Any, kinds: tuple[type, ...], path: str, what: str, optional: bool = True) -> bool:
        if value is None and optional:
            return False
        if isinstance(value, kinds) and not isinstance(value, bool):
            return True
        problems.append(Problem(path, f"expected {what}, got {_json_type(value)}", STATE_FIX))
        return False

    want(data.get("outputs"), (dict,), "outputs", "an object of outputs")
    resources = data.get("resources")
    if not want(resources, (list,), "resources", "a list of resources") or not isinstance(resources, list):
        return problems
    for ri, res in enumerate(resources):
        at = f"resources[{ri}]"
        if not want(res, (dict,), at, "an object", optional=False):
            continue
        want(res.get("mode"), (str,), f"{at}.mode", "a string (managed or data)", optional=False)
        if res.get("mode") != "managed":
            continue
        want(res.get("type"), (str,), f"{at}.type", "the resource type, a string", optional=False)
        want(res.get("name"), (str,), f"{at}.name", "the resource name, a string", optional=False)
        want(res.get("module"), (str,), f"{at}.module", "a module address, a string")
        instances = res.get("instances")
        if not want(instances, (list,), f"{at}.instances", "a list of instances"):
            continue
        for ii, inst in enumerate(instances):
            iat = f"{at}.instances[{ii}]"
            if not want(inst, (dict,), iat, "an object", optional=False):
                continue
            want(inst.get("index_key"), (int, str), f"{iat}.index_key", "a number or a string")
            want(inst.get("attributes"), (dict,), f"{iat}.attributes", "an object of attributes")
    return problems


def _parse_state(data: dict[str, Any], where: str) -> TfDocument:
    version = data.get("version")
    if version != STATE_VERSION or isinstance(version, bool):
        raise fail(
            where,
            f"state format version {version!r}; hacloud reads version {STATE_VERSION} "
            "(Terraform 0.12 and later)",
            "run `terraform state pull > state.json` with a current Terraform, or pass "
            "`terraform output -json` instead",
            "version",
        )
    problems = _state_shape(data)
    if problems:
        raise SpecError(where, problems)
    outputs = _parse_outputs(data.get("outputs") or {}, where, "outputs")
    resources: list[TfResource] = []
    for res in data.get("resources") or []:
        if res.get("mode") != "managed":
            continue
        base = f"{_module_prefix(res.get('module'))}{res['type']}.{res['name']}"
        for inst in res.get("instances") or []:
            key = inst.get("index_key")
            suffix = "" if key is None else f"[{json.dumps(key)}]"
            resources.append(TfResource(base + suffix, str(res["type"]), dict(inst.get("attributes") or {})))
    return TfDocument(where, outputs, tuple(resources), has_state=True)


def _json(text: str, where: str) -> Any:
    """``text`` as JSON, or a SpecError saying why not (never a traceback on hostile input)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        message = f"not JSON: {exc}"
    except RecursionError:
        message = "not JSON hacloud can read: nested thousands of levels deep"
    raise fail(
        where,
        message,
        "pass a Terraform directory, `terraform output -json` output, or a terraform.tfstate",
    )


def read_text(path: Path, what: str, remedy: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(str(path), f"cannot read {what}: {exc.strerror}", remedy) from None
    except UnicodeDecodeError:
        raise fail(str(path), f"cannot read {what}: it is not UTF-8 text (a binary file?)", remedy) from None


def read_document(source: TerraformSource, want_state: bool = False) -> TfDocument:
    """Outputs (and, for a state or a directory when ``want_state``, resources) at ``source.path``."""
    path = source.path
    if path.is_dir():
        binary = terraform_binary()
        where = f"terraform outputs of {path}"
        if binary is not None:
            outputs = _parse_outputs(
                _json(_run_terraform(binary, path, ["output", "-json"]) or "{}", where), where
            )
            if not want_state:
                return TfDocument(where, outputs)
            state = _run_terraform(binary, path, ["state", "pull"])
            if not state.strip():
                return TfDocument(where, outputs)
            state_where = f"terraform state of {path}"
            pulled = _json(state, state_where)
            if not isinstance(pulled, dict):
                raise fail(state_where, "the state is not a JSON object", STATE_FIX)
            doc = _parse_state(pulled, state_where)
            return TfDocument(where, outputs, doc.resources, has_state=True)
        local = path / "terraform.tfstate"
        if not local.exists():
            raise HacloudError(
                f"{path} has no terraform.tfstate and no terraform binary is on PATH to read its state",
                "install terraform (or set HACLOUD_TERRAFORM), or pass a file saved with "
                "`terraform output -json > outputs.json`",
                code="HAC343",
            )
        path = local
    data = _json(read_text(path, "the file", "check the --from-terraform path"), str(path))
    if not isinstance(data, dict):
        raise fail(str(path), "the document must be a JSON object", "pass `terraform output -json` output")
    if "terraform_version" in data or "lineage" in data or isinstance(data.get("version"), int):
        return _parse_state(data, str(path))
    return TfDocument(str(path), _parse_outputs(data, str(path)))
