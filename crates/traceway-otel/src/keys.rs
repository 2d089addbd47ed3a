//! Every span name and attribute key Traceway emits, named once.
//!
//! The GenAI keys follow the OpenTelemetry semantic conventions v1.41; the `llm.*`,
//! `gen_ai.prompt.*` / `gen_ai.completion.*` and `metadata.*` keys are the ones LiteLLM's `otel`
//! callback emits and that Traceloop, Laminar and Langfuse render.

/// Name of the proxy's SERVER span for one incoming request.
pub const SPAN_PROXY_REQUEST: &str = "Received Proxy Server Request";
/// Name of the child span recorded when a proxy request fails.
pub const SPAN_PROXY_FAILED: &str = "Failed Proxy Server Request";
/// Name of the INTERNAL span that carries one LLM call (library root, or nested proxy mode).
pub const SPAN_LLM_REQUEST: &str = "litellm_request";
/// Name of the CLIENT span of one upstream attempt.
pub const SPAN_RAW_REQUEST: &str = "raw_gen_ai_request";

/// `chat`, `text_completion` or `embeddings`.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// Provider id, older key kept for backends that read it.
pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
/// Provider id (semconv v1.41).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// Model sent to the provider.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// `max_tokens` / `max_completion_tokens` of the request.
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// `temperature` of the request (0 is recorded).
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
/// `top_p` of the request.
pub const GEN_AI_REQUEST_TOP_P: &str = "gen_ai.request.top_p";
/// `stop` of the request, as a string array.
pub const GEN_AI_REQUEST_STOP_SEQUENCES: &str = "gen_ai.request.stop_sequences";
/// `seed` of the request.
pub const GEN_AI_REQUEST_SEED: &str = "gen_ai.request.seed";
/// `frequency_penalty` of the request.
pub const GEN_AI_REQUEST_FREQUENCY_PENALTY: &str = "gen_ai.request.frequency_penalty";
/// `presence_penalty` of the request.
pub const GEN_AI_REQUEST_PRESENCE_PENALTY: &str = "gen_ai.request.presence_penalty";
/// `true` when the request streams (absent otherwise).
pub const GEN_AI_REQUEST_STREAM: &str = "gen_ai.request.stream";
/// `n` of the request, when it is not 1.
pub const GEN_AI_REQUEST_CHOICE_COUNT: &str = "gen_ai.request.choice.count";
/// `json` when the request's `response_format` asks for JSON.
pub const GEN_AI_OUTPUT_TYPE: &str = "gen_ai.output.type";
/// Conversation id when the request carries one.
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
/// Response id returned by the provider.
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// Model the provider says answered.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// Finish reason of every choice.
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// Seconds from request start to the first streamed chunk.
pub const GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
/// Input (prompt) tokens.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Output (completion) tokens.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Input plus output tokens.
pub const GEN_AI_USAGE_TOTAL_TOKENS: &str = "gen_ai.usage.total_tokens";
/// Older name of the input token count.
pub const GEN_AI_USAGE_PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
/// Older name of the output token count.
pub const GEN_AI_USAGE_COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
/// Input tokens served from the provider's prompt cache.
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// Input tokens written to the provider's prompt cache.
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
    "gen_ai.usage.cache_creation.input_tokens";
/// Output tokens spent on reasoning.
pub const GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
/// Cost of the call in USD, where a price is known.
pub const GEN_AI_COST_TOTAL_COST: &str = "gen_ai.cost.total_cost";
/// Input messages as JSON in the OTel GenAI shape.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// Output messages as JSON in the OTel GenAI shape.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// System instructions as JSON in the OTel GenAI shape.
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
/// Prefix of the indexed OpenLLMetry prompt keys (`gen_ai.prompt.{i}.role` …).
pub const GEN_AI_PROMPT_PREFIX: &str = "gen_ai.prompt";
/// Prefix of the indexed OpenLLMetry completion keys (`gen_ai.completion.{i}.content` …).
pub const GEN_AI_COMPLETION_PREFIX: &str = "gen_ai.completion";
/// Prefix of the indexed OpenLLMetry tool keys (`llm.request.functions.{i}.name` …).
pub const LLM_REQUEST_FUNCTIONS_PREFIX: &str = "llm.request.functions";

