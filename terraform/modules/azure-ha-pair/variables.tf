variable "cluster_name" {
  description = "Cluster name: hacloud's cluster.name (resource names, tags, the inventory's cluster)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.cluster_name))
    error_message = "Invalid cluster_name, expected 2-32 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "node_names" {
  description = "The two node names, in order: hacloud's nodes[].name; also the VM and host names (fence_azure_arm addresses VMs by name)."
  type        = list(string)
  default     = ["node1", "node2"]
  validation {
    condition     = length(var.node_names) == 2 && length(distinct(var.node_names)) == 2
    error_message = "Invalid node_names, expected exactly two different names."
  }
}

variable "resource_group_name" {
  description = "Existing resource group that holds the cluster."
  type        = string
}

variable "location" {
  description = "Azure region, e.g. westeurope."
  type        = string
}

variable "zones" {
  description = "Two availability zones, one per node (a zone outage must leave one node)."
  type        = list(string)
  default     = ["1", "2"]
  validation {
    condition     = length(var.zones) == 2 && length(distinct(var.zones)) == 2
    error_message = "Invalid zones, expected exactly two different zones."
  }
}

variable "subnet_id" {
  description = "Resource id of the subnet both NICs and the load balancer frontend use."
  type        = string
}

variable "vip_address" {
  description = "The virtual IP: a free static address in the subnet, the internal load balancer's frontend."
  type        = string
  validation {
    condition     = can(cidrhost("${var.vip_address}/32", 0))
    error_message = "Invalid vip_address, expected an IPv4 address in the subnet."
  }
}

variable "probe_port" {
  description = "Health probe port the azure-lb agent answers on the active node (hacloud's vip.probe_port)."
  type        = number
  default     = 61000
}

variable "vm_size" {
  description = "VM size."
  type        = string
  default     = "Standard_D2s_v5"
}

variable "image" {
  description = "Marketplace image: publisher, offer, sku and version."
  type = object({
    publisher = string
    offer     = string
    sku       = string
    version   = string
  })
  default = {
    publisher = "Debian"
    offer     = "debian-12"
    sku       = "12-gen2"
    version   = "latest"
  }
}

variable "admin_user" {
  description = "Admin user on the VMs (password login is off)."
  type        = string
  default     = "azureuser"
}

variable "ssh_public_key" {
  description = "OpenSSH public key for admin_user."
  type        = string
}

variable "volumes" {
  description = "Data disks per node: DRBD resource name and size in GiB (hacloud's volumes[]); volume N is LUN N."
  type = list(object({
    name     = string
    size_gib = number
  }))
  default = [{ name = "r0", size_gib = 100 }]
  validation {
    condition     = length(var.volumes) >= 1 && length(var.volumes) <= 8 && alltrue([for v in var.volumes : v.size_gib >= 1])
    error_message = "Invalid volumes, expected 1 to 8 volumes, each at least 1 GiB."
  }
}

variable "disk_sku" {
  description = "Managed disk SKU for the data disks."
  type        = string
  default     = "Premium_LRS"
  validation {
    condition     = contains(["Premium_LRS", "PremiumV2_LRS", "StandardSSD_LRS", "UltraSSD_LRS"], var.disk_sku)
    error_message = "Invalid disk_sku, expected Premium_LRS, PremiumV2_LRS, StandardSSD_LRS or UltraSSD_LRS."
  }
}

variable "disk_encryption_set_id" {
  description = "Disk encryption set (customer-managed key) for OS and data disks (null: platform-managed keys)."
  type        = string
  default     = null
}

variable "admin_cidr" {
  description = "CIDR allowed to SSH to the nodes (where hacloud runs)."
  type        = string
  validation {
    condition     = can(cidrnetmask(var.admin_cidr)) && var.admin_cidr != "0.0.0.0/0"
    error_message = "Invalid admin_cidr, expected a CIDR other than 0.0.0.0/0."
  }
}

variable "corosync_port" {
  description = "Corosync knet UDP port of link 0."
  type        = number
  default     = 5405
}

variable "drbd_base_port" {
  description = "DRBD TCP port of the first volume; volume N uses base + N."
  type        = number
  default     = 7789
}

variable "tags" {
  description = "Extra tags for everything the module creates."
  type        = map(string)
  default     = {}
}
