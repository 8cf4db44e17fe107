"""Errors that carry their remedy.

Every error hacloud raises for a user's input or environment is a ``HacloudError``: the CLI
prints ``message``, ``remedy`` and ``code`` and exits with ``exit_code``; nothing below the CLI
prints. ``code`` is stable (``HAC2xx``..``HAC7xx``, one per failure a user can meet) so scripts
and tests can tell failures apart without reading the wording; ``--json`` output carries it.
Ranges by stage: 2xx spec and input, 3xx provision and use cases, 4xx deploy and node queries,
5xx verify and fence-test, 6xx provider plug-ins, 7xx the emulated clouds (AWS in a box).
``docs/errors.md`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass


class HacloudError(Exception):
    """A failure the user can act on.

    ``remedy`` says what to do next; ``exit_code`` is what the CLI returns (1 by default,
    2 for bad input).
    """

    exit_code = 1
    code = "HAC200"  # unclassified: a raise site without its own code (a test forbids them)

    def __init__(self, message: str, remedy: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy
        if code is not None:
            self.code = code


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file.

    ``path`` is the dotted location inside the document (``nodes[0].address``), ``line`` the
    1-based line in the file when known, ``message`` what is wrong and ``remedy`` how to fix it.
    """

    path: str
    message: str
    remedy: str
    line: int | None = None

    def render(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        loc = f" {self.path}:" if self.path else ""
        text = f"{where}:{loc} {self.message}"
        if self.remedy:
            text += f"\n    fix: {self.remedy}"
        return text


class SpecError(HacloudError):
    """An input document (spec, inventory) is invalid; ``problems`` lists every problem found."""

    exit_code = 2
    code = "HAC201"

    def __init__(self, filename: str, problems: list[Problem], *, code: str | None = None) -> None:
        self.filename = filename
        self.problems = problems
        count = len(problems)
        super().__init__(
            f"{filename}: {count} problem{'s' if count != 1 else ''} found",
            "correct every problem listed, then run the command again",
            code=code,
        )

    def report(self) -> str:
        lines = [f"{self.message} [{self.code}]"]
        lines += [p.render(self.filename) for p in self.problems]
        return "\n".join(lines)


class UsageError(HacloudError):
    """The command line asks for something impossible (exit 2)."""

    exit_code = 2
    code = "HAC202"


class ProviderUnavailable(HacloudError):
    """A provider's optional dependencies are missing or it cannot do what was asked."""

    code = "HAC203"


class Interrupted(BaseException):
    """Ctrl-C (SIGINT), raised by the CLI's handler. Not a KeyboardInterrupt, which click turns
    into "Aborted!" and exit 1: the CLI reports it itself and exits 130 without waiting for
    worker threads. Code that leaves something half-done catches it to say what (fence-test)."""


class InterruptedWork(HacloudError):
    """Ctrl-C stopped a run that left the cluster in a state the user must know about; the
    message says what, the remedy how to undo it. Exit 130, as for any interrupt."""

    exit_code = 130
    code = "HAC204"
