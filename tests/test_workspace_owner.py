"""A cluster's state directory is shared only by the spec files its owner file names (issue 15
item 16): a second spec naming the same cluster is refused, until the operator adds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hacloud.errors import UsageError
from hacloud.spec.workspace import OWNER_FILE, check_owner, record_owner


def test_a_second_spec_shares_the_keys_only_once_named_in_the_owner_file(tmp_path: Path) -> None:
    state = tmp_path / ".hacloud" / "db"
    record_owner(state, tmp_path / "lab.yaml")
    assert (state / OWNER_FILE).read_text() == "lab.yaml\n"
    with pytest.raises(UsageError) as err:
        check_owner(state, tmp_path / "onprem.yaml")
    assert "lab.yaml" in err.value.message and "add the line onprem.yaml" in str(err.value.remedy)
    with (state / OWNER_FILE).open("a") as fh:  # what the remedy says to do
        fh.write("onprem.yaml\n")
    check_owner(state, tmp_path / "onprem.yaml")
    record_owner(state, tmp_path / "lab.yaml")  # the first owner keeps its place
    assert (state / OWNER_FILE).read_text().split() == ["lab.yaml", "onprem.yaml"]
    with pytest.raises(UsageError):
        check_owner(state, tmp_path / "third.yaml")
