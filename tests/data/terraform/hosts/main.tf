# Servers a team's Terraform knows (here: the lab's guests), published as plain outputs that
# a --tf-map names. No provider: it applies offline.
variable "hosts" {
  description = "Node name -> its address and data disk."
  type = map(object({
    address = string
    links   = list(string)
    disk    = string
  }))
}

output "servers" {
  value = { for name, h in var.hosts : name => { hostname = name, ip = h.address, links = h.links, data_disk = h.disk } }
}
