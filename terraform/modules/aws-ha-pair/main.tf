# Two EC2 instances in two zones with one encrypted EBS volume per node and volume, a security
# group for corosync/DRBD between the nodes, an instance profile with exactly the permissions
# fence_aws and aws-vpc-move-ip call, and the overlay route. Infrastructure only: hacloud
# configures the cluster (`hacloud up --from-terraform .`).

data "aws_subnet" "node" {
  count = 2
  id    = var.subnet_ids[count.index]
}

data "aws_vpc" "this" {
  id = data.aws_subnet.node[0].vpc_id
}

locals {
  tags = merge(var.tags, { "hacloud:cluster" = var.cluster_name })
  # one entry per (node, volume); volume v of node n is attached as /dev/sd(f+v)
  disks = {
    for pair in setproduct(range(2), range(length(var.volumes))) :
    "${var.node_names[pair[0]]}/${var.volumes[pair[1]].name}" => {
      node   = pair[0]
      volume = pair[1]
      device = "/dev/sd${substr("fghijklm", pair[1], 1)}"
    }
  }
  region     = split(":", aws_instance.node[0].arn)[3]
  arn_prefix = join(":", slice(split(":", aws_instance.node[0].arn), 0, 5))
}

resource "aws_security_group" "cluster" {
  name        = "hacloud-${var.cluster_name}"
  description = "hacloud ${var.cluster_name}: corosync and DRBD between the nodes, SSH from admin_cidr"
  vpc_id      = data.aws_vpc.this.id
  tags        = merge(local.tags, { Name = "hacloud-${var.cluster_name}" })
}

resource "aws_vpc_security_group_ingress_rule" "corosync" {
  security_group_id            = aws_security_group.cluster.id
  description                  = "corosync knet links between the nodes"
  ip_protocol                  = "udp"
  from_port                    = var.corosync_port
  to_port                      = var.corosync_port + 1
  referenced_security_group_id = aws_security_group.cluster.id
}

resource "aws_vpc_security_group_ingress_rule" "drbd" {
  security_group_id            = aws_security_group.cluster.id
  description                  = "DRBD replication between the nodes, one port per volume"
  ip_protocol                  = "tcp"
  from_port                    = var.drbd_base_port
  to_port                      = var.drbd_base_port + length(var.volumes) - 1
  referenced_security_group_id = aws_security_group.cluster.id
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  security_group_id = aws_security_group.cluster.id
  description       = "SSH from where hacloud runs"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.admin_cidr
}

resource "aws_vpc_security_group_ingress_rule" "service" {
  count             = var.client_cidr == null ? 0 : 1
  security_group_id = aws_security_group.cluster.id
  description       = "the service behind the virtual IP"
  ip_protocol       = "tcp"
  from_port         = var.service_port
  to_port           = var.service_port
  cidr_ipv4         = var.client_cidr
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.cluster.id
  description       = "outbound: the EC2 API for the agents, package mirrors"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_iam_role" "agents" {
  name = "hacloud-${var.cluster_name}"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_instance_profile" "agents" {
  name = "hacloud-${var.cluster_name}"
  role = aws_iam_role.agents.name
  tags = local.tags
}

# Exactly what the agents call (the same policy `hacloud up --provider aws` writes; see
# providers/hacloud_aws/iam.py): Describe* cannot be scoped to resources.
resource "aws_iam_role_policy" "agents" {
  name = "hacloud-agents"
  role = aws_iam_role.agents.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "DescribeCannotBeScoped"
        Effect   = "Allow"
        Action   = ["ec2:DescribeInstances", "ec2:DescribeRouteTables"]
        Resource = "*"
      },
      {
        Sid      = "FenceAwsPowerOnlyTheClusterNodes"
        Effect   = "Allow"
        Action   = ["ec2:StartInstances", "ec2:StopInstances"]
        Resource = aws_instance.node[*].arn
      },
      {
        Sid      = "MoveIpOnlyTheListedRouteTables"
        Effect   = "Allow"
        Action   = ["ec2:ReplaceRoute"]
        Resource = [for r in var.route_table_ids : "${local.arn_prefix}:route-table/${r}"]
      },
    ]
  })
}

resource "aws_instance" "node" {
  count                  = 2
  ami                    = var.ami
  instance_type          = var.instance_type
  subnet_id              = var.subnet_ids[count.index]
  key_name               = var.key_name
  vpc_security_group_ids = [aws_security_group.cluster.id]
  iam_instance_profile   = aws_iam_instance_profile.agents.name
  # the overlay IP is not the instance's own address: the VPC must deliver it anyway
  source_dest_check = false
  ebs_optimized     = true
  monitoring        = true

  # IMDSv2 only; fence_aws and the AWS CLI read credentials from it
  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  root_block_device {
    encrypted  = true
    kms_key_id = var.kms_key_id
  }

  tags = merge(local.tags, { Name = var.node_names[count.index], "hacloud:node" = var.node_names[count.index] })
}

resource "aws_ebs_volume" "data" {
  for_each          = local.disks
  availability_zone = data.aws_subnet.node[each.value.node].availability_zone
  size              = var.volumes[each.value.volume].size_gib
  type              = var.volume_type
  encrypted         = true
  kms_key_id        = var.kms_key_id
  tags = merge(local.tags, {
    Name             = "hacloud-${var.cluster_name}-${each.key}"
    "hacloud:node"   = var.node_names[each.value.node]
    "hacloud:volume" = var.volumes[each.value.volume].name
  })
}

resource "aws_volume_attachment" "data" {
  for_each    = local.disks
  device_name = each.value.device
  volume_id   = aws_ebs_volume.data[each.key].id
  instance_id = aws_instance.node[each.value.node].id
}

resource "aws_route" "overlay" {
  for_each               = toset(var.route_table_ids)
  route_table_id         = each.value
  destination_cidr_block = "${var.overlay_ip}/32"
  network_interface_id   = aws_instance.node[0].primary_network_interface_id

  # aws-vpc-move-ip points the route at the active node on every failover: that is the
  # cluster's state, not drift to undo.
  lifecycle {
    ignore_changes = [network_interface_id]
  }
}
