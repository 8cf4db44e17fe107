# hacloud on Azure with Terraform owning the infrastructure:
#   terraform init && terraform apply
#   hacloud up --from-terraform .        (spec: hacloud.yaml next to this file)
provider "azurerm" {
  features {}
}

variable "resource_group_name" {
  description = "Existing resource group."
  type        = string
}

variable "subnet_id" {
  description = "Resource id of the nodes' subnet."
  type        = string
}

variable "ssh_public_key" {
  description = "OpenSSH public key for the admin user."
  type        = string
}

module "pair" {
  source              = "../../modules/azure-ha-pair"
  cluster_name        = "prod-db"
  resource_group_name = var.resource_group_name
  location            = "westeurope"
  subnet_id           = var.subnet_id
  vip_address         = "10.0.1.100"
  admin_cidr          = "192.0.2.0/24"
  ssh_public_key      = var.ssh_public_key
}

output "hacloud_inventory" {
  description = "Read by `hacloud up --from-terraform .`."
  value       = module.pair.hacloud_inventory
}
