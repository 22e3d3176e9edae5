# Terraform and provider versions, and the provider configuration.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Every resource and attribute used here exists in the 7.x (from 7.21.0) and 8.x
      # providers; 7.21.0 made google_cloudfunctions2_function's Direct VPC egress
      # (direct_vpc_network_interface, direct_vpc_egress) GA, which the api uses (functions.tf).
      version = ">= 7.21.0, < 9.0"
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
