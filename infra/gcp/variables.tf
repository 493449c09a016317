variable "project" {
  description = "The Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Where the functions, the scheduler jobs and the sources bucket live."
  type        = string
  default     = "europe-west1"
}

variable "bundles_dir" {
  description = "The folder `make bundle` wrote (its manifest.json lists the functions and the clock)."
  type        = string
  default     = "../../build/bundles"
}

variable "name_prefix" {
  description = "Prefix of every name this configuration makes."
  type        = string
  default     = "tasuki-"
}

variable "settings" {
  description = "TASUKI_* settings of every function that are not secret (see the README's Configuration)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "TASUKI_* settings kept in Secret Manager: TASUKI_AMQP_URL, TASUKI_STORE_URL, TASUKI_PUSH_KEY, TASUKI_ORDER_KEY, TASUKI_STORE_KEY, TASUKI_WEB_TOKEN."
  type        = map(string)
  sensitive   = true
}

variable "memory" {
  description = "Memory of each function."
  type        = string
  default     = "512M"
}

variable "timeout_seconds" {
  description = "Longest request of each function (a push's ack deadline is at most 600 s)."
  type        = number
  default     = 60
}

variable "max_instances" {
  description = "Most instances of each function at once (each holds connections to RabbitMQ and the store)."
  type        = number
  default     = 10
}
