"""The AWS provider (boto3, imported lazily; install with `pip install 'hacloud[aws]'`).

Today it declares what rendering needs: instance ids are assigned by EC2, so until the
instances exist the planned inventory carries placeholders. Creating and discovering
instances, volumes, IAM and routes lands with issue #6.
"""

from __future__ import annotations

from hacloud.provider import BaseProvider, Capabilities


class AwsProvider(BaseProvider):
    name = "aws"
    capabilities = Capabilities(create_nodes=True, power_control=True)
    tracking = "issue #6 (AWS provider)"
    id_is_name = False


provider = AwsProvider()
