# Outputs only (no provider): what a team's own Azure Terraform publishes about its two VMs,
# named as they like; hacloud finds them through a --tf-map.
variable "vms" {
  description = "The two VMs: name, private IP and zone of each."
  type        = list(object({ name = string, ip = string, zone = string }))
}

output "db_vm_names" {
  value = [for vm in var.vms : vm.name]
}

output "db_vm_ips" {
  value = { for vm in var.vms : vm.name => vm.ip }
}

output "db_vm_zones" {
  value = [for vm in var.vms : vm.zone]
}
