# Outputs only (no provider): plain outputs a --tf-map names, a sensitive one, and
# inventories a newer module or a broken one would publish.
variable "inventory" {
  description = "A hacloud inventory as the AWS module publishes it."
  type        = any
}

output "db_ids" {
  value = [for n in var.inventory.nodes : n.id]
}

output "db_private_ips" {
  value = [for n in var.inventory.nodes : n.ssh_address]
}

output "db_zones" {
  value = { for n in var.inventory.nodes : n.name => n.zone }
}

output "db_volume_ids" {
  value = [for n in var.inventory.nodes : "vol-${substr(split("Store_vol", n.volumes["r0"])[1], 0, 17)}"]
}

output "db_password" {
  value     = "correct-horse-battery-staple"
  sensitive = true
}

variable "variant" {
  description = "plain: no inventory output; future: schema version 2; broken: the nodes lack `id`."
  type        = string
  default     = "plain"
}

locals {
  future = merge(var.inventory, { schema_version = 2 })
  broken = merge(var.inventory, {
    nodes = [for n in var.inventory.nodes : { for k, v in n : k => v if k != "id" }]
  })
}

# a null output is not stored: "plain" publishes no hacloud_inventory at all
output "hacloud_inventory" {
  value     = var.variant == "plain" ? null : jsondecode(var.variant == "future" ? jsonencode(local.future) : jsonencode(local.broken))
  sensitive = true
}
