output "urls" {
  description = "Every function's URL."
  value       = local.urls
}

output "bridge_settings" {
  description = "The bridge's settings that point it at the deployed functions."
  value       = { for name, function in local.functions : "TASUKI_${upper(name)}_URL" => local.urls[name] if function.pushed }
}

output "webhook_url" {
  description = "The URL to paste into Bitbucket, GitHub or GitLab."
  value       = lookup(local.urls, "ingress", "")
}
