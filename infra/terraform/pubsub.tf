# Topics, the deploy function's subscription and its dead-letter topic.
#
# Why the deploy function has its own push subscription instead of an Eventarc trigger:
# a Pub/Sub-triggered 2nd gen function gets a subscription that Eventarc creates and owns;
# neither google_cloudfunctions2_function nor google_eventarc_trigger can give it a
# dead-letter policy (hashicorp/terraform-provider-google#17697 and #25069), and changing it
# with gcloud afterwards is unmanaged drift, lost whenever the trigger is recreated. So
# deploy is an HTTP-deployed function (still @functions_framework.cloud_event in the code)
# and this subscription pushes to it with an OIDC token: Pub/Sub retries with backoff on any
# non-2xx answer and, after `deploy_max_delivery_attempts` deliveries, moves the message to
# the dead-letter topic.
# functions-framework turns the push envelope POSTed to /projects/P/topics/T into the same
# google.cloud.pubsub.topic.v1.messagePublished CloudEvent an Eventarc trigger would send
# (the local stack delivers it the same way).

resource "google_pubsub_topic" "validated" {
  name = local.topics.validated

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "events" {
  name = local.topics.events

  # Keep a week of notifications so a subscription created later can seek back.
  message_retention_duration = "604800s"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "tick" {
  name = local.topics.tick

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "dead_letter" {
  name = local.topics.dead_letter

  depends_on = [google_project_service.enabled]
}

# validated -> deploy function, with retries and dead lettering.
resource "google_pubsub_subscription" "deploy" {
  name  = local.deploy_subscription
  topic = google_pubsub_topic.validated.id

  # A push delivery waits this long for the function's answer (the function's own timeout
  # is shorter, so a slow attempt fails before Pub/Sub gives up on it).
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.deploy.service_config[0].uri}/projects/${var.project}/topics/${google_pubsub_topic.validated.name}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.deploy.service_config[0].uri
    }
  }

  # Failed deliveries (the function raises on retryable Vertex AI errors) come back after
  # an exponential backoff between these bounds.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.deploy_max_delivery_attempts
  }

  # Never delete the subscription for inactivity.
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invokes_deploy,
    google_pubsub_topic_iam_member.pubsub_agent_dead_letters,
  ]
}

# Messages that exhausted their deliveries wait here (7 days) for an operator:
#   gcloud pubsub subscriptions pull modeldrop-validated-dead-letter --auto-ack
# Re-publishing one to modeldrop-validated retries it; reconcile also re-queues validated
# deployments whose claim expired.
resource "google_pubsub_subscription" "dead_letter" {
  name  = local.dead_letter_subscription
  topic = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}