/// `chat`, `completion` or `embedding` (OpenLLMetry).
pub const LLM_REQUEST_TYPE: &str = "llm.request.type";
/// Whether the call streams (OpenLLMetry).
pub const LLM_IS_STREAMING: &str = "llm.is_streaming";
/// The request's `user` field.
pub const LLM_USER: &str = "llm.user";
/// The model alias the client asked for.
pub const LITELLM_MODEL_GROUP: &str = "litellm.model_group";
/// The `provider/model` the alias resolved to.
pub const LITELLM_PROVIDER_MODEL: &str = "litellm.provider.model";
/// Id of the deployment (model_list entry) that served the attempt.
pub const LITELLM_MODEL_ID: &str = "litellm.model_id";
/// Attempt number of a CLIENT span, starting at 1, counted across retries and fallbacks.
pub const LITELLM_ATTEMPT: &str = "litellm.attempt";
/// How many fallback groups away from the one asked for a CLIENT span's attempt is (0: none).
pub const LITELLM_FALLBACK_DEPTH: &str = "litellm.fallback_depth";
/// Retries made before the call's answer (or final failure).
pub const LITELLM_ATTEMPTED_RETRIES: &str = "litellm.attempted_retries";
/// Fallback groups tried before the call's answer (or final failure).
pub const LITELLM_ATTEMPTED_FALLBACKS: &str = "litellm.attempted_fallbacks";

/// Prefix of caller identity and request metadata keys.
pub const METADATA_PREFIX: &str = "metadata";
/// SHA-256 hex of the caller's key.
pub const METADATA_USER_API_KEY_HASH: &str = "metadata.user_api_key_hash";
/// Alias of the caller's key.
pub const METADATA_USER_API_KEY_ALIAS: &str = "metadata.user_api_key_alias";
/// Organisation of the caller's key.
pub const METADATA_USER_API_KEY_ORG_ID: &str = "metadata.user_api_key_org_id";
/// User of the caller's key.
pub const METADATA_USER_API_KEY_USER_ID: &str = "metadata.user_api_key_user_id";
/// Team of the caller's key.
pub const METADATA_USER_API_KEY_TEAM_ID: &str = "metadata.user_api_key_team_id";
/// Alias of the team of the caller's key.
pub const METADATA_USER_API_KEY_TEAM_ALIAS: &str = "metadata.user_api_key_team_alias";
/// End user named by the request's `user` field.
pub const METADATA_USER_API_KEY_END_USER_ID: &str = "metadata.user_api_key_end_user_id";
/// IP address of the caller.
pub const METADATA_REQUESTER_IP_ADDRESS: &str = "metadata.requester_ip_address";
/// `User-Agent` of the caller.
pub const METADATA_USER_AGENT: &str = "metadata.user_agent";

/// Route template that matched (`/v1/chat/completions`).
pub const HTTP_ROUTE: &str = "http.route";
/// HTTP method of the request.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// HTTP status code of the response.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// Path of the request URL.
pub const URL_PATH: &str = "url.path";
/// Full URL of an upstream attempt, without query secrets.
pub const URL_FULL: &str = "url.full";
/// Host of the upstream.
pub const SERVER_ADDRESS: &str = "server.address";
/// Port of the upstream.
pub const SERVER_PORT: &str = "server.port";

/// Stable error class (`timeout`, `rate_limited`, `upstream_error`, …).
pub const ERROR_TYPE: &str = "error.type";
/// Human-readable error message.
pub const ERROR_MESSAGE: &str = "error.message";
/// Error code (usually the HTTP status).
pub const ERROR_CODE: &str = "error.code";
/// Provider whose call failed.
pub const ERROR_LLM_PROVIDER: &str = "error.llm_provider";
/// Attribute of `Failed Proxy Server Request` holding the error text.
pub const EXCEPTION: &str = "exception";
/// Indexed prompt attributes left out to stay within the span's attribute count limit.
pub const TRACEWAY_PROMPT_TRUNCATED: &str = "traceway.prompt.truncated_attributes";
/// Indexed completion attributes left out to stay within the span's attribute count limit.
pub const TRACEWAY_COMPLETION_TRUNCATED: &str = "traceway.completion.truncated_attributes";
/// Span event carrying content when content capture includes events (OTel GenAI v1.41).
pub const EVENT_INFERENCE_DETAILS: &str = "gen_ai.client.inference.operation.details";
/// Name of the span event recording an error.
pub const EVENT_EXCEPTION: &str = "exception";
/// Name of the span event, and the `error.type`, of a span whose caller went away first.
pub const CLIENT_DISCONNECTED: &str = "client_disconnected";
/// Type of the exception on the `exception` event.
pub const EXCEPTION_TYPE: &str = "exception.type";
/// Message of the exception on the `exception` event.
pub const EXCEPTION_MESSAGE: &str = "exception.message";
