terraform {
  required_version = ">= 1.0"
  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # The majors the tests check this module against (the docs of 4.42.0 and 5.2.0, vendored in
      # tests/data/terraform-providers): floating_ip_enabled exists from 4.42.0, 5.0 removed
      # enable_floating_ip. Raise the upper bound only after testing the next major.
      version = ">= 4.42, < 6.0"
    }
  }
}
