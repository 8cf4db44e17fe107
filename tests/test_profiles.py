"""Profiles are data with a source for every value; overrides are checked."""

from __future__ import annotations

import pytest

from hacloud.spec.profiles import PROFILE_NAMES, load_profile, override_problems

# best-practices §3.6: settings where sources disagree; every profile must say why it chose.
DISPUTED = (
    "pacemaker.priority_fencing_delay",
    "pacemaker.stonith_action",
    "pacemaker.resource_stickiness",
    "drbd.on_io_error",
)


def test_every_profile_has_the_same_keys() -> None:
    keys = [{k for k in load_profile(n).values if not k.startswith("sysctl.")} for n in PROFILE_NAMES]
    assert all(k == keys[0] for k in keys)


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_value_has_a_source_and_disputed_ones_a_reason(name: str) -> None:
    prof = load_profile(name)
    for key, value in prof.values.items():
        assert value.source.strip(), key
    for key in DISPUTED:
        assert prof.values[key].why.strip(), f"{name}: {key} needs a why"


def test_cloud_values_match_vendor_docs() -> None:
    aws, azure = load_profile("aws"), load_profile("azure")
    assert (
        aws.get("corosync.token"),
        aws.get("corosync.consensus"),
        aws.get("pacemaker.stonith_timeout"),
    ) == (30000, 36000, 600)
    assert (azure.get("corosync.token"), azure.get("pacemaker.stonith_timeout")) == (30000, 900)
    assert azure.sysctl()["net.ipv4.tcp_timestamps"] == "0"


def test_overrides_validated() -> None:
    prof = load_profile("onprem")
    assert override_problems(prof, {"corosync.token": 6000, "sysctl.vm.swappiness": 5}) == []
    bad = dict(
        (k, m)
        for k, m, _ in override_problems(
            prof,
            {
                "corosync.tokn": 1,
                "corosync.token": "x",
                "drbd.ko_count": -1,
                "pacemaker.concurrent_fencing": 1,
            },
        )
    )
    assert set(bad) == {"corosync.tokn", "corosync.token", "drbd.ko_count", "pacemaker.concurrent_fencing"}
    merged = prof.with_overrides({"corosync.token": 6000})
    assert merged.get("corosync.token") == 6000 and prof.get("corosync.token") == 5000
    assert merged.values["corosync.token"].source == "overridden in the spec"


def test_corosync_links_is_one_or_two() -> None:
    prof = load_profile("aws")
    assert prof.get("corosync.links") == 2 and load_profile("azure").get("corosync.links") == 2
    assert override_problems(prof, {"corosync.links": 1}) == []
    assert [k for k, _, _ in override_problems(prof, {"corosync.links": 3})] == ["corosync.links"]
