"""``python -m hacloud_aws.box``: run the AWS box daemon in the foreground."""

import sys

from hacloud_aws.box.daemon import main

sys.exit(main())
