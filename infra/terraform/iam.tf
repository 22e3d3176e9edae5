# Service accounts and their roles: one runtime identity per function, each with only what
# its code path uses; separate identities for event delivery and for builds. No basic
# (owner/editor/viewer) role anywhere; tests/infra checks that.

locals {
  # What each function's code does (see modeldrop/service):
  #   validate  - lists and reads model folders, records verdicts, queues and notifies
  #   deploy    - claims records, calls Model Garden Deploy with the folder's gs:// URI
  #   reconcile - polls/undeploys on Vertex AI, re-validates stalled folders, re-queues
  #               lost hand-overs, republishes notifications
  #   api       - reads records, queries endpoints, undeploys on DELETE, notifies, reads
  #               the serving containers' logs (GET /v1/deployments/{id}/logs)
  # reconcile also reads the serving log of a deploy that failed (the record's error.logs).
  # psc_endpoints: with the private path (network.tf), connects a private deployment when its
  # deploy ends (internal address + forwarding rule) and disconnects it on undeploy. deploy and
  # reconcile poll deploys, and so does the api's status read; validate never touches one.
  function_access = {
    validate = {
      reads_models  = true
      topics        = ["validated", "events"]
      vertex        = false
      reads_logs    = false
      psc_endpoints = false
    }
    deploy = {
      reads_models  = true # the deploy names the folder; reading it is the caller's right
      topics        = ["events"]
      vertex        = true
      reads_logs    = false
      psc_endpoints = true
    }
    reconcile = {
      reads_models  = true
      topics        = ["validated", "events"]
      vertex        = true
      reads_logs    = true
      psc_endpoints = true
    }
    api = {
      reads_models  = false
      topics        = ["events"]
      vertex        = true
      reads_logs    = true
      psc_endpoints = true
    }
  }

  topic_grants = merge([
    for fn, access in local.function_access : {
      for topic in access.topics : "${fn}-${topic}" => { function = fn, topic = topic }
    }
  ]...)

  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# -- runtime identities ----------------------------------------------------------------------

resource "google_service_account" "function" {
  for_each = local.function_access

  account_id   = "modeldrop-${each.key}"
  display_name = "modeldrop ${each.key} function"
  description  = "Runtime identity of the modeldrop-${each.key} Cloud Function."

  depends_on = [google_project_service.enabled]
}

# Firestore: read and write documents (roles/datastore.user is the Firestore user role).
resource "google_project_iam_member" "function_firestore" {
  for_each = local.function_access

  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.function[each.key].member
}

# Vertex AI: deploy, poll operations, describe/undeploy/delete endpoints, predict.
resource "google_project_iam_member" "function_vertex" {
  for_each = { for fn, access in local.function_access : fn => access if access.vertex }

  project = var.project
  role    = "roles/aiplatform.user"
  member  = google_service_account.function[each.key].member
}

# Cloud Logging: read log entries (entries.list) of the serving containers. Read only;
# roles/logging.viewer reads the _Default bucket's logs, which is where Vertex AI writes them.
resource "google_project_iam_member" "function_reads_logs" {
  for_each = { for fn, access in local.function_access : fn => access if access.reads_logs }

  project = var.project
  role    = "roles/logging.viewer"
  member  = google_service_account.function[each.key].member
}

# Compute Engine, for the private path only (`psc_network` set): connect and disconnect private
# deployments. A custom role with exactly the calls the code makes, instead of
# roles/compute.networkAdmin or roles/compute.loadBalancerAdmin (which also hold these, with
# hundreds more):
#   addresses.insert (addressType INTERNAL, in psc_subnetwork) -> addresses.createInternal,
#                                                                  subnetworks.use
#   addresses.get (the reserved IP)                            -> addresses.get
#   forwardingRules.insert (target: the service attachment)    -> forwardingRules.create,
#                       forwardingRules.pscCreate, networks.use, addresses.use / useInternal
#   forwardingRules.get (until pscConnectionStatus is ACCEPTED) -> forwardingRules.get
#   forwardingRules.delete                                     -> forwardingRules.delete,
#                                                                  forwardingRules.pscDelete
#   addresses.delete                                           -> addresses.deleteInternal
#   regionOperations.get / wait (the inserts and deletes)      -> regionOperations.get
# Sources: Google's "Access published services through endpoints" (VPC docs,
# cloud.google.com/vpc/docs/configure-private-service-connect-services, Required permissions:
# "To create, view, and delete endpoints in your project"), less the console's *.list and the
# Service Directory and DNS permissions, which modeldrop does not need as long as its requests
# set no serviceDirectoryRegistrations and no labels; the Compute Engine REST reference's IAM
# sections (addresses.insert: create/createInternal; addresses.delete: delete/deleteInternal;
# forwardingRules.insert: create, networks.use, subnetworks.use; forwardingRules.delete:
# delete/pscDelete; regionOperations.get and .wait: regionOperations.get). Every name is in
# roles/compute.networkAdmin; compute.addresses.useInternal (the internal-address form of
# addresses.use, in roles/compute.networkUser) is added so that the insert passes whichever of
# the two Compute Engine checks for an INTERNAL address. tests/infra pins this list.
locals {
  psc_endpoint_permissions = [
    "compute.addresses.createInternal",
    "compute.addresses.deleteInternal",
    "compute.addresses.get",
    "compute.addresses.use",
    "compute.addresses.useInternal",
    "compute.forwardingRules.create",
    "compute.forwardingRules.delete",
    "compute.forwardingRules.get",
    "compute.forwardingRules.pscCreate",
    "compute.forwardingRules.pscDelete",
    "compute.networks.use",
    "compute.regionOperations.get",
    "compute.subnetworks.use",
  ]
}

resource "google_project_iam_custom_role" "psc_endpoints" {
  count = local.psc_enabled ? 1 : 0

  project     = var.project
  role_id     = "modeldropPscEndpoints"
  title       = "modeldrop private endpoints"
  description = "Connect and disconnect modeldrop's private (Private Service Connect) deployments: internal addresses and forwarding rules to their service attachments."
  permissions = local.psc_endpoint_permissions

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "function_psc_endpoints" {
  for_each = local.psc_enabled ? { for fn, access in local.function_access : fn => access if access.psc_endpoints } : {}

  project = var.project
  role    = google_project_iam_custom_role.psc_endpoints[0].name
  member  = google_service_account.function[each.key].member
}

# The models bucket: list folders and ranged reads of headers. Read only.
resource "google_storage_bucket_iam_member" "function_reads_models" {
  for_each = { for fn, access in local.function_access : fn => access if access.reads_models }

  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.function[each.key].member
}

# Publisher on its own topics only.
resource "google_pubsub_topic_iam_member" "function_publishes" {
  for_each = local.topic_grants

  topic = {
    validated = google_pubsub_topic.validated.name
    events    = google_pubsub_topic.events.name
  }[each.value.topic]
  role   = "roles/pubsub.publisher"
  member = google_service_account.function[each.value.function].member
}

# The api tokens secret, when one is named: the api function alone may read it.
resource "google_secret_manager_secret_iam_member" "api_reads_tokens" {
  count = var.api_tokens_secret_id == null ? 0 : 1

  project   = var.project
  secret_id = var.api_tokens_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["api"].member

  depends_on = [google_project_service.enabled]
}

# -- who may call the functions --------------------------------------------------------------
# 2nd gen functions are Cloud Run services (named like the function): invoking one takes
# roles/run.invoker on that service.

# The api: only the listed principals (never allUsers / allAuthenticatedUsers).
resource "google_cloud_run_v2_service_iam_member" "api_invokers" {
  for_each = toset(var.invoker_members)

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.api.name
  role     = "roles/run.invoker"
  member   = each.value
}

# Eventarc triggers (storage -> validate, tick -> reconcile) deliver as this account.
resource "google_service_account" "trigger" {
  account_id   = "modeldrop-trigger"
  display_name = "modeldrop event triggers"
  description  = "Identity of the Eventarc triggers of modeldrop-validate and modeldrop-reconcile."

  depends_on = [google_project_service.enabled]
}

# Receiving events from Google sources (the storage trigger) needs this role; it is only
# grantable on the project.
resource "google_project_iam_member" "trigger_receives_events" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_validate" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.validate.name
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_reconcile" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.reconcile.name
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

# The deploy subscription pushes with an OIDC token of this account.
resource "google_service_account" "push" {
  account_id   = "modeldrop-push"
  display_name = "modeldrop deploy push subscription"
  description  = "Identity the modeldrop-deploy subscription pushes to the deploy function with."

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_service_iam_member" "push_invokes_deploy" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.deploy.name
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# -- Google service agents -------------------------------------------------------------------

# Cloud Storage publishes the bucket's notifications to the Pub/Sub topic Eventarc creates
# for the storage trigger (its name is Eventarc's, hence the project-level grant).
data "google_storage_project_service_account" "gcs" {
  project = var.project

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "gcs_agent_publishes" {
  project = var.project
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.gcs.member
}

# Pub/Sub moves dead letters: publish to the dead-letter topic, and acknowledge the
# forwarded message on the source subscription.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.name
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_dead_letters" {
  subscription = google_pubsub_subscription.deploy.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Pub/Sub mints the OIDC tokens of push deliveries (the deploy subscription, and the
# subscriptions Eventarc creates). Projects that enabled Pub/Sub before 2021-04-08 need
# this grant; later ones have it already. Scoped to the two delivery identities only.
resource "google_service_account_iam_member" "pubsub_agent_tokens" {
  for_each = {
    push    = google_service_account.push.name
    trigger = google_service_account.trigger.name
  }

  service_account_id = each.value
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# -- builds ----------------------------------------------------------------------------------
# Cloud Build builds the function images as this account. Since 2024 new projects no longer
# give the default build identity enough rights (and organizations may forbid using it);
# roles/cloudbuild.builds.builder is the role Google documents for function builds (build
# logs, source and Artifact Registry images). Only Cloud Build acts as this account.
resource "google_service_account" "build" {
  account_id   = "modeldrop-build"
  display_name = "modeldrop function builds"
  description  = "Cloud Build identity for building the modeldrop functions."

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/cloudbuild.builds.builder",
    "roles/logging.logWriter",
  ])

  project = var.project
  role    = each.value
  member  = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}
