# hacloud on AWS with Terraform owning the infrastructure:
#   terraform init && terraform apply
#   hacloud up --from-terraform .        (spec: hacloud.yaml next to this file)
provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-central-1"
}

variable "ami" {
  description = "AMI id of an HA-capable image."
  type        = string
}

variable "subnet_ids" {
  description = "Two private subnets in two availability zones."
  type        = list(string)
}

variable "route_table_ids" {
  description = "Route tables whose clients use the overlay IP."
  type        = list(string)
}

module "pair" {
  source          = "../../modules/aws-ha-pair"
  cluster_name    = "prod-db"
  ami             = var.ami
  subnet_ids      = var.subnet_ids
  route_table_ids = var.route_table_ids
  overlay_ip      = "192.168.100.10"
  admin_cidr      = "192.0.2.0/24"
  client_cidr     = "192.0.2.0/24"
  volumes         = [{ name = "r0", size_gib = 100 }]
}

output "hacloud_inventory" {
  description = "Read by `hacloud up --from-terraform .`."
  value       = module.pair.hacloud_inventory
}
