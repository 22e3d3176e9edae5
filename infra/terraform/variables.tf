# Inputs. Only `project` is required; `terraform.tfvars.example` shows the common ones.

variable "project" {
  description = "Google Cloud project id to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, the buckets, the Eventarc trigger and Cloud Scheduler."
  type        = string
  default     = "us-central1"
}

variable "vertex_region" {
  description = "Vertex AI region the models are deployed to (null: the same as `region`). Pick one where you have GPU serving quota."
  type        = string
  default     = null
}

variable "vertex_regions" {
  description = "Vertex AI regions a deploy may land in, first preferred, cheapest machine first across them (MODELDROP_REGIONS). Empty: `vertex_region` alone. A folder's modeldrop.yaml `placement.regions` can only narrow this list."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.vertex_regions : can(regex("^[a-z]+-[a-z]+[0-9]+$", r))]) && length(distinct(var.vertex_regions)) == length(var.vertex_regions)
    error_message = "vertex_regions holds distinct region names such as us-central1."
  }
}

variable "bucket" {
  description = "Name of the bucket users upload model folders to (null: \"<project>-modeldrop-models\")."
  type        = string
  default     = null
}

variable "root_prefix" {
  description = "Model folders live under this prefix of the bucket: gs://BUCKET/<root_prefix><model name>/."
  type        = string
  default     = "models/"

  validation {
    condition     = can(regex("^[^/].*/$", var.root_prefix))
    error_message = "root_prefix must not start with '/' and must end with '/', e.g. \"models/\"."
  }
}

variable "completion_mode" {
  description = "How a folder upload is judged complete: \"auto\" (from the files) or \"marker\" (once the marker object exists)."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "marker"], var.completion_mode)
    error_message = "completion_mode must be \"auto\" or \"marker\"."
  }
}

variable "marker_name" {
  description = "Name of the marker object in marker mode."
  type        = string
  default     = "_READY"
}

variable "settle_seconds" {
  description = "Quiet time (seconds) a complete folder must stay unchanged before it is used."
  type        = number
  default     = 10

  validation {
    condition     = var.settle_seconds >= 0 && var.settle_seconds <= 300
    error_message = "settle_seconds must be between 0 and 300 (the validate function times out after 540 s)."
  }
}

variable "base_model_policy" {
  description = "\"strict\": weights must derive from a listed base model; \"family\": any size of a supported family."
  type        = string
  default     = "strict"

  validation {
    condition     = contains(["strict", "family"], var.base_model_policy)
    error_message = "base_model_policy must be \"strict\" or \"family\"."
  }
}

variable "default_machine_spec" {
  description = "Machine spec used when a folder's modeldrop.yaml names none (null: the cheapest spec that fits the weights). Accelerator names as in Vertex AI, e.g. NVIDIA_L4."
  type = object({
    machine_type      = string
    accelerator_type  = string
    accelerator_count = number
  })
  default = null
}

variable "psc_project_allowlist" {
  description = "Projects allowed to reach new endpoints through Private Service Connect. Empty: dedicated public endpoints (IAM-protected). A folder's modeldrop.yaml can still ask for its own."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.psc_project_allowlist : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", p))])
    error_message = "psc_project_allowlist holds project ids (6-30 characters: lowercase letters, digits, hyphens)."
  }
}

# -- private endpoints (Private Service Connect) ---------------------------------------------
# A private deployment's endpoint is reached through a forwarding rule in `psc_network` (in
# `project`): the deploy side reserves an internal address in `psc_subnetwork` of the endpoint's
# region and connects it to the endpoint's service attachment; the api function proxies queries
# to that address (Direct VPC egress, functions.tf). Cross-variable rules: network.tf.

variable "psc_network" {
  description = "Name of the VPC network (in `project`) private endpoints are reached through: modeldrop reserves an internal address and creates a Private Service Connect forwarding rule in it for each private deployment (removed on undeploy), and the api function sends its queries into it (MODELDROP_PSC_NETWORK). Null: no private path."
  type        = string
  default     = null

  validation {
    condition     = var.psc_network == null ? true : can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.psc_network))
    error_message = "psc_network must be the name of a VPC network (1-63 lowercase letters, digits and hyphens, starting with a letter), not a URL; or null for no private path."
  }
}

