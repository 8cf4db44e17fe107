# The inventory hacloud reads with `hacloud up --from-terraform DIR` (docs/inventory.md, JSON
# Schema docs/inventory.schema.json). Change schema_version only with hacloud's format.
output "hacloud_inventory" {
  description = "hacloud inventory (schema version 1): the two nodes, their data devices and network facts."
  value = {
    schema_version = 1
    cluster        = var.cluster_name
    provider       = "aws"
    nodes = [
      for i, inst in aws_instance.node : {
        name                = var.node_names[i]
        id                  = inst.id
        ssh_address         = var.ssh_address == "public" ? inst.public_ip : inst.private_ip
        links               = [inst.private_ip]
        replication_address = inst.private_ip
        # Nitro instances name an EBS disk by its volume id without the dash (NVMe serial)
        volumes = {
          for v in var.volumes :
          v.name => "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${replace(aws_volume_attachment.data["${var.node_names[i]}/${v.name}"].volume_id, "-", "")}"
        }
        zone        = inst.availability_zone
        bmc_address = null
        placeholder = false
        facts       = { drbd = null, pacemaker = null, os_family = null }
        extra       = {}
      }
    ]
    network = {
      vpc_cidr     = data.aws_vpc.this.cidr_block
      route_tables = var.route_table_ids
      extra        = { security_group = aws_security_group.cluster.id, region = local.region }
    }
  }
}

output "instance_ids" {
  description = "The two instance ids, in node order."
  value       = aws_instance.node[*].id
}

output "private_ips" {
  description = "The two private addresses, in node order."
  value       = aws_instance.node[*].private_ip
}
