//! Real servers for Traceway's tests: a mock OpenAI upstream that records what it receives,
//! an OTLP receiver that decodes what it gets, and span-tree assertions.

pub mod openai_upstream;
pub mod otlp;
pub mod span_tree;
