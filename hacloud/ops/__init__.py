"""The use-case layer: one module per command family, each validating everything before it acts
and raising :class:`~hacloud.errors.HacloudError` (never printing). Only the CLI imports it.

- :mod:`.example` (`init`), :mod:`.prepare` (load, validate, render in memory),
  :mod:`.render`, :mod:`.check`, :mod:`.converge` (`up`, `plan`), :mod:`.down`, :mod:`.ssh`;
- :mod:`.commands`: `status`, `failover`, `verify` (moving to their own modules, issue 17).
"""
