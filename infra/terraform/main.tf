# modeldrop on Google Cloud: names and the settings every function reads.
#
#   gs://BUCKET/<root_prefix><name>/...  --finalize (Eventarc)-->  validate
#   validate  --modeldrop-validated (push subscription, retries, dead letter)-->  deploy
#   Cloud Scheduler  --modeldrop-tick (Eventarc)-->  reconcile
#   api (HTTP, private)   every state change  -->  modeldrop-events
#
# Files: apis.tf (APIs), storage.tf (buckets, bundle), pubsub.tf (topics, subscriptions),
# firestore.tf (database, indexes), functions.tf, iam.tf (service accounts, roles),
# network.tf (the optional private path: Private Service Connect), scheduler.tf, outputs.tf.

locals {
  labels = merge({ app = "modeldrop" }, var.labels)

  vertex_region      = coalesce(var.vertex_region, var.region)
  firestore_location = coalesce(var.firestore_location, var.region)
  models_bucket      = coalesce(var.bucket, "${var.project}-modeldrop-models")
  source_bucket      = "${var.project}-modeldrop-source"
  bundle_path        = coalesce(var.bundle_path, "${path.module}/../../build/modeldrop-functions.zip")

  # Topic names are the code's defaults (modeldrop.settings, modeldrop.local.stack).
  topics = {
    validated   = "modeldrop-validated"
    events      = "modeldrop-events"
    tick        = "modeldrop-tick"
    dead_letter = "modeldrop-validated-dead-letter"
  }
  # The deploy function's subscription (the local stack names its own the same way).
  deploy_subscription      = "modeldrop-deploy"
  dead_letter_subscription = "modeldrop-validated-dead-letter"

  # Every setting the code reads (modeldrop.settings.SETTINGS), the same for all four
  # functions. MODELDROP_API_TOKENS is not here: it comes from Secret Manager, to the api
  # function only (functions.tf). tests/infra checks this map against SETTINGS.
  function_env = {
    GOOGLE_CLOUD_PROJECT      = var.project
    MODELDROP_REGION          = local.vertex_region
    MODELDROP_REGIONS         = join(",", var.vertex_regions) # "": MODELDROP_REGION alone
    MODELDROP_BUCKET          = google_storage_bucket.models.name
    MODELDROP_ROOT_PREFIX     = var.root_prefix
    MODELDROP_COMPLETION_MODE = var.completion_mode
    MODELDROP_MARKER          = var.marker_name
    MODELDROP_SETTLE_SECONDS  = tostring(var.settle_seconds)
    MODELDROP_BASE_POLICY     = var.base_model_policy
    MODELDROP_VALIDATED_TOPIC = google_pubsub_topic.validated.name
    MODELDROP_EVENTS_TOPIC    = google_pubsub_topic.events.name
    MODELDROP_COLLECTION      = var.firestore_collection
    MODELDROP_LEASE_SECONDS   = tostring(var.lease_seconds)
    # Empty: the regional endpoint <region>-aiplatform.googleapis.com (overrides are for the
    # local emulator, as are anonymous credentials).
    MODELDROP_VERTEX_API_ENDPOINT   = ""
    MODELDROP_VERTEX_TRANSPORT      = "rest"
    MODELDROP_VERTEX_ANONYMOUS      = "false"
    MODELDROP_LOGGING_API_ENDPOINT  = "https://logging.googleapis.com" # serving logs (the api)
    MODELDROP_UPSTREAM_TIMEOUT      = tostring(var.upstream_timeout_seconds)
    MODELDROP_MAX_BODY_BYTES        = tostring(var.max_body_bytes)
    MODELDROP_RECORD_CACHE_SECONDS  = tostring(var.record_cache_seconds)
    MODELDROP_PUBLISH_TIMEOUT       = tostring(var.publish_timeout_seconds)
    MODELDROP_API_BASE_URL          = var.api_base_url
    MODELDROP_MAX_ATTEMPTS          = tostring(var.max_attempts)
    MODELDROP_MAX_HOURLY_USD        = var.max_hourly_usd == null ? "" : tostring(var.max_hourly_usd)
    MODELDROP_RETIRE_AFTER_SECONDS  = tostring(var.retire_after_seconds)
    MODELDROP_IDLE_UNDEPLOY_SECONDS = tostring(var.idle_undeploy_seconds)
    # Deployment defaults: a JSON machine spec ("" = recommend from the weights) and a
    # comma-separated PSC project allowlist ("" = dedicated public endpoints).
    MODELDROP_DEFAULT_MACHINE_SPEC  = var.default_machine_spec == null ? "" : jsonencode(var.default_machine_spec)
    MODELDROP_PSC_PROJECT_ALLOWLIST = join(",", var.psc_project_allowlist)
    # The private path (network.tf; "" = none): the VPC network and the subnetwork (same name
    # in every region) the endpoints' addresses and forwarding rules are created in, through
    # the Compute Engine API.
    MODELDROP_PSC_NETWORK          = local.psc_enabled ? var.psc_network : ""
    MODELDROP_PSC_SUBNETWORK       = local.psc_enabled && var.psc_subnetwork != null ? var.psc_subnetwork : ""
    MODELDROP_COMPUTE_API_ENDPOINT = "https://compute.googleapis.com"
    MODELDROP_PSC_PORT             = "443" # queried over HTTPS: https://<address>/v1beta1/...
    MODELDROP_PSC_CA_CERT          = var.psc_ca_certificate
  }

  # The api tokens, when a secret is named: the api function gets them as
  # MODELDROP_API_TOKENS (secret_environment_variables), never as plain text.
  api_token_secrets = var.api_tokens_secret_id == null ? [] : [{
    key     = "MODELDROP_API_TOKENS"
    secret  = var.api_tokens_secret_id
    version = var.api_tokens_secret_version
  }]
}
