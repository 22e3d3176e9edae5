# The private path (Private Service Connect), when `psc_network` is set. Nothing here when it
# is null.
#
# Per private deployment, at run time (the code, not Terraform): when its deploy operation ends,
# the deploy side (deploy, reconcile, and the api, whose status reads poll deploys too) reads the
# endpoint's service attachment, reserves an internal address in `psc_subnetwork` of the
# endpoint's region (addresses.insert, INTERNAL), points a forwarding rule in `psc_network` at
# the attachment (forwardingRules.insert) and waits until it is accepted; undeploy deletes the
# rule, then the address. Their Compute Engine permissions: the custom role in iam.tf. The api
# proxies queries to https://<address>/v1beta1/... over Direct VPC egress (functions.tf).
#
# This file: the subnetworks (created only when `create_psc_subnetwork` is true; the network is
# never created) and the rules between the psc_* variables (Terraform 1.5 validates a variable
# against itself only, so they are preconditions).

locals {
  psc_enabled = var.psc_network != null

  # A subnetwork named `psc_subnetwork` is needed in the functions' region (the api's egress)
  # and in every Vertex AI region a deployment may land in (a forwarding rule lives in its
  # endpoint's region).
  psc_regions       = local.psc_enabled ? distinct(concat([var.region, local.vertex_region], var.vertex_regions)) : []
  psc_other_regions = [for r in local.psc_regions : r if r != var.region]
  psc_missing_cidrs = [for r in local.psc_other_regions : r if !contains(keys(var.psc_subnetwork_cidrs), r)]
  psc_unused_cidrs  = [for r in keys(var.psc_subnetwork_cidrs) : r if !contains(local.psc_other_regions, r)]

  # region => range of the subnetworks Terraform creates.
  psc_subnetwork_cidrs = local.psc_enabled && var.create_psc_subnetwork ? {
    for region, cidr in merge(var.psc_subnetwork_cidrs, { (var.region) = var.psc_subnetwork_cidr }) :
    region => cidr if cidr != null && contains(local.psc_regions, region)
  } : {}

  # The api function's Direct VPC egress (functions.tf): an interface in `psc_network`, on the
  # subnetwork of `region` (the api depends on the created ones), tagged for firewall rules;
  # [] without the private path.
  api_network_tag = "modeldrop-api"
  api_vpc_egress = local.psc_enabled ? [{
    network    = var.psc_network
    subnetwork = var.psc_subnetwork
    tags       = [local.api_network_tag]
  }] : []
}

# The subnetworks, when asked for: in the existing `psc_network`, one per region above, all
# named `psc_subnetwork`. Private Google Access lets instances without external addresses on
# them reach Google APIs. A subnetwork the api's Direct VPC egress used can only be deleted 1-2
# hours after the api stops using it (Cloud Run releases its addresses late).
resource "google_compute_subnetwork" "psc" {
  for_each = local.psc_subnetwork_cidrs

  project                  = var.project
  name                     = var.psc_subnetwork
  region                   = each.key
  network                  = var.psc_network
  ip_cidr_range            = each.value
  private_ip_google_access = true
  description              = "modeldrop: internal addresses of private (Private Service Connect) endpoints${each.key == var.region ? " and the api function's Direct VPC egress" : ""}."

  depends_on = [
    google_project_service.enabled,
    terraform_data.psc_settings,
  ]
}

# The rules between the psc_* variables, checked at plan time.
resource "terraform_data" "psc_settings" {
  input = {
    network    = var.psc_network
    subnetwork = var.psc_subnetwork
    regions    = local.psc_regions
  }

  lifecycle {
    precondition {
      condition     = var.psc_network != null || (var.psc_subnetwork == null && !var.create_psc_subnetwork && var.psc_subnetwork_cidr == null && length(var.psc_subnetwork_cidrs) == 0)
      error_message = "psc_subnetwork, create_psc_subnetwork, psc_subnetwork_cidr and psc_subnetwork_cidrs belong to the private path: set psc_network (the VPC network's name) too, or unset them."
    }
    precondition {
      condition     = var.psc_network == null || var.psc_subnetwork != null
      error_message = "psc_subnetwork is required when psc_network is set: the name of the subnetwork (the same name in every region) the private endpoints' internal addresses come from."
    }
    precondition {
      condition     = !var.create_psc_subnetwork || var.psc_subnetwork_cidr != null
      error_message = "psc_subnetwork_cidr is required when create_psc_subnetwork is true: the private IPv4 range, /26 or larger, of the subnetwork created in `region` (${var.region}), e.g. \"10.10.0.0/24\"."
    }
    precondition {
      condition     = !var.create_psc_subnetwork || length(local.psc_missing_cidrs) == 0
      error_message = "psc_subnetwork_cidrs needs a range for each Vertex AI region other than `region` when create_psc_subnetwork is true; missing: ${join(", ", local.psc_missing_cidrs)}."
    }
    precondition {
      condition     = !local.psc_enabled || length(local.psc_unused_cidrs) == 0
      error_message = "psc_subnetwork_cidrs names regions that are not Vertex AI regions of this configuration other than `region` (whose range is psc_subnetwork_cidr): ${join(", ", local.psc_unused_cidrs)}."
    }
    precondition {
      condition     = var.create_psc_subnetwork || (var.psc_subnetwork_cidr == null && length(var.psc_subnetwork_cidrs) == 0)
      error_message = "psc_subnetwork_cidr and psc_subnetwork_cidrs are only used to create the subnetworks: set create_psc_subnetwork = true, or unset them when the subnetworks exist already."
    }
    precondition {
      condition     = length(distinct(values(local.psc_subnetwork_cidrs))) == length(local.psc_subnetwork_cidrs)
      error_message = "The subnetworks' ranges (psc_subnetwork_cidr, psc_subnetwork_cidrs) must differ: ranges of one VPC network may not overlap."
    }
  }
}
