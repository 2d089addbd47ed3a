//! Span-tree assertions: rebuild parent → children from received spans and compare shapes.
//!
//! ```ignore
//! let tree = SpanTree::build(&receiver.wait_for_spans(2, secs(5)).await)?;
//! assert_eq!(tree.render(), "Received Proxy Server Request [SERVER]\n  raw_gen_ai_request [CLIENT]");
//! let raw = tree.find("raw_gen_ai_request");
//! assert_eq!(tree.parent_of(raw).map(|p| p.name.as_str()), Some("Received Proxy Server Request"));
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use crate::otlp::ReceivedSpan;

/// Why received spans do not form a valid tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// Two spans of one trace share a span id.
    #[error("duplicate span id {span_id} in trace {trace_id} (spans {first:?} and {second:?})")]
    DuplicateSpanId {
        /// The trace.
        trace_id: String,
        /// The repeated id.
        span_id: String,
        /// Name of the first span with it.
        first: String,
        /// Name of the second span with it.
        second: String,
    },
    /// A span whose end is before its start.
    #[error("span {name:?} ({span_id}) ends before it starts ({end} < {start} ns)")]
    EndBeforeStart {
        /// Span name.
        name: String,
        /// Span id.
        span_id: String,
        /// Start, ns.
        start: u64,
        /// End, ns.
        end: u64,
    },
    /// A span with no end time (it was never ended properly).
    #[error("span {name:?} ({span_id}) has end time 0")]
    ZeroEndTime {
        /// Span name.
        name: String,
        /// Span id.
        span_id: String,
    },
}

/// Received spans arranged as parent → children, per trace.
#[derive(Debug, Clone)]
pub struct SpanTree {
    spans: Vec<ReceivedSpan>,
    /// (trace id, span id) → index into `spans`.
    by_id: HashMap<(String, String), usize>,
    /// Parent index → child indices, sorted by start time then name.
    children: BTreeMap<usize, Vec<usize>>,
    /// Spans without a parent among the received ones, sorted by start time then name.
    roots: Vec<usize>,
}

