variable "cluster_name" {
  description = "Cluster name: hacloud's cluster.name (tags, IAM names, the inventory's cluster)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.cluster_name))
    error_message = "Invalid cluster_name, expected 2-32 lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "node_names" {
  description = "The two node (host) names, in order: hacloud's nodes[].name."
  type        = list(string)
  default     = ["node1", "node2"]
  validation {
    condition     = length(var.node_names) == 2 && length(distinct(var.node_names)) == 2
    error_message = "Invalid node_names, expected exactly two different names (hacloud builds two-node pairs)."
  }
}

variable "subnet_ids" {
  description = "Two subnet ids, one per node, in two availability zones (a zone outage must leave one node)."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) == 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "Invalid subnet_ids, expected exactly two subnet ids (subnet-...)."
  }
}

variable "ami" {
  description = "AMI id of an HA-capable image (RHEL for SAP/HA, SLES for SAP, or Debian/Ubuntu with the HA packages)."
  type        = string
  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami))
    error_message = "Invalid ami, expected an AMI id (ami-...)."
  }
}

variable "instance_type" {
  description = "EC2 instance type; a Nitro type, so EBS volumes appear as NVMe disks named by volume id."
  type        = string
  default     = "m6i.large"
}

variable "key_name" {
  description = "EC2 key pair for SSH (null: none, e.g. when SSH keys come from user data or SSM)."
  type        = string
  default     = null
}

variable "volumes" {
  description = "Data volumes per node: DRBD resource name and size in GiB (hacloud's volumes[])."
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

variable "volume_type" {
  description = "EBS volume type for the data volumes (gp3: baseline 3000 IOPS independent of size)."
  type        = string
  default     = "gp3"
  validation {
    condition     = contains(["gp3", "io2", "io1", "gp2"], var.volume_type)
    error_message = "Invalid volume_type, expected one of gp3, io2, io1, gp2."
  }
}

variable "kms_key_id" {
  description = "ARN of the KMS key that encrypts the disks (null: the account's default EBS key)."
  type        = string
  default     = null
}

variable "overlay_ip" {
  description = "The virtual IP: an address outside the VPC CIDR, routed as a /32 to the active node (aws-vpc-move-ip)."
  type        = string
  validation {
    condition     = can(cidrhost("${var.overlay_ip}/32", 0))
    error_message = "Invalid overlay_ip, expected an IPv4 address, e.g. 192.168.100.10."
  }
}

variable "route_table_ids" {
  description = "Every route table whose clients must reach the overlay IP; the agent rewrites the route in each."
  type        = list(string)
  validation {
    condition     = length(var.route_table_ids) >= 1 && alltrue([for r in var.route_table_ids : can(regex("^rtb-[0-9a-f]{8,17}$", r))])
    error_message = "Invalid route_table_ids, expected at least one route table id (rtb-...)."
  }
}

variable "admin_cidr" {
  description = "CIDR allowed to SSH to the nodes (where hacloud runs)."
  type        = string
  validation {
    condition     = can(cidrnetmask(var.admin_cidr)) && var.admin_cidr != "0.0.0.0/0"
    error_message = "Invalid admin_cidr, expected a CIDR other than 0.0.0.0/0 (SSH must not be open to the internet)."
  }
}

variable "client_cidr" {
  description = "CIDR of the service's clients, allowed to reach service_port (null: no client rule)."
  type        = string
  default     = null
}

variable "service_port" {
  description = "TCP port of the service behind the VIP (8080: hacloud's demo service)."
  type        = number
  default     = 8080
}

variable "corosync_port" {
  description = "Corosync knet UDP port of link 0 (hacloud's corosync.cluster_port)."
  type        = number
  default     = 5405
}

variable "drbd_base_port" {
  description = "DRBD TCP port of the first volume; volume N uses base + N (hacloud's default 7789)."
  type        = number
  default     = 7789
}

variable "ssh_address" {
  description = "Which address the inventory gives hacloud for SSH: private (hacloud inside the VPC or via a jump host) or public."
  type        = string
  default     = "private"
  validation {
    condition     = contains(["private", "public"], var.ssh_address)
    error_message = "Invalid ssh_address, expected private or public."
  }
}

variable "tags" {
  description = "Extra tags for everything the module creates."
  type        = map(string)
  default     = {}
}
