# The inventory hacloud reads with `hacloud up --from-terraform DIR` (docs/inventory.md, JSON
# Schema docs/inventory.schema.json). Change schema_version only with hacloud's format.
output "hacloud_inventory" {
  description = "hacloud inventory (schema version 1): the two nodes, their data devices and network facts."
  value = {
    schema_version = 1
    cluster        = var.cluster_name
    provider       = "azure"
    nodes = [
      for i, vm in azurerm_linux_virtual_machine.node : {
        name                = var.node_names[i]
        id                  = vm.name
        ssh_address         = azurerm_network_interface.node[i].private_ip_address
        links               = [azurerm_network_interface.node[i].private_ip_address]
        replication_address = azurerm_network_interface.node[i].private_ip_address
        # volume N is attached at LUN N; Azure's udev rules publish this path
        volumes     = { for v, vol in var.volumes : vol.name => "/dev/disk/azure/scsi1/lun${azurerm_virtual_machine_data_disk_attachment.data["${var.node_names[i]}-${vol.name}"].lun}" }
        zone        = vm.zone
        bmc_address = null
        placeholder = false
        facts       = { drbd = null, pacemaker = null, os_family = null }
        extra       = {}
      }
    ]
    network = {
      vpc_cidr     = null
      route_tables = []
      extra        = { lb_frontend = azurerm_lb.vip.frontend_ip_configuration[0].private_ip_address }
    }
  }
}

output "vm_names" {
  description = "The two VM names, in node order."
  value       = azurerm_linux_virtual_machine.node[*].name
}