impl SpanTree {
    /// Builds the tree. A span whose parent was not received (e.g. a remote parent from an
    /// incoming `traceparent`) counts as a root.
    pub fn build(spans: &[ReceivedSpan]) -> Result<SpanTree, TreeError> {
        let spans = spans.to_vec();
        let mut by_id = HashMap::new();
        for (i, s) in spans.iter().enumerate() {
            if s.end_unix_nanos == 0 {
                return Err(TreeError::ZeroEndTime {
                    name: s.name.clone(),
                    span_id: s.span_id.clone(),
                });
            }
            if s.end_unix_nanos < s.start_unix_nanos {
                return Err(TreeError::EndBeforeStart {
                    name: s.name.clone(),
                    span_id: s.span_id.clone(),
                    start: s.start_unix_nanos,
                    end: s.end_unix_nanos,
                });
            }
            if let Some(&j) = by_id.get(&(s.trace_id.clone(), s.span_id.clone())) {
                let first: &ReceivedSpan = &spans[j];
                return Err(TreeError::DuplicateSpanId {
                    trace_id: s.trace_id.clone(),
                    span_id: s.span_id.clone(),
                    first: first.name.clone(),
                    second: s.name.clone(),
                });
            }
            by_id.insert((s.trace_id.clone(), s.span_id.clone()), i);
        }

        let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut roots = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            let parent = s
                .parent_span_id
                .as_ref()
                .and_then(|p| by_id.get(&(s.trace_id.clone(), p.clone())));
            match parent {
                Some(&p) => children.entry(p).or_default().push(i),
                None => roots.push(i),
            }
        }
        let order = |a: &usize, b: &usize| {
            let (a, b) = (&spans[*a], &spans[*b]);
            (a.start_unix_nanos, &a.name).cmp(&(b.start_unix_nanos, &b.name))
        };
        roots.sort_by(order);
        for list in children.values_mut() {
            list.sort_by(order);
        }
        Ok(SpanTree {
            spans,
            by_id,
            children,
            roots,
        })
    }

    /// Every span, in the order received.
    pub fn spans(&self) -> &[ReceivedSpan] {
        &self.spans
    }

    /// Spans without a received parent, oldest first.
    pub fn roots(&self) -> Vec<&ReceivedSpan> {
        self.roots.iter().map(|&i| &self.spans[i]).collect()
    }

    /// Direct children of `span`, oldest first.
    pub fn children_of(&self, span: &ReceivedSpan) -> Vec<&ReceivedSpan> {
        self.index_of(span)
            .and_then(|i| self.children.get(&i))
            .map(|list| list.iter().map(|&i| &self.spans[i]).collect())
            .unwrap_or_default()
    }

    /// The received parent of `span`, if any.
    pub fn parent_of(&self, span: &ReceivedSpan) -> Option<&ReceivedSpan> {
        let parent = span.parent_span_id.as_ref()?;
        self.by_id
            .get(&(span.trace_id.clone(), parent.clone()))
            .map(|&i| &self.spans[i])
    }

    /// The only span named `name`.
    ///
    /// # Panics
    /// When there is no such span or more than one, listing the names there are.
    pub fn find(&self, name: &str) -> &ReceivedSpan {
        let found = self.find_all(name);
        match found.as_slice() {
            [one] => one,
            [] => panic!("no span named {name:?}; spans received: {:?}", self.names()),
            many => panic!(
                "{} spans named {name:?}, expected exactly one; spans received: {:?}",
                many.len(),
                self.names()
            ),
        }
    }

    /// Every span named `name`, in the order received.
    pub fn find_all(&self, name: &str) -> Vec<&ReceivedSpan> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    /// The names of all spans, in the order received.
    pub fn names(&self) -> Vec<&str> {
        self.spans.iter().map(|s| s.name.as_str()).collect()
    }

    /// The shape as text: one line per span, `name [KIND]`, children indented two spaces,
    /// siblings oldest first, no trailing newline.
    pub fn render(&self) -> String {
        let mut lines = Vec::new();
        for &root in &self.roots {
            self.render_into(root, 0, &mut lines);
        }
        lines.join("\n")
    }

    fn render_into(&self, i: usize, depth: usize, lines: &mut Vec<String>) {
        let s = &self.spans[i];
        lines.push(format!(
            "{}{} [{}]",
            "  ".repeat(depth),
            s.name,
            s.kind.as_str()
        ));
        for &child in self.children.get(&i).map(Vec::as_slice).unwrap_or_default() {
            self.render_into(child, depth + 1, lines);
        }
    }

    fn index_of(&self, span: &ReceivedSpan) -> Option<usize> {
        self.by_id
            .get(&(span.trace_id.clone(), span.span_id.clone()))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{SpanKind, Status};

    fn span(
        name: &str,
        id: &str,
        parent: Option<&str>,
        kind: SpanKind,
        start: u64,
    ) -> ReceivedSpan {
        ReceivedSpan {
            trace_id: "t1".into(),
            span_id: id.into(),
            parent_span_id: parent.map(Into::into),
            name: name.into(),
            kind,
            status: Status::Unset,
            attributes: Default::default(),
            events: Vec::new(),
            resource: Default::default(),
            scope_name: "traceway".into(),
            scope_version: String::new(),
            start_unix_nanos: start,
            end_unix_nanos: start + 10,
        }
    }

    fn sample() -> Vec<ReceivedSpan> {
        vec![
            span("raw_gen_ai_request", "c2", Some("m"), SpanKind::Client, 30),
            span("raw_gen_ai_request", "c1", Some("m"), SpanKind::Client, 20),
            span("litellm_request", "m", Some("r"), SpanKind::Internal, 10),
            span(
                "Received Proxy Server Request",
                "r",
                Some("remote"),
                SpanKind::Server,
                0,
            ),
        ]
    }

    #[test]
    fn renders_the_shape() {
        let tree = SpanTree::build(&sample()).unwrap();
        assert_eq!(
            tree.render(),
            "Received Proxy Server Request [SERVER]\n  litellm_request [INTERNAL]\n    raw_gen_ai_request [CLIENT]\n    raw_gen_ai_request [CLIENT]"
        );
        let m = tree.find("litellm_request");
        assert_eq!(
            tree.children_of(m)
                .iter()
                .map(|s| s.span_id.as_str())
                .collect::<Vec<_>>(),
            ["c1", "c2"]
        );
        assert_eq!(tree.parent_of(m).unwrap().span_id, "r");
        assert_eq!(tree.roots().len(), 1);
        assert_eq!(tree.find_all("raw_gen_ai_request").len(), 2);
    }

    #[test]
    #[should_panic(expected = "2 spans named \"raw_gen_ai_request\"")]
    fn find_panics_on_ambiguity() {
        SpanTree::build(&sample())
            .unwrap()
            .find("raw_gen_ai_request");
    }

    #[test]
    #[should_panic(expected = "no span named \"nope\"")]
    fn find_panics_when_missing() {
        SpanTree::build(&sample()).unwrap().find("nope");
    }

    #[test]
    fn rejects_broken_spans() {
        let mut spans = sample();
        spans.push(span("dup", "m", None, SpanKind::Internal, 5));
        assert!(matches!(
            SpanTree::build(&spans),
            Err(TreeError::DuplicateSpanId { .. })
        ));

        let mut spans = sample();
        spans[0].end_unix_nanos = 0;
        assert!(matches!(
            SpanTree::build(&spans),
            Err(TreeError::ZeroEndTime { .. })
        ));

        let mut spans = sample();
        spans[1].end_unix_nanos = 1;
        assert_eq!(
            SpanTree::build(&spans).unwrap_err().to_string(),
            "span \"raw_gen_ai_request\" (c1) ends before it starts (1 < 20 ns)"
        );
    }
}
