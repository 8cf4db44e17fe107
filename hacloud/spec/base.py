"""The base of every spec model, and the patterns several models share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# a dotted-quad IPv4 CIDR; the addresses themselves are checked where they are used
CIDR = r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$"


class SpecModel(BaseModel):
    """A part of ``hacloud.yaml``: unknown keys are refused (a typo is an error, not a default),
    and a loaded spec is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
