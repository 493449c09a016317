# Tasuki's functions on Cloud Functions (2nd gen), from the bundles of `make bundle`.
# Nothing here is kept by hand per function: the list, the targets, the runtime and the clock's
# schedules come from the bundles' manifest.json. See README.md beside this file.

locals {
  manifest  = jsondecode(file("${var.bundles_dir}/manifest.json"))
  functions = local.manifest.functions
  runtime   = "python${replace(local.manifest.python, ".", "")}"

  # A 2nd gen function is a Cloud Run service, whose deterministic URL follows from its name, so
  # every function (and the bridge) can be told every URL before any function exists. (Its
  # cloudfunctions.net URL puts the function's name in the path, and the web page's links are absolute.)
  urls = { for name, _ in local.functions : name => "https://${var.name_prefix}${name}-${data.google_project.this.number}.${var.region}.run.app/" }

  # What follows from the URLs and the platform, then the operator's own settings.
  environment = merge(
    {
      TASUKI_HOST                      = "0.0.0.0" # beyond this machine: the web page needs TASUKI_WEB_TOKEN
      TASUKI_DATA_DIR                  = "/tmp/tasuki"
      TASUKI_WEBHOOK_URL               = lookup(local.urls, "ingress", "")
      TASUKI_PUBLIC_URL                = trimsuffix(lookup(local.urls, "web", ""), "/")
      TASUKI_PUSH_OIDC_SERVICE_ACCOUNT = google_service_account.push.email
    },
    { for name, function in local.functions : "TASUKI_${upper(name)}_URL" => local.urls[name] if function.pushed },
    var.settings,
  )
  secret_names = nonsensitive(toset(keys(var.secrets)))
}

data "google_project" "this" {}

resource "google_project_service" "needed" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false
}

# Who the functions run as: it may read their secrets, nothing else.
resource "google_service_account" "functions" {
  account_id   = "${var.name_prefix}functions"
  display_name = "Tasuki functions"
}

# Whose Google-signed OIDC tokens the functions accept (TASUKI_PUSH_OIDC_SERVICE_ACCOUNT): Cloud
# Scheduler signs the clock's pushes as this account.
resource "google_service_account" "push" {
  account_id   = "${var.name_prefix}push"
  display_name = "Tasuki pushes (Cloud Scheduler, Pub/Sub)"
}

resource "google_secret_manager_secret" "setting" {
  for_each  = local.secret_names
  secret_id = "${var.name_prefix}${lower(replace(trimprefix(each.value, "TASUKI_"), "_", "-"))}"
  replication {
    auto {}
  }
  depends_on = [google_project_service.needed]
}

resource "google_secret_manager_secret_version" "setting" {
  for_each    = google_secret_manager_secret.setting
  secret      = each.value.id
  secret_data = var.secrets[each.key]
}

resource "google_secret_manager_secret_iam_member" "functions" {
  for_each  = google_secret_manager_secret.setting
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions.email}"
}

resource "google_storage_bucket" "sources" {
  name                        = "${var.project}-${var.name_prefix}sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
}

# Named by content: a changed bundle is a new object, and so a new build of its function.
resource "google_storage_bucket_object" "bundle" {
  for_each = local.functions
  name     = "bundles/${each.key}-${substr(each.value.sha256, 0, 16)}.zip"
  bucket   = google_storage_bucket.sources.name
  source   = "${var.bundles_dir}/${each.value.zip}"
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.functions
  name     = "${var.name_prefix}${each.key}"
  location = var.region

  build_config {
    runtime     = local.runtime
    entry_point = each.value.target
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle[each.key].name
      }
    }
  }

  service_config {
    available_memory               = var.memory
    timeout_seconds                = var.timeout_seconds
    max_instance_count             = var.max_instances
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.functions.email
    environment_variables          = local.environment

    dynamic "secret_environment_variables" {
      for_each = google_secret_manager_secret.setting
      content {
        key        = secret_environment_variables.key
        project_id = var.project
        secret     = secret_environment_variables.value.secret_id
        version    = "latest"
      }
    }
  }

  depends_on = [
    google_project_service.needed,
    google_secret_manager_secret_version.setting,
    google_secret_manager_secret_iam_member.functions,
  ]
}

# Anyone may call the functions: git hosts cannot sign Google requests, and Tasuki checks every
# push's token (the bridge's or Google's) and every webhook's signature itself.
resource "google_cloud_run_service_iam_member" "public" {
  for_each = google_cloudfunctions2_function.function
  location = each.value.location
  service  = each.value.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# The clock, where the flow has one: Cloud Scheduler pushes its message to the function with an
# OIDC token of the push account, for the function's URL.
resource "google_cloud_scheduler_job" "clock" {
  for_each  = { for job in local.manifest.schedules : job.name => job }
  name      = "${var.name_prefix}${each.key}"
  region    = var.region
  schedule  = each.value.schedule
  time_zone = "Etc/UTC"

  http_target {
    uri         = local.urls[each.value.function]
    http_method = "POST"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode(jsonencode(each.value.body))
    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.urls[each.value.function]
    }
  }

  depends_on = [google_cloudfunctions2_function.function]
}
