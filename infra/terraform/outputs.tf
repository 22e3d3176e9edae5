output "api_url" {
  description = "Base URL of the api function (private: send an identity token)."
  value       = google_cloudfunctions2_function.api.service_config[0].uri
}

output "status_url" {
  description = "Lists every deployment and its state (GET, identity token)."
  value       = "${google_cloudfunctions2_function.api.service_config[0].uri}/v1/deployments"
}

output "openai_base_url" {
  description = "base_url for OpenAI-compatible clients."
  value       = "${google_cloudfunctions2_function.api.service_config[0].uri}/v1"
}

output "bucket" {
  description = "The bucket model folders are uploaded to."
  value       = google_storage_bucket.models.name
}

output "models_uri" {
  description = "Upload each model folder under this prefix: <models_uri><model name>/."
  value       = "gs://${google_storage_bucket.models.name}/${var.root_prefix}"
}

output "topics" {
  description = "Pub/Sub topics: validated (validate -> deploy), events (notifications: subscribe here), tick (reconcile), dead_letter (undeliverable deploy messages)."
  value = {
    validated   = google_pubsub_topic.validated.name
    events      = google_pubsub_topic.events.name
    tick        = google_pubsub_topic.tick.name
    dead_letter = google_pubsub_topic.dead_letter.name
  }
}

output "dead_letter_subscription" {
  description = "Pull subscription holding deploy messages that exhausted their deliveries."
  value       = google_pubsub_subscription.dead_letter.name
}

output "functions" {
  description = "Function names (for `gcloud functions logs read NAME --region REGION`)."
  value = {
    validate  = google_cloudfunctions2_function.validate.name
    deploy    = google_cloudfunctions2_function.deploy.name
    reconcile = google_cloudfunctions2_function.reconcile.name
    api       = google_cloudfunctions2_function.api.name
  }
}

output "service_accounts" {
  description = "Runtime identities of the functions."
  value       = { for fn, sa in google_service_account.function : fn => sa.email }
}

output "private_path" {
  description = "The private path (Private Service Connect), null without `psc_network`: the VPC network and subnetwork private endpoints get their internal addresses in, the regions it spans, and the network tag of the api function's Direct VPC egress (for firewall rules)."
  value = local.psc_enabled ? {
    network             = var.psc_network
    subnetwork          = var.psc_subnetwork
    regions             = local.psc_regions
    created_subnetworks = { for region, subnet in google_compute_subnetwork.psc : region => subnet.ip_cidr_range }
    api_network_tag     = local.api_network_tag
  } : null
}
