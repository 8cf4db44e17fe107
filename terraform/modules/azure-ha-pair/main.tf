# Two VMs in two zones with system-assigned identities, one zonal managed data disk per node
# and volume (LUN N), an NSG, a Standard internal load balancer for the VIP (HA ports,
# floating IP, the azure-lb probe) and a custom role that lets each identity read, power off
# and start exactly the two VMs (fence_azure_arm --msi). Infrastructure only: hacloud
# configures the cluster (`hacloud up --from-terraform .`).

locals {
  tags = merge(var.tags, { "hacloud-cluster" = var.cluster_name })
  disks = {
    for pair in setproduct(range(2), range(length(var.volumes))) :
    "${var.node_names[pair[0]]}-${var.volumes[pair[1]].name}" => { node = pair[0], volume = pair[1] }
  }
  ports = {
    corosync = { protocol = "Udp", range = "${var.corosync_port}-${var.corosync_port + 1}", priority = 100 }
    drbd     = { protocol = "Tcp", range = "${var.drbd_base_port}-${var.drbd_base_port + length(var.volumes) - 1}", priority = 110 }
  }
}

resource "azurerm_network_security_group" "cluster" {
  name                = "hacloud-${var.cluster_name}"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = local.tags

  security_rule {
    name                       = "probe"
    description                = "the load balancer's health probe (azure-lb answers on the active node)"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = tostring(var.probe_port)
    source_address_prefix      = "AzureLoadBalancer"
    destination_address_prefix = "*"
  }

  security_rule {
    name                       = "ssh"
    description                = "SSH from where hacloud runs"
    priority                   = 120
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_port_range          = "*"
    destination_port_range     = "22"
    source_address_prefix      = var.admin_cidr
    destination_address_prefix = "*"
  }

  dynamic "security_rule" {
    for_each = local.ports
    content {
      name                         = security_rule.key
      description                  = "${security_rule.key} between the two nodes"
      priority                     = 200 + security_rule.value.priority
      direction                    = "Inbound"
      access                       = "Allow"
      protocol                     = security_rule.value.protocol
      source_port_range            = "*"
      destination_port_range       = security_rule.value.range
      source_address_prefixes      = azurerm_network_interface.node[*].private_ip_address
      destination_address_prefixes = azurerm_network_interface.node[*].private_ip_address
    }
  }
}

resource "azurerm_network_interface" "node" {
  count               = 2
  name                = "${var.node_names[count.index]}-nic"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = local.tags

  ip_configuration {
    name                          = "ipconfig1"
    subnet_id                     = var.subnet_id
    private_ip_address_allocation = "Dynamic"
  }
}

resource "azurerm_network_interface_security_group_association" "node" {
  count                     = 2
  network_interface_id      = azurerm_network_interface.node[count.index].id
  network_security_group_id = azurerm_network_security_group.cluster.id
}

resource "azurerm_linux_virtual_machine" "node" {
  count                           = 2
  name                            = var.node_names[count.index]
  computer_name                   = var.node_names[count.index]
  location                        = var.location
  resource_group_name             = var.resource_group_name
  zone                            = var.zones[count.index]
  size                            = var.vm_size
  admin_username                  = var.admin_user
  disable_password_authentication = true
  allow_extension_operations      = false
  network_interface_ids           = [azurerm_network_interface.node[count.index].id]
  tags                            = local.tags

  admin_ssh_key {
    username   = var.admin_user
    public_key = var.ssh_public_key
  }

  os_disk {
    caching                = "ReadWrite"
    storage_account_type   = "Premium_LRS"
    disk_encryption_set_id = var.disk_encryption_set_id
  }

  source_image_reference {
    publisher = var.image.publisher
    offer     = var.image.offer
    sku       = var.image.sku
    version   = var.image.version
  }

  # fence_azure_arm --msi and the node checks use this identity
  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_managed_disk" "data" {
  for_each               = local.disks
  name                   = "${each.key}-data"
  location               = var.location
  resource_group_name    = var.resource_group_name
  zone                   = var.zones[each.value.node]
  storage_account_type   = var.disk_sku
  create_option          = "Empty"
  disk_size_gb           = var.volumes[each.value.volume].size_gib
  disk_encryption_set_id = var.disk_encryption_set_id
  # a replicated data disk is never exported or imported over the network
  public_network_access_enabled = false
  network_access_policy         = "DenyAll"
  tags                          = local.tags
}

resource "azurerm_virtual_machine_data_disk_attachment" "data" {
  for_each           = local.disks
  managed_disk_id    = azurerm_managed_disk.data[each.key].id
  virtual_machine_id = azurerm_linux_virtual_machine.node[each.value.node].id
  lun                = each.value.volume
  caching            = "None"
}

resource "azurerm_lb" "vip" {
  name                = "hacloud-${var.cluster_name}"
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = "Standard"
  tags                = local.tags

  frontend_ip_configuration {
    name                          = "vip"
    subnet_id                     = var.subnet_id
    private_ip_address            = var.vip_address
    private_ip_address_allocation = "Static"
    zones                         = var.zones
  }
}

resource "azurerm_lb_backend_address_pool" "nodes" {
  name            = "nodes"
  loadbalancer_id = azurerm_lb.vip.id
}

resource "azurerm_network_interface_backend_address_pool_association" "node" {
  count                   = 2
  network_interface_id    = azurerm_network_interface.node[count.index].id
  ip_configuration_name   = "ipconfig1"
  backend_address_pool_id = azurerm_lb_backend_address_pool.nodes.id
}

# Microsoft's guide for Pacemaker on Azure: TCP probe every 5 s, 2 failures
resource "azurerm_lb_probe" "azure_lb" {
  name                = "azure-lb"
  loadbalancer_id     = azurerm_lb.vip.id
  protocol            = "Tcp"
  port                = var.probe_port
  interval_in_seconds = 5
  number_of_probes    = 2
}

# HA ports with floating IP: every port of the VIP reaches the active node unchanged
resource "azurerm_lb_rule" "ha_ports" {
  name                           = "ha-ports"
  loadbalancer_id                = azurerm_lb.vip.id
  protocol                       = "All"
  frontend_port                  = 0
  backend_port                   = 0
  frontend_ip_configuration_name = "vip"
  backend_address_pool_ids       = [azurerm_lb_backend_address_pool.nodes.id]
  probe_id                       = azurerm_lb_probe.azure_lb.id
  floating_ip_enabled            = true
  idle_timeout_in_minutes        = 30
}

resource "azurerm_role_definition" "fence" {
  name        = "hacloud-${var.cluster_name}-fence"
  scope       = azurerm_linux_virtual_machine.node[0].id
  description = "fence_azure_arm: read, power off and start the two VMs of ${var.cluster_name}"

  permissions {
    actions = [
      "Microsoft.Compute/*/read",
      "Microsoft.Compute/virtualMachines/powerOff/action",
      "Microsoft.Compute/virtualMachines/start/action",
    ]
  }

  assignable_scopes = azurerm_linux_virtual_machine.node[*].id
}

# each node's identity on both VMs (it fences the other one and reads its own)
resource "azurerm_role_assignment" "fence" {
  for_each           = { for pair in setproduct(range(2), range(2)) : "${pair[0]}-${pair[1]}" => pair }
  scope              = azurerm_linux_virtual_machine.node[each.value[1]].id
  role_definition_id = azurerm_role_definition.fence.role_definition_resource_id
  principal_id       = azurerm_linux_virtual_machine.node[each.value[0]].identity[0].principal_id
}
