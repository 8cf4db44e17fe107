"""The moto quirk IMDS depends on: ``ModifyInstanceMetadataOptions`` (moto 5.2.5,
``ec2/models/instances.py:995-1016``) builds new options from the request alone, so every
option the call does not name becomes None (``HttpTokens=None`` reads as IMDSv1 allowed,
``HttpEndpoint=None`` as disabled, a None hop limit breaks the snapshot). EC2 changes only the
options given ("ModifyInstanceMetadataOptions", EC2 API reference: each parameter "If you
don't specify a value, the current value is kept"). ``install()`` makes moto do the same;
``uninstall(undo)`` reverts it (the pattern of ``moto_ext``).
"""

from __future__ import annotations

from typing import Any

#: the call's keyword -> the attribute of moto's MetadataOptions that keeps it
KEPT = {
    "http_tokens": "http_tokens",
    "hop_limit": "http_put_response_hop_limit",
    "http_endpoint": "http_endpoint",
    "http_protocol": "http_protocol_ipv6",
    "metadata_tags": "instance_metadata_tags",
}


def _modify(orig: Any) -> Any:
    def modify_instance_metadata_options(self: Any, instance_id: str, **given: Any) -> Any:
        current = self.get_instance(instance_id).metadata_options
        for keyword, attribute in KEPT.items():
            if given.get(keyword) is None:
                given[keyword] = getattr(current, attribute)
        return orig(self, instance_id, **given)

    return modify_instance_metadata_options


def install() -> list[tuple[Any, str, Any]]:
    from moto.ec2.models.instances import InstanceBackend

    orig = InstanceBackend.__dict__["modify_instance_metadata_options"]
    setattr(InstanceBackend, "modify_instance_metadata_options", _modify(orig))  # noqa: B010
    return [(InstanceBackend, "modify_instance_metadata_options", orig)]


def uninstall(undo: list[tuple[Any, str, Any]]) -> None:
    for owner, name, orig in reversed(undo):
        setattr(owner, name, orig)
