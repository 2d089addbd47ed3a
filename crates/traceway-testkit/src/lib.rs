//! Real servers for Traceway's tests: a mock OpenAI upstream that records what it receives,
//! an OTLP receiver that decodes what it gets, and span-tree assertions.

pub mod anthropic_upstream;
pub mod azure_upstream;
pub mod bedrock_upstream;
pub mod cohere_upstream;
pub mod gemini_upstream;
pub mod mock_upstream;
pub mod ollama_upstream;
pub mod openai_compatible_upstream;
pub mod openai_upstream;
pub mod otlp;
pub mod scripted_upstream;
pub mod span_counter;
pub mod span_tree;
pub mod tls_front;
