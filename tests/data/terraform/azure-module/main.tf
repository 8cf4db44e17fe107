# The Azure module, its inventory re-exported as a sensitive output (a team's policy may
# mark every output sensitive): hacloud must read it and never print its values.
provider "azurerm" {
  features {}
}

module "pair" {
  source              = "../modules/azure-ha-pair"
  cluster_name        = "prod-db"
  resource_group_name = "rg-prod-db"
  location            = "westeurope"
  subnet_id           = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/db"
  vip_address         = "198.51.100.100"
  admin_cidr          = "192.0.2.0/24"
  ssh_public_key      = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3QtdGVzdC10ZXN0LXRlc3QtdGVzdC10ZXN0 test"
}

output "hacloud_inventory" {
  value     = module.pair.hacloud_inventory
  sensitive = true
}
