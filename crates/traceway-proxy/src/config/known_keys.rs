//! Which config keys exist: those Traceway acts on, those LiteLLM has that Traceway accepts
//! with a warning, and anything else, which is a typo and stops start-up.

use super::ConfigProblem;
use serde_json::Value;

const TOP: &[&str] = &[
    "model_list",
    "litellm_settings",
    "general_settings",
    "router_settings",
    "environment_variables",
];
const TOP_LITELLM: &[&str] = &[
    "include",
    "mcp_servers",
    "guardrails",
    "credential_list",
    "callback_settings",
    "files_settings",
    "assistant_settings",
    "finetune_settings",
    "vector_store_registry",
    "search_tools",
    "prompts",
];
const ENTRY: &[&str] = &["model_name", "litellm_params", "model_info"];
const LITELLM_SETTINGS: &[&str] = &[
    "callbacks",
    "success_callback",
    "failure_callback",
    "turn_off_message_logging",
    "request_timeout",
    "num_retries",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "allowed_fails",
];
const LITELLM_SETTINGS_LITELLM: &[&str] = &[
    "drop_params",
    "set_verbose",
    "json_logs",
    "cache",
    "cache_params",
    "redact_user_api_key_info",
    "redact_messages_in_exceptions",
    "modify_params",
    "telemetry",
    "max_budget",
    "budget_duration",
    "default_team_settings",
    "default_internal_user_params",
    "upperbound_key_generate_params",
    "default_key_generate_params",
    "key_generation_settings",
    "force_ipv4",
    "enable_preview_features",
    "service_callback",
    "callback_settings",
    "disable_end_user_cost_tracking",
    "enable_json_schema_validation",
    "disable_add_transform_inline_image_block",
    "ssl_verify",
    "ssl_certificate",
    "public_model_groups",
    "public_model_groups_links",
    "max_internal_user_budget",
    "internal_user_budget_duration",
    "default_max_internal_user_budget",
    "max_end_user_budget",
    "return_response_headers",
    "disable_copilot_system_to_assistant",
    "turn_off_message_logging_for_callbacks",
    "logging_callback_manager",
    "extra_spend_tag_headers",
    "use_chat_completions_url_for_anthropic_messages",
    "disable_token_counter",
];
const GENERAL_SETTINGS: &[&str] = &[
    "master_key",
    "max_request_size_mb",
    "database_url",
    "user_api_key_cache_ttl",
    "proxy_batch_write_at",
    "ui",
    "ui_trace_buffer_size",
];
const GENERAL_SETTINGS_LITELLM: &[&str] = &[
    "database_connection_pool_limit",
    "database_connection_timeout",
    "alerting",
    "alerting_threshold",
    "alert_types",
    "alert_to_webhook_url",
    "alerting_args",
    "disable_spend_logs",
    "disable_error_logs",
    "allowed_routes",
    "store_model_in_db",
    "store_prompts_in_spend_logs",
    "max_response_size_mb",
    "background_health_checks",
    "health_check_interval",
    "health_check_details",
    "enforce_user_param",
    "custom_auth",
    "custom_auth_settings",
    "allow_requests_on_db_unavailable",
    "disable_master_key_return",
    "public_routes",
    "admin_only_routes",
    "ui_access_mode",
    "use_redis_transaction_buffer",
    "infer_model_from_keys",
    "pass_through_endpoints",
    "litellm_key_header_name",
    "maximum_spend_logs_retention_period",
    "maximum_spend_logs_retention_interval",
    "enable_jwt_auth",
    "litellm_jwtauth",
    "proxy_budget_rescheduler_min_time",
    "proxy_budget_rescheduler_max_time",
    "disable_reset_budget",
    "disable_retry_on_max_parallel_request_limit_error",
    "key_management_system",
    "key_management_settings",
    "use_x_forwarded_for",
    "user_header_name",
    "user_header_mappings",
    "forward_client_headers_to_llm_api",
    "service_account_settings",
    "default_team_disabled",
    "disable_prisma_schema_update",
    "enable_oauth2_auth",
    "use_client_credentials_pass_through_routes",
    "allow_client_side_credentials",
    "enable_public_model_hub",
    "image_generation_model",
    "global_max_parallel_requests",
    "max_parallel_requests",
    "moderation_model",
    "embedding_model",
    "completion_model",
    "otel",
    "routing_strategy",
];
const ROUTER_SETTINGS: &[&str] = &[
    "timeout",
    "stream_timeout",
    "routing_strategy",
    "num_retries",
    "retry_after",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "allowed_fails",
    "cooldown_time",
    "disable_cooldowns",
    "max_fallbacks",
    "redis_host",
    "redis_port",
    "redis_password",
    "redis_url",
    "redis_ssl",
];
const ROUTER_SETTINGS_LITELLM: &[&str] = &[
    "routing_strategy_args",
    "allowed_fails_policy",
    "retry_policy",
    "enable_pre_call_checks",
    "model_group_alias",
    "provider_budget_config",
    "enable_tag_filtering",
    "cache_responses",
    "optional_pre_call_checks",
    "default_litellm_params",
    "default_max_parallel_requests",
    "default_priority",
    "polling_interval",
    "max_parallel_requests",
    "set_verbose",
    "debug_level",
    "client_ttl",
    "cache_kwargs",
    "caching_groups",
    "model_group_retry_policy",
    "timeout_policy",
    "alerting_config",
    "assistants_config",
    "router_general_settings",
];

