terraform {
  required_version = ">= 1.0"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # as the module (../../modules/aws-ha-pair/versions.tf): the major the tests check
      version = ">= 5.0, < 6.0"
    }
  }
}
