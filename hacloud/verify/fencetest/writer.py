"""The client process of a round (:class:`Client`), run where the provider says a client sits.

Contract: :meth:`Client.start` launches ``python -m hacloud.verify.fencetest.client write``
through ``provider.client_command`` (the lab: inside its network namespace), logging every
attempt to ``<directory>/<run_id>.jsonl``; :meth:`Client.stop` always ends it (stop file,
then a kill); ``health`` and ``digest`` raise a :class:`~hacloud.errors.HacloudError` when the
service does not answer.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hacloud.errors import HacloudError
from hacloud.verify.fencetest.analysis import Attempt, load_attempts

if TYPE_CHECKING:
    from hacloud.provision.provider import PowerControl
    from hacloud.spec.workspace import Workspace


class Client:
    """The writer process, and reads of the store through the VIP.

    ``rate`` writes a second, each timing out after ``request_timeout``; the process stops by
    itself after ``max_seconds`` should this machine lose track of it."""

    def __init__(
        self,
        ws: Workspace,
        provider: PowerControl,
        url: str,
        directory: Path,
        *,
        rate: float,
        request_timeout: float,
        max_seconds: float,
    ) -> None:
        self.ws, self.provider, self.url = ws, provider, url
        self.rate, self.request_timeout, self.max_seconds = rate, request_timeout, max_seconds
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / f"{self.run_id}.jsonl"
        self.stop_file = directory / f"{self.run_id}.stop"
        self.proc: subprocess.Popen[bytes] | None = None

    def _python(self, *args: str) -> list[str]:
        return self.provider.client_command(
            self.ws, [sys.executable, "-m", "hacloud.verify.fencetest.client", *args]
        )

    def health(self) -> dict[str, Any]:
        proc = subprocess.run(
            self._python("health", "--url", self.url), capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise HacloudError(
                f"the demo service does not answer on {self.url}: {proc.stderr.strip()[-300:]}",
                "see `hacloud status`; the VIP must be reachable from this machine",
                code="HAC520",
            )
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def start(self) -> None:
        cmd = self._python(
            "write", "--url", self.url, "--run", self.run_id, "--out", str(self.log),
            "--rate", str(self.rate), "--timeout", str(self.request_timeout),
            "--stop-file", str(self.stop_file), "--max-seconds", str(self.max_seconds),
        )  # fmt: skip
        self.log.touch()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def attempts(self) -> list[Attempt]:
        return load_attempts(self.log)

    def stop(self) -> None:
        self.stop_file.touch()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=self.request_timeout + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stop_file.unlink(missing_ok=True)

    def digest(self, after: int) -> list[list[Any]]:
        cmd = self._python("digest", "--url", self.url, "--after", str(after), "--timeout", "120")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise HacloudError(
                f"could not read the records back through {self.url}: {proc.stderr.strip()[-300:]}",
                "see `hacloud status`",
                code="HAC521",
            )
        records: list[list[Any]] = json.loads(proc.stdout)["records"]
        return records
