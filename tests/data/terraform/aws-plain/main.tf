# Existing Terraform that does not use hacloud's module: three instances (a pair and a
# bastion), one data volume each, a VPC, two subnets and a route table.
provider "aws" {
  region = "eu-central-1"
}

resource "aws_vpc" "main" {
  cidr_block = "192.0.2.0/24"
}

resource "aws_subnet" "a" {
  vpc_id            = aws_vpc.main.id
  cidr_block        = "192.0.2.0/26"
  availability_zone = "eu-central-1a"
}

resource "aws_subnet" "b" {
  vpc_id            = aws_vpc.main.id
  cidr_block        = "192.0.2.64/26"
  availability_zone = "eu-central-1b"
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.main.id
}

resource "aws_instance" "db" {
  count         = 2
  ami           = "ami-0123456789abcdef0"
  instance_type = "m6i.large"
  subnet_id     = "subnet-0aaaaaaaaaaaaaaa${count.index + 1}"
  tags          = { Name = "db-${count.index}" }
}

resource "aws_instance" "bastion" {
  ami           = "ami-0123456789abcdef0"
  instance_type = "t3.micro"
  subnet_id     = "subnet-0aaaaaaaaaaaaaaa1"
  tags          = { Name = "bastion" }
}

resource "aws_ebs_volume" "data" {
  count             = 3
  availability_zone = "eu-central-1${count.index == 1 ? "b" : "a"}"
  size              = 50
}

resource "aws_volume_attachment" "data" {
  count       = 3
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data[count.index].id
  instance_id = count.index < 2 ? aws_instance.db[count.index].id : aws_instance.bastion.id
}
