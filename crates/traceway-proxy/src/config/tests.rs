#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn env(vars: &[(&str, &str)]) -> Arc<dyn Env> {
    Arc::new(
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    )
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<ProxyConfig, ConfigError> {
    ProxyConfig::parse(text, "config.yaml", env(vars))
}

#[test]
fn reads_a_litellm_config_with_secrets_from_both_forms() {
    let c = parse(
        r#"
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: ${BASE}/v1
      api_key: os.environ/OPENAI_API_KEY
      timeout: 30
      stream_timeout: 5
      temperature: 0.2
      rpm: 60
      max_parallel_requests: 4
    model_info:
      id: my-deployment
  - model_name: gpt-4o
    litellm_params:
      model: mock/echo
      mock_response: hi
litellm_settings:
  callbacks: ["otel"]
  turn_off_message_logging: true
  drop_params: true
general_settings:
  master_key: sk-master
router_settings:
  timeout: 12
  routing_strategy: least-busy
  routing_strategy_args: {}
  num_retries: 2
environment_variables:
  BASE: http://upstream.local
"#,
        &[("OPENAI_API_KEY", "sk-provider")],
    )
    .unwrap();
    assert_eq!(c.deployments.len(), 2);
    let d = &c.deployments[0];
    assert_eq!(d.api_base.as_deref(), Some("http://upstream.local/v1"));
    assert_eq!(d.api_key.as_ref().unwrap().expose(), "sk-provider");
    assert_eq!(d.timeout, Some(Duration::from_secs(30)));
    assert_eq!(d.stream_timeout, Some(Duration::from_secs(5)));
    assert_eq!(d.id.as_deref(), Some("my-deployment"));
    assert_eq!(d.params.get("temperature"), Some(&serde_json::json!(0.2)));
    assert!(
        !d.params.contains_key("rpm"),
        "routing params are not sent upstream"
    );
    assert_eq!(c.deployments[1].mock_response.as_deref(), Some("hi"));
    assert!(c.otel_enabled());
    assert!(c.turn_off_message_logging);
    assert_eq!(c.master_key.as_ref().unwrap().expose(), "sk-master");
    assert_eq!(c.request_timeout, Some(Duration::from_secs(12)));
    let warnings = c.warnings.join("\n");
    for key in [
        "litellm_settings.drop_params",
        "router_settings.routing_strategy_args",
        "model_list[0].litellm_params.max_parallel_requests",
    ] {
        assert!(
            warnings.contains(key),
            "no warning for {key} in:\n{warnings}"
        );
    }
    assert!(
        !format!("{c:?}").contains("sk-provider"),
        "secrets must not show in Debug"
    );
}

