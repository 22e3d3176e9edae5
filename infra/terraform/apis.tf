# The Google APIs modeldrop uses. Left enabled on `terraform destroy` (other things in the
# project may use them too).

locals {
  services = [
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
}

resource "google_project_service" "enabled" {
  for_each = toset(local.services)

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}
