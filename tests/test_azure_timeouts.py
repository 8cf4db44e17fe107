"""Azure SDK clients give up on a silent endpoint after hacloud's connect/read timeouts (issue 16,
item 16), not azure-core's 300 s: a real TCP listener on loopback that accepts and never answers
(the TLS handshake waits for bytes that never come), and the real SDK client."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from azuretools import StaticToken

from hacloud.errors import HacloudError
from hacloud.spec.load import load_spec

pytest.importorskip("azure.mgmt.compute")


def test_a_silent_arm_endpoint_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hacloud_azure import api

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(silent.accept()[0])  # and never send a byte
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    doc: dict[str, Any] = yaml.safe_load(
        (Path(__file__).parent.parent / "templates/init/azure.yaml").read_text()
    )
    doc["provider"]["options"]["arm_endpoint"] = f"https://127.0.0.1:{silent.getsockname()[1]}"
    for method in doc["fencing"]:  # a loopback endpoint is no Azure cloud: name the one it stands for
        if method["kind"] == "fence_azure_arm":
            method["cloud"] = "public"
    (tmp_path / "hacloud.yaml").write_text(yaml.safe_dump(doc))
    spec = load_spec(tmp_path / "hacloud.yaml")
    monkeypatch.setattr(api, "CREDENTIAL_FACTORY", StaticToken)
    # the production values (10 s connect, 60 s read, 8 retries) scaled down so the test is short;
    # what matters is that the SDK's transport honours them at all (its default is 300 s)
    monkeypatch.setattr(api, "READ_TIMEOUT", 1.0, raising=False)
    monkeypatch.setattr(api, "RETRY_TOTAL", 0, raising=False)
    outcome: dict[str, Any] = {}

    def read_vm() -> None:
        try:
            c = api.clients(spec.provider.options)  # type: ignore[arg-type]
            api.call("read a VM", c.compute.virtual_machines.get, "rg", "vm")
        except HacloudError as exc:
            outcome["error"] = exc
        except Exception as exc:
            outcome["other"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=read_vm, daemon=True)
    worker.start()
    worker.join(timeout=30)
    silent.close()
    for s in accepted:
        s.close()
    assert not worker.is_alive(), "the SDK call was still waiting after 30 s"
    assert time.monotonic() - started < 30
    assert "error" in outcome, outcome
    assert outcome["error"].remedy
