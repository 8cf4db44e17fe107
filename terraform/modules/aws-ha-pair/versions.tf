terraform {
  required_version = ">= 1.0"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # The major the tests check this module against (the docs of 5.0.0 and 5.45.0, vendored in
      # tests/data/terraform-providers). Raise the upper bound only after testing 6.x.
      version = ">= 5.0, < 6.0"
    }
  }
}
