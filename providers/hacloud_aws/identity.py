"""AWS identity: the role and instance profile the nodes run as (phase identity, before the
instances), the agents' inline policy that names the instances (phase access), and their
removal (teardown, only when the role carries the cluster's tag)."""

from __future__ import annotations

import json
from typing import Any

from hacloud.provision.cloud import TAG_CLUSTER
from hacloud_aws import iam
from hacloud_aws.api import aws_error, call, error_code
from hacloud_aws.base import AwsBase, Site, tags_of


class Identity(AwsBase):
    def ensure_identity(self, site: Site) -> None:
        """Role + instance profile (both tagged); ``site.profile_arn`` is the profile's ARN."""
        name = iam.role_name(self.cluster)
        role = self._read("get_role", "RoleName", name, "Role", f"read IAM role {name}")
        if role is None and self.change(
            f"iam-role/{name}", "create", f"IAM: create role {name} (assumed by EC2)"
        ):
            call(
                f"create IAM role {name}",
                self.c.iam.create_role,
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(iam.ASSUME_EC2),
                Description=f"hacloud cluster {self.cluster}: fence and VIP agents",
                Tags=self._iam_tags(),
            )
        site.profile_arn = self._ensure_profile(name)

    def _instance_profile(self, name: str) -> dict[str, Any] | None:
        """The instance profile ``name`` as IAM returns it, None when it does not exist."""
        return self._read(
            "get_instance_profile",
            "InstanceProfileName",
            name,
            "InstanceProfile",
            f"read instance profile {name}",
        )

    def _ensure_profile(self, name: str) -> str:
        profile = self._instance_profile(name)
        if profile is None:
            if not self.change(f"instance-profile/{name}", "create", f"IAM: create instance profile {name}"):
                return f"arn:{iam.partition(self.c.region)}:iam::ACCOUNT:instance-profile/{name}"
            profile = call(
                f"create instance profile {name}",
                self.c.iam.create_instance_profile,
                InstanceProfileName=name,
                Tags=self._iam_tags(),
            )["InstanceProfile"]
        if not any(r["RoleName"] == name for r in profile.get("Roles", [])) and self.change(
            f"instance-profile/{name}", "update", f"IAM: put role {name} into instance profile {name}"
        ):
            call(
                "add the role to the instance profile",
                self.c.iam.add_role_to_instance_profile,
                InstanceProfileName=name,
                RoleName=name,
            )
        return str(profile["Arn"])

    def _iam_tags(self) -> list[dict[str, str]]:
        return [{"Key": TAG_CLUSTER, "Value": self.cluster}]

    def _read(self, method: str, key: str, name: str, field: str, doing: str) -> dict[str, Any] | None:
        """An IAM entity by name; None when IAM says there is no such entity."""
        try:
            return dict(getattr(self.c.iam, method)(**{key: name})[field])
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise aws_error(exc, doing) from None
            return None

    def ensure_access(self, site: Site) -> None:
        """The agents' inline policy on the role, exactly what they call on these instances."""
        # placeholders only in a plan: `up` has made both instances by now
        ids = [
            site.instances[n.name]["InstanceId"] if n.name in site.instances else f"<{n.name} instance id>"
            for n in self.spec.nodes
        ]
        name = iam.role_name(self.cluster)
        want = iam.agent_policy(self.spec, self.c.region, site.account, ids)
        try:
            have = self.c.iam.get_role_policy(RoleName=name, PolicyName=iam.POLICY_NAME)["PolicyDocument"]
            if isinstance(have, str):
                have = json.loads(have)
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise aws_error(exc, "read the agents' policy") from None
            have = None
        if have != want and self.change(
            f"iam-policy/{name}/{iam.POLICY_NAME}",
            "create" if have is None else "update",
            f"IAM: put policy {iam.POLICY_NAME} on role {name}",
        ):
            call(
                "put the agents' policy",
                self.c.iam.put_role_policy,
                RoleName=name,
                PolicyName=iam.POLICY_NAME,
                PolicyDocument=json.dumps(want),
            )
        self.policy = want

    def teardown_identity(self) -> None:
        """The instance profile and the role (with its policies), when the role is the cluster's."""
        name = iam.role_name(self.cluster)
        role = self._read("get_role", "RoleName", name, "Role", f"read IAM role {name}")
        profile = self._instance_profile(name)
        if role is not None and not self.owned(tags_of(role.get("Tags"))):
            self.ws.progress(f"kept IAM role {name}: it does not carry {TAG_CLUSTER}={self.cluster}")
            return
        client = self.c.iam
        if profile is not None and self.change(
            f"instance-profile/{name}", "delete", f"IAM: delete instance profile {name}"
        ):
            for r in profile.get("Roles", []):
                call(
                    "take the role out of the profile",
                    client.remove_role_from_instance_profile,
                    InstanceProfileName=name,
                    RoleName=r["RoleName"],
                )
            call("delete the instance profile", client.delete_instance_profile, InstanceProfileName=name)
        if role is not None and self.change(f"iam-role/{name}", "delete", f"IAM: delete role {name}"):
            for policy in call("list role policies", client.list_role_policies, RoleName=name)["PolicyNames"]:
                call("delete a role policy", client.delete_role_policy, RoleName=name, PolicyName=policy)
            call("delete the role", client.delete_role, RoleName=name)