#[test]
fn reports_every_problem_with_its_key_path() {
    let err = parse(
        r#"
model_list:
  - model_name: a
    litellm_params:
      model: opena/gpt-4o
  - model_name: b
    litellm_params:
      api_key: os.environ/MISSING_KEY
  - model_name: c
    litellm_params:
      model: openai/x
      api_key: os.environ/ALSO_MISSING
      timeout: -1
      api_base: not a url
litellm_setings:
  callbacks: ["otel"]
general_settings:
  master_key: nope
"#,
        &[],
    )
    .unwrap_err();
    let text = err.to_string();
    let expected = [
        "config.yaml: ",
        "model_list[0].litellm_params.model: unknown provider \"opena\" in \"opena/gpt-4o\" (known providers: mock, openai",
        "model_list[1].litellm_params: missing field `model`",
        "model_list[1].litellm_params.api_key: environment variable MISSING_KEY is not set",
        "model_list[2].litellm_params.api_key: environment variable ALSO_MISSING is not set",
        "model_list[2].litellm_params.timeout: must be a positive number of seconds",
        "model_list[2].litellm_params.api_base: \"not a url\" is not a URL",
        "litellm_setings: unknown key \"litellm_setings\"; did you mean \"litellm_settings\"?",
        "general_settings.master_key: must start with \"sk-\"",
    ];
    for e in expected {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
}

#[test]
fn rejects_non_mapping_and_bad_yaml_and_bad_interpolation() {
    assert!(
        parse("- a\n- b\n", &[])
            .unwrap_err()
            .to_string()
            .contains("top level must be a mapping")
    );
    assert!(
        parse("model_list: [\n", &[])
            .unwrap_err()
            .to_string()
            .contains("not valid YAML")
    );
    let e = parse("model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_base: ${BASE\n", &[]).unwrap_err();
    assert!(e.to_string().contains("without a closing"), "{e}");
}

#[test]
fn an_empty_file_is_a_valid_config_with_no_models() {
    let c = parse("", &[]).unwrap();
    assert!(c.deployments.is_empty());
    assert!(!c.otel_enabled());
}

#[test]
fn success_and_failure_callbacks_turn_on_otel_and_unknown_ones_warn() {
    let c = parse(
        "litellm_settings:\n  success_callback: [\"otel\"]\n  failure_callback: [\"langfuse\"]\n",
        &[],
    )
    .unwrap();
    assert!(c.otel_enabled());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("\"langfuse\" is not supported yet"))
    );
}

#[test]
fn a_missing_api_key_falls_back_to_the_providers_env_var() {
    let c = parse(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\nenvironment_variables:\n  OPENAI_API_KEY: sk-from-config-env\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        c.deployments[0].api_key.as_ref().unwrap().expose(),
        "sk-from-config-env"
    );
}

#[test]
fn router_settings_fallbacks_and_deployment_routing_are_read_and_checked() {
    let c = parse(
        r#"
model_list:
  - model_name: a
    litellm_params: {model: mock/a, weight: 3, order: 1, num_retries: 4, tpm: 1000}
  - model_name: b
    litellm_params: {model: mock/b}
router_settings:
  fallbacks: [{"a": ["b"]}]
  context_window_fallbacks: [{"a": ["b"]}]
  default_fallbacks: ["b"]
  allowed_fails: 1
  cooldown_time: 30
  retry_after: 0.25
litellm_settings:
  num_retries: 7
  content_policy_fallbacks: [{"b": ["a"]}]
"#,
        &[],
    )
    .unwrap();
    let r = &c.router;
    assert_eq!(r.fallbacks.get("a"), Some(&vec!["b".to_owned()]));
    assert_eq!(
        r.context_window_fallbacks.get("a"),
        Some(&vec!["b".to_owned()])
    );
    assert_eq!(
        r.content_policy_fallbacks.get("b"),
        Some(&vec!["a".to_owned()])
    );
    assert_eq!(r.default_fallbacks, ["b"]);
    assert_eq!((r.allowed_fails, r.num_retries), (1, 7));
    assert_eq!(r.cooldown_time, Duration::from_secs(30));
    assert_eq!(r.retry_after, Duration::from_millis(250));
    let d = &c.deployments[0];
    assert_eq!(
        (d.weight, d.order, d.num_retries, d.tpm),
        (Some(3.0), Some(1), Some(4), Some(1000))
    );
    assert!(!d.params.contains_key("weight"));

    let err = parse(
        "model_list:\n  - model_name: a\n    litellm_params: {model: mock/a, rpm: fast}\nrouter_settings:\n  routing_strategy: fastest\n  fallbacks: [{\"a\": [\"ghost\"]}]\n  num_retries: -1\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    for e in [
        "model_list[0].litellm_params.rpm: must be a whole number",
        "router_settings.routing_strategy: unknown strategy \"fastest\"",
        "router_settings.fallbacks.a: \"ghost\" is not a model_name in model_list",
        "router_settings.num_retries: must be a whole number",
    ] {
        assert!(err.contains(e), "missing {e:?} in:\n{err}");
    }
}
