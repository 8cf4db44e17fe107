# Existing Azure Terraform that does not use hacloud's module: three VMs (a pair and a jump
# host), one data disk each (the pair's at LUN 0, the jump host's at LUN 3), a VNet and an
# internal load balancer in front of the pair.
provider "azurerm" {
  features {}
}

locals {
  subnet_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-app/providers/Microsoft.Network/virtualNetworks/vnet-app/subnets/db"
  vms       = { "db-0" = "1", "db-1" = "2", "jump" = "1" }
}

resource "azurerm_virtual_network" "app" {
  name                = "vnet-app"
  address_space       = ["198.51.100.0/24"]
  location            = "westeurope"
  resource_group_name = "rg-app"
}

resource "azurerm_network_interface" "nic" {
  for_each            = local.vms
  name                = "${each.key}-nic"
  location            = "westeurope"
  resource_group_name = "rg-app"

  ip_configuration {
    name                          = "ipconfig1"
    subnet_id                     = local.subnet_id
    private_ip_address_allocation = "Dynamic"
  }
}

resource "azurerm_linux_virtual_machine" "vm" {
  for_each              = local.vms
  name                  = each.key
  location              = "westeurope"
  resource_group_name   = "rg-app"
  zone                  = each.value
  size                  = "Standard_D2s_v5"
  admin_username        = "ops"
  network_interface_ids = [azurerm_network_interface.nic[each.key].id]

  admin_ssh_key {
    username   = "ops"
    public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3QtdGVzdC10ZXN0LXRlc3QtdGVzdC10ZXN0 test"
  }

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = "Premium_LRS"
  }

  source_image_reference {
    publisher = "Debian"
    offer     = "debian-12"
    sku       = "12-gen2"
    version   = "latest"
  }

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_managed_disk" "data" {
  for_each             = local.vms
  name                 = "${each.key}-data"
  location             = "westeurope"
  resource_group_name  = "rg-app"
  zone                 = each.value
  storage_account_type = "Premium_LRS"
  create_option        = "Empty"
  disk_size_gb         = 64
}

resource "azurerm_virtual_machine_data_disk_attachment" "data" {
  for_each           = local.vms
  managed_disk_id    = azurerm_managed_disk.data[each.key].id
  virtual_machine_id = azurerm_linux_virtual_machine.vm[each.key].id
  lun                = each.key == "jump" ? 3 : 0
  caching            = "None"
}

resource "azurerm_lb" "app" {
  name                = "lb-app"
  location            = "westeurope"
  resource_group_name = "rg-app"
  sku                 = "Standard"

  frontend_ip_configuration {
    name                          = "vip"
    subnet_id                     = local.subnet_id
    private_ip_address            = "198.51.100.100"
    private_ip_address_allocation = "Static"
  }
}