variable "psc_subnetwork" {
  description = "Name of the subnetwork of `psc_network` the endpoints' internal addresses come from, the same name in `region` and in every Vertex AI region deployments may land in (MODELDROP_PSC_SUBNETWORK). Required with `psc_network`."
  type        = string
  default     = null

  validation {
    condition     = var.psc_subnetwork == null ? true : can(regex("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.psc_subnetwork))
    error_message = "psc_subnetwork must be the name of a subnetwork (1-63 lowercase letters, digits and hyphens, starting with a letter), not a URL."
  }
}

variable "create_psc_subnetwork" {
  description = "Create `psc_subnetwork` in the existing `psc_network` (Private Google Access on): in `region` with `psc_subnetwork_cidr`, and in each other Vertex AI region (`vertex_region`, `vertex_regions`) with its range from `psc_subnetwork_cidrs`. False: the subnetworks already exist. The network itself is never created."
  type        = bool
  default     = false
}

variable "psc_subnetwork_cidr" {
  description = "IPv4 range of the subnetwork created in `region` when `create_psc_subnetwork` is true, e.g. \"10.10.0.0/24\": a private range (RFC 1918 or RFC 6598), /26 or larger (the api function's Direct VPC egress takes about two addresses per instance, in blocks of 16; each private deployment in this region takes one more)."
  type        = string
  default     = null

  validation {
    condition = var.psc_subnetwork_cidr == null ? true : try(
      cidrhost(var.psc_subnetwork_cidr, 0) == split("/", var.psc_subnetwork_cidr)[0] &&
      tonumber(split("/", var.psc_subnetwork_cidr)[1]) >= 8 && tonumber(split("/", var.psc_subnetwork_cidr)[1]) <= 26 && anytrue([
        for block in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"] :
        tonumber(split("/", var.psc_subnetwork_cidr)[1]) >= tonumber(split("/", block)[1]) &&
        cidrhost("${cidrhost(var.psc_subnetwork_cidr, 0)}/${split("/", block)[1]}", 0) == cidrhost(block, 0)
      ]),
      false
    )
    error_message = "psc_subnetwork_cidr must be an IPv4 range inside a private block (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10), /26 or larger (prefix /8 to /26), given by its first address, e.g. \"10.10.0.0/24\"."
  }
}

variable "psc_subnetwork_cidrs" {
  description = "IPv4 ranges of the subnetworks created in the other Vertex AI regions, region => range, e.g. { \"europe-west4\" = \"10.10.1.0/26\" }, when `create_psc_subnetwork` is true: one for each of `vertex_region` and `vertex_regions` that is not `region` (each private deployment there takes one address). Private ranges (RFC 1918 or RFC 6598), /29 or larger, not overlapping."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for region, cidr in var.psc_subnetwork_cidrs : can(regex("^[a-z]+-[a-z]+[0-9]+$", region)) && try(
        cidrhost(cidr, 0) == split("/", cidr)[0] &&
        tonumber(split("/", cidr)[1]) >= 8 && tonumber(split("/", cidr)[1]) <= 29 && anytrue([
          for block in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"] :
          tonumber(split("/", cidr)[1]) >= tonumber(split("/", block)[1]) &&
          cidrhost("${cidrhost(cidr, 0)}/${split("/", block)[1]}", 0) == cidrhost(block, 0)
        ]),
        false
      )
    ])
    error_message = "psc_subnetwork_cidrs maps region names (e.g. europe-west4) to IPv4 ranges inside a private block (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10), /29 or larger, each given by its first address (10.10.1.0/26, not 10.10.1.5/26)."
  }
}

variable "invoker_members" {
  description = "Principals allowed to call the api function, e.g. [\"user:ana@example.com\", \"group:ml@example.com\", \"serviceAccount:ci@p.iam.gserviceaccount.com\"]."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.invoker_members : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "The api is private: allUsers and allAuthenticatedUsers are not accepted as invokers."
  }
}

variable "api_tokens_secret_id" {
  description = "Secret Manager secret id (in `project`) holding comma-separated bearer tokens the api also requires. Null: IAM alone protects the api."
  type        = string
  default     = null
}

variable "api_tokens_secret_version" {
  description = "Version of the api tokens secret the api function reads (a number pins it; \"latest\" is read when an instance starts)."
  type        = string
  default     = "latest"
}

variable "api_base_url" {
  description = "Absolute URL the links in the api's answers start with, e.g. a custom domain in front of the api (MODELDROP_API_BASE_URL). Empty: links are paths on the api; they are never built from a request's Host header."
  type        = string
  default     = ""

  validation {
    condition     = var.api_base_url == "" || can(regex("^https?://[^/?#]+(/[^?#]*)?$", var.api_base_url))
    error_message = "api_base_url must be empty or an absolute http(s) URL without query or fragment, e.g. \"https://api.example.com\"."
  }
}

variable "create_firestore_database" {
  description = "Create the (default) Firestore database. Set false when the project already has one (it must be in Native mode)."
  type        = bool
  default     = true
}

variable "firestore_location" {
  description = "Location of the Firestore database (null: `region`). Multi-regions such as nam5 or eur3 also work."
  type        = string
  default     = null
}

