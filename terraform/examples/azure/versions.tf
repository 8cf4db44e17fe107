terraform {
  required_version = ">= 1.0"
  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # as the module (../../modules/azure-ha-pair/versions.tf): the majors the tests check
      version = ">= 4.42, < 6.0"
    }
  }
}
