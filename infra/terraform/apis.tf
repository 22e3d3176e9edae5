# The Google APIs modeldrop uses. Left enabled on `terraform destroy` (other things in the
# project may use them too).

locals {
  always_enabled_services = [
    "aiplatform.googleapis.com",           # Vertex AI: Model Garden deploys, endpoints
    "artifactregistry.googleapis.com",     # function images
    "cloudbuild.googleapis.com",           # function builds
    "cloudfunctions.googleapis.com",       # Cloud Functions (2nd gen)
    "cloudresourcemanager.googleapis.com", # project IAM bindings
    "cloudscheduler.googleapis.com",       # the reconcile tick
    "eventarc.googleapis.com",             # storage and Pub/Sub triggers
    "firestore.googleapis.com",            # deployment records
    "iam.googleapis.com",                  # service accounts
    "logging.googleapis.com",              # function and build logs; serving logs are read
    "pubsub.googleapis.com",               # topics and subscriptions
    "run.googleapis.com",                  # 2nd gen functions run as Cloud Run services
    "secretmanager.googleapis.com",        # optional api tokens
    "storage.googleapis.com",              # buckets
  ]
  # The private path (network.tf), when `psc_network` is set: subnetworks, internal addresses
  # and forwarding rules. The api's Direct VPC egress needs no Serverless VPC Access API.
  private_path_services = ["compute.googleapis.com"]

  services = concat(local.always_enabled_services, var.psc_network == null ? [] : local.private_path_services)
}

resource "google_project_service" "enabled" {
  for_each = toset(local.services)

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}