variable "firestore_collection" {
  description = "Firestore collection of the deployment records."
  type        = string
  default     = "deployments"
}

variable "lease_seconds" {
  description = "A deploy claim older than this (seconds) is taken over by the next attempt."
  type        = number
  default     = 600
}

variable "upstream_timeout_seconds" {
  description = "Seconds the api waits for a deployed model's answer (the api function's own timeout is longer)."
  type        = number
  default     = 300

  validation {
    condition     = var.upstream_timeout_seconds > 0 && var.upstream_timeout_seconds < 3500
    error_message = "upstream_timeout_seconds must be positive and below the api function's 3600 s limit."
  }
}

variable "max_body_bytes" {
  description = "Largest request body the api accepts (bytes)."
  type        = number
  default     = 1048576
}

variable "record_cache_seconds" {
  description = "Seconds the api reuses a DEPLOYED record before reading it again."
  type        = number
  default     = 5
}

variable "publish_timeout_seconds" {
  description = "Seconds the functions wait for Pub/Sub to take a message."
  type        = number
  default     = 30
}

variable "max_attempts" {
  description = "Tries of one step (validating a folder, starting its deploy) before the deployment ends FAILED with the last error (MODELDROP_MAX_ATTEMPTS)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_attempts >= 1 && var.max_attempts <= 100
    error_message = "max_attempts must be 1-100."
  }
}

variable "max_hourly_usd" {
  description = "Cap on the estimated hourly cost of the running deployments, in US dollars (MODELDROP_MAX_HOURLY_USD); a deploy that would go over waits until running ones are deleted. null: no cap."
  type        = number
  default     = null

  validation {
    condition     = var.max_hourly_usd == null ? true : var.max_hourly_usd > 0
    error_message = "max_hourly_usd must be a positive amount of dollars, or null."
  }
}

variable "retire_after_seconds" {
  description = "How long a revision replaced as its model name's serving one keeps its endpoint (rollback's window) before it is retired: undeployed and its endpoint deleted (MODELDROP_RETIRE_AFTER_SECONDS)."
  type        = number
  default     = 3600

  validation {
    condition     = var.retire_after_seconds >= 0 && var.retire_after_seconds <= 31622400 && floor(var.retire_after_seconds) == var.retire_after_seconds
    error_message = "retire_after_seconds must be whole seconds from 0 to a year."
  }
}

variable "idle_undeploy_seconds" {
  description = "Undeploy a deployment that has had no proxied request for this long (MODELDROP_IDLE_UNDEPLOY_SECONDS); a folder's modeldrop.yaml idle_undeploy_after_seconds wins. 0: never."
  type        = number
  default     = 0

  validation {
    condition     = var.idle_undeploy_seconds >= 0 && var.idle_undeploy_seconds <= 31622400 && floor(var.idle_undeploy_seconds) == var.idle_undeploy_seconds
    error_message = "idle_undeploy_seconds must be whole seconds from 0 to a year (0: never)."
  }
}

variable "deploy_max_delivery_attempts" {
  description = "Deliveries of one validated message to the deploy function before it goes to the dead-letter topic (5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.deploy_max_delivery_attempts >= 5 && var.deploy_max_delivery_attempts <= 100
    error_message = "deploy_max_delivery_attempts must be between 5 and 100 (a Pub/Sub limit)."
  }
}

variable "reconcile_schedule" {
  description = "Cron schedule of the reconcile tick (Cloud Scheduler, UTC)."
  type        = string
  default     = "* * * * *"
}

variable "python_runtime" {
  description = "Cloud Functions Python runtime; the bundle's requirements are pinned from a Python 3.11 environment."
  type        = string
  default     = "python311"
}

variable "bundle_path" {
  description = "Path of the function source archive built by `make bundle` (null: ../../build/modeldrop-functions.zip from this folder)."
  type        = string
  default     = null
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete the buckets even when they still hold objects (uploaded models included)."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "psc_ca_certificate" {
  description = "PEM of the self-signed certificate Vertex AI's PSC endpoints present (*.prediction.p.vertexai.goog), trusted for those connections only (MODELDROP_PSC_CA_CERT). Fetch it from a VM in psc_network: openssl s_client -showcerts -connect ADDRESS:443 </dev/null | openssl x509 -outform pem. Empty: the default trust store, where it is not, so private queries fail verification."
  type        = string
  default     = ""

  validation {
    condition     = var.psc_ca_certificate == "" || startswith(trimspace(var.psc_ca_certificate), "-----BEGIN CERTIFICATE-----")
    error_message = "psc_ca_certificate must be PEM (-----BEGIN CERTIFICATE----- ...), or empty."
  }
}
