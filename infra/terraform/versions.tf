# Terraform and provider versions, and the provider configuration.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Every resource and attribute used here exists in the 6.x, 7.x and 8.x providers.
      version = ">= 6.0, < 9.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region

  default_labels = local.labels
}

# The project number names the Google-managed service agents (Pub/Sub, Vertex AI).
data "google_project" "this" {
  project_id = var.project
}
