# The AWS module as a team would call it (applied with the stand-in provider, tests/tfstandin).
provider "aws" {
  region = "eu-central-1"
}

module "pair" {
  source          = "../modules/aws-ha-pair"
  cluster_name    = "prod-db"
  ami             = "ami-0123456789abcdef0"
  subnet_ids      = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]
  route_table_ids = ["rtb-0aaaaaaaaaaaaaaa1", "rtb-0aaaaaaaaaaaaaaa2"]
  overlay_ip      = "198.51.100.10"
  admin_cidr      = "192.0.2.0/24"
}

output "hacloud_inventory" {
  value = module.pair.hacloud_inventory
}
