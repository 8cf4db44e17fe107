"""Where the AWS provider's calls, SSH and clients go: real AWS, or the emulated AWS that runs on
this machine (the AWS box).

Contract: :func:`site_of` is :class:`RealAws` unless the spec sets ``provider.options.emulated``;
then it is the box's site (``hacloud_aws.box.site``, imported only then). The provider runs the
same code for both: a site chooses only the API endpoint, CA and credentials, the network
namespace SSH starts in, where the service's clients sit, and the faults that only an emulator
can inject (cutting the network between zones, freezing an instance's kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hacloud.errors import ProviderUnavailable
from hacloud.spec.model import AwsOptions
from hacloud.spec.workspace import Workspace
from hacloud_aws.api import ApiAccess

#: what fence-test can do to instances on real AWS ("fence" goes through the cluster itself)
AWS_FAULTS: tuple[str, ...] = ("fence", "power", "crash")
#: the emulated AWS can also cut the path between the zones
BOX_FAULTS: tuple[str, ...] = (*AWS_FAULTS, "partition")
NO_PARTITION = "cutting the network between two instances would need NACL changes; not done"


class Site(Protocol):
    faults: tuple[str, ...]
    can_freeze: bool  # whether ``freeze`` can stop an instance's kernel

    def api(self) -> ApiAccess:
        """The endpoint, CA and credentials boto3 uses."""
        ...

    def ensure(self, progress: Callable[[str], None]) -> None:
        """Make the cloud reachable before the first call (the box: start it)."""
        ...

    def running(self) -> bool:
        """Whether the cloud can be asked at all (real AWS: always)."""
        ...

    def teardown(self, delete_volumes: bool, progress: Callable[[str], None]) -> None:
        """After the provider removed what it made: remove the cloud itself (the box)."""
        ...

    def ssh_namespace(self) -> str | None:
        """The network namespace hacloud's SSH starts in (None: this machine's own)."""
        ...

    def client_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run where the service's clients sit."""
        ...

    def freeze(self, instance_id: str) -> bool:
        """Stop the instance's kernel without EC2 knowing (False: cannot; fence-test crashes
        the kernel over SSH instead)."""
        ...

    def partition(self, cut: bool) -> None:
        """Cut or heal the path between the two zones; each side keeps the API and its clients."""
        ...


class RealAws:
    """Amazon's own cloud: boto3's settings, SSH and clients from this machine."""

    faults: tuple[str, ...] = AWS_FAULTS
    can_freeze = False

    def api(self) -> ApiAccess:
        return ApiAccess()

    def ensure(self, progress: Callable[[str], None]) -> None:
        return None

    def running(self) -> bool:
        return True

    def teardown(self, delete_volumes: bool, progress: Callable[[str], None]) -> None:
        return None

    def ssh_namespace(self) -> str | None:
        return None

    def client_argv(self, argv: list[str]) -> list[str]:
        return argv

    def freeze(self, instance_id: str) -> bool:
        return False

    def partition(self, cut: bool) -> None:
        raise ProviderUnavailable(
            f"the aws provider cannot cut the network between the nodes ({NO_PARTITION})",
            "use --method power, crash or fence; or rehearse partitions in the emulated AWS "
            "(`hacloud init --provider aws --emulated`)",
            code="HAC671",
        )


def site_of(ws: Workspace) -> Site:
    """The site of ``ws``'s spec (see the module contract)."""
    options = getattr(ws.spec.provider, "options", None)
    if isinstance(options, AwsOptions) and options.emulated is not None:
        from hacloud_aws.box.site import BoxSite

        return BoxSite(ws)
    return RealAws()
