# The Firestore database (Native mode) and the indexes the code's queries need.
# The composite indexes are the ones listed in modeldrop/adapters/firestore_store.py;
# Firestore appends __name__ to each, in the direction of its last field, which is what
# the newest-first pagination (created_at, then id, descending) needs.

resource "google_firestore_database" "default" {
  count = var.create_firestore_database ? 1 : 0

  name        = "(default)" # the database the functions' firestore.Client() uses
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"

  # `terraform destroy` leaves the database and its records (see the README to delete it).
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.enabled]
}

locals {
  # Index name -> ordered fields. tests/infra checks these against the store's docstring.
  firestore_indexes = {
    by_state = [ # list(states=...)
      { field = "state", order = "ASCENDING" },
      { field = "created_at", order = "DESCENDING" },
    ]
    by_model = [ # list(model=...)
      { field = "model", order = "ASCENDING" },
      { field = "created_at", order = "DESCENDING" },
    ]
    by_model_and_state = [ # list(states=..., model=...)
      { field = "model", order = "ASCENDING" },
      { field = "state", order = "ASCENDING" },
      { field = "created_at", order = "DESCENDING" },
    ]
    latest_revision = [ # latest_for_model()
      { field = "model", order = "ASCENDING" },
      { field = "revision", order = "DESCENDING" },
      { field = "created_at", order = "DESCENDING" },
    ]
  }

  # Large maps nothing queries: no single-field indexes (a verdict with many findings would
  # otherwise make many index entries per write).
  unindexed_fields = [
    "validation", "history", "overrides", "machine", "error", "candidates", "preflight",
    "placement", "attempts", "smoke_test", "blocked",
  ]
}

resource "google_firestore_index" "deployments" {
  for_each = local.firestore_indexes

  database    = "(default)"
  collection  = var.firestore_collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value.field
      order      = fields.value.order
    }
  }

  depends_on = [google_firestore_database.default]
}

resource "google_firestore_field" "unindexed" {
  for_each = toset(local.unindexed_fields)

  database   = "(default)"
  collection = var.firestore_collection
  field      = each.value

  # An empty index_config turns off the automatic single-field indexes.
  index_config {}

  depends_on = [google_firestore_database.default]
}
