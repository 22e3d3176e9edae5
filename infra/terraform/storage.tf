# The models bucket (users upload model folders here) and the function source bucket.

resource "google_storage_bucket" "models" {
  name     = local.models_bucket
  location = var.region # the storage trigger must be in the bucket's region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  # Parallel composite uploads (`gcloud storage cp` of files over 150 MB) leave temporary
  # objects under gcloud/tmp/ when interrupted; clean them up.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["gcloud/tmp/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "source" {
  name     = local.source_bucket
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # holds only function archives (Terraform replaces them)

  depends_on = [google_project_service.enabled]
}

# The archive built by `make bundle`. Its name carries the content hash, so a changed
# bundle is a new object and Terraform redeploys the functions; an unchanged one is not.
resource "google_storage_bucket_object" "bundle" {
  name         = "functions/modeldrop-functions-${filemd5(local.bundle_path)}.zip"
  bucket       = google_storage_bucket.source.name
  source       = local.bundle_path
  content_type = "application/zip"
}
