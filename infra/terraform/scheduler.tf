# The reconcile tick: Cloud Scheduler publishes to modeldrop-tick every minute, and the
# reconcile function's trigger picks it up.

resource "google_cloud_scheduler_job" "tick" {
  name        = "modeldrop-tick"
  description = "modeldrop: run reconcile"
  region      = var.region
  schedule    = var.reconcile_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.tick.id
    data       = base64encode("{}")
  }

  # A missed tick is not retried: the next one comes a minute later.
  retry_config {
    retry_count = 0
  }

  depends_on = [google_project_service.enabled]
}