/// Edit distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn check_section(
    value: Option<&Value>,
    path: &str,
    ours: &[&str],
    litellm: &[&str],
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) {
    let Some(value) = value else { return };
    if value.is_null() {
        return;
    }
    let Some(map) = value.as_object() else {
        problems.push(ConfigProblem {
            path: path.to_owned(),
            message: "must be a mapping".into(),
        });
        return;
    };
    for key in map.keys() {
        let key_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if ours.contains(&key.as_str()) {
            continue;
        }
        if litellm.contains(&key.as_str()) {
            warnings.push(format!(
                "{key_path}: accepted but not supported yet; it has no effect"
            ));
            continue;
        }
        let best = ours
            .iter()
            .chain(litellm)
            .map(|k| (distance(key, k), *k))
            .min()
            .filter(|(d, _)| *d <= 3);
        let message = match best {
            Some((_, k)) => format!("unknown key \"{key}\"; did you mean \"{k}\"?"),
            None => format!("unknown key \"{key}\""),
        };
        problems.push(ConfigProblem {
            path: key_path,
            message,
        });
    }
}

/// Sorts every key of the file into used, accepted-with-warning, or a problem.
pub(super) fn check(root: &Value, problems: &mut Vec<ConfigProblem>, warnings: &mut Vec<String>) {
    check_section(Some(root), "", TOP, TOP_LITELLM, problems, warnings);
    check_section(
        root.get("litellm_settings"),
        "litellm_settings",
        LITELLM_SETTINGS,
        LITELLM_SETTINGS_LITELLM,
        problems,
        warnings,
    );
    check_section(
        root.get("general_settings"),
        "general_settings",
        GENERAL_SETTINGS,
        GENERAL_SETTINGS_LITELLM,
        problems,
        warnings,
    );
    check_section(
        root.get("router_settings"),
        "router_settings",
        ROUTER_SETTINGS,
        ROUTER_SETTINGS_LITELLM,
        problems,
        warnings,
    );
    match root.get("model_list") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for (i, e) in entries.iter().enumerate() {
                check_section(
                    Some(e),
                    &format!("model_list[{i}]"),
                    ENTRY,
                    &[],
                    problems,
                    warnings,
                );
            }
        }
        Some(_) => problems.push(ConfigProblem {
            path: "model_list".into(),
            message: "must be a list of entries".into(),
        }),
    }
}
