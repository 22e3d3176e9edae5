# The four Cloud Functions (2nd gen). One source archive holds all of them: main.py
# re-exports every target and `entry_point` picks one. Each runs as its own service account
# (iam.tf) with the same settings (local.function_env).

locals {
  build_source = {
    bucket = google_storage_bucket.source.name
    object = google_storage_bucket_object.bundle.name
  }
}

# validate: an object was finalized in the models bucket. Lists the folder, decides whether
# the upload is complete, waits for it to settle, reads headers (bounded ranged reads:
# safetensors headers up to 100 MB, pickle data up to 64 MiB) and records the verdict.
resource "google_cloudfunctions2_function" "validate" {
  name        = "modeldrop-validate"
  location    = var.region
  description = "modeldrop: validate uploaded model folders"

  build_config {
    runtime         = var.python_runtime
    entry_point     = "validate"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = local.build_source.bucket
        object = local.build_source.object
      }
    }
  }

  service_config {
    available_memory                 = "2Gi"
    available_cpu                    = "1"
    timeout_seconds                  = 540 # the longest an event-driven function may run
    max_instance_count               = 20
    max_instance_request_concurrency = 4 # events of one upload mostly wait out the settle window
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function["validate"].email
    environment_variables            = local.function_env
  }

  event_trigger {
    trigger_region        = var.region # the bucket's region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY" # a failed attempt (e.g. Firestore unavailable) is redelivered
    service_account_email = google_service_account.trigger.email

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.models.name
    }
  }

  depends_on = [
    google_project_iam_member.trigger_receives_events,
    google_project_iam_member.gcs_agent_publishes,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

# deploy: a deployment id arrived on modeldrop-validated. Claims the record and starts the
# Model Garden deploy (a long-running operation: the call itself returns in seconds).
# Deployed without an event trigger: the push subscription in pubsub.tf delivers to it, with
# retries and a dead-letter topic; only that subscription's identity may invoke it.
resource "google_cloudfunctions2_function" "deploy" {
  name        = "modeldrop-deploy"
  location    = var.region
  description = "modeldrop: start Vertex AI deploys of validated models"

  build_config {
    runtime         = var.python_runtime
    entry_point     = "deploy"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = local.build_source.bucket
        object = local.build_source.object
      }
    }
  }

  service_config {
    available_memory                 = "1Gi" # the Vertex AI SDK is imported here
    available_cpu                    = "1"
    timeout_seconds                  = 300 # below the subscription's 600 s ack deadline
    max_instance_count               = 10
    max_instance_request_concurrency = 4
    ingress_settings                 = "ALLOW_INTERNAL_ONLY" # Pub/Sub push counts as internal
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function["deploy"].email
    environment_variables            = local.function_env
  }

  depends_on = [
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
    google_compute_subnetwork.psc, # private deployments take their addresses there
  ]
}

# reconcile: the tick (every minute). Polls deploy/undeploy operations, finishes stalled
# validations and hand-overs, republishes unconfirmed notifications.
resource "google_cloudfunctions2_function" "reconcile" {
  name        = "modeldrop-reconcile"
  location    = var.region
  description = "modeldrop: move deployments along (every minute)"

  build_config {
    runtime         = var.python_runtime
    entry_point     = "reconcile"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = local.build_source.bucket
        object = local.build_source.object
      }
    }
  }

  service_config {
    available_memory                 = "1Gi" # may start a deploy (Vertex AI SDK) or re-validate
    available_cpu                    = "1"
    timeout_seconds                  = 300
    max_instance_count               = 2 # ticks may overlap; the store's preconditions keep it safe
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function["reconcile"].email
    environment_variables            = local.function_env
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.tick.id
    retry_policy          = "RETRY_POLICY_DO_NOT_RETRY" # the next tick comes in a minute
    service_account_email = google_service_account.trigger.email
  }

  depends_on = [
    google_project_iam_member.trigger_receives_events,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
    google_compute_subnetwork.psc, # private deployments take their addresses there
  ]
}

# api: HTTP. Status of every deployment and a proxy to the deployed endpoints (unary and
# streamed). Reachable from the internet but private: only `invoker_members` hold
# roles/run.invoker on it (iam.tf); callers send an identity token. With the private path it
# reaches private endpoints through `psc_network` (Direct VPC egress, below).
resource "google_cloudfunctions2_function" "api" {
  name        = "modeldrop-api"
  location    = var.region
  description = "modeldrop: deployment status and model queries (private)"

  build_config {
    runtime         = var.python_runtime
    entry_point     = "api"
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = local.build_source.bucket
        object = local.build_source.object
      }
    }
  }

  service_config {
    available_memory                 = "512Mi"
    available_cpu                    = "1"
    timeout_seconds                  = 600 # longer than upstream_timeout_seconds: streamed answers
    max_instance_count               = 20
    max_instance_request_concurrency = 40 # mostly waiting on the model: I/O bound
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function["api"].email
    environment_variables            = local.function_env

    dynamic "secret_environment_variables" {
      for_each = local.api_token_secrets
      content {
        key        = secret_environment_variables.value.key
        project_id = var.project
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }

    # The private path (network.tf): queries to private endpoints go to their internal
    # addresses in `psc_network`, so the api alone gets an interface there (Direct VPC egress,
    # no Serverless VPC Access connector). Private ranges only: Google APIs, Firestore and
    # public endpoints keep their usual path. Absent when `psc_network` is null.
    # Provider docs relied on (hashicorp/google, resources/cloudfunctions2_function, argument
    # reference): service_config.direct_vpc_network_interface {network, subnetwork, tags} and
    # service_config.direct_vpc_egress (VPC_EGRESS_PRIVATE_RANGES_ONLY | VPC_EGRESS_ALL_TRAFFIC),
    # GA since provider 7.21.0 (CHANGELOG, PR #26142; one of these or vpc_connector, 7.26.0
    # #26567). Google: "Configure Direct VPC egress for 2nd gen functions"
    # (cloud.google.com/functions/docs/running/direct-vpc); the subnetwork must be /26 or
    # larger (cloud.google.com/run/docs/configuring/vpc-direct-vpc, IP address allocation).
    dynamic "direct_vpc_network_interface" {
      for_each = local.api_vpc_egress
      content {
        network    = direct_vpc_network_interface.value.network
        subnetwork = direct_vpc_network_interface.value.subnetwork
        tags       = direct_vpc_network_interface.value.tags
      }
    }
    direct_vpc_egress = local.psc_enabled ? "VPC_EGRESS_PRIVATE_RANGES_ONLY" : null
  }

  depends_on = [
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
    google_secret_manager_secret_iam_member.api_reads_tokens,
    google_compute_subnetwork.psc,
  ]
}
