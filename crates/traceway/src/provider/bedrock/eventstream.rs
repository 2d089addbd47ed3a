//! The AWS event-stream framing of ConverseStream, as a [`FrameDecoder`].
//!
//! A message is `total length (u32) | headers length (u32) | prelude CRC32 | headers | payload |
//! message CRC32`, big-endian. This decoder buffers bytes, checks the prelude's CRC as soon as
//! the 12 prelude bytes are in (so a corrupted length is caught at once, not waited on), bounds
//! the length, and hands each complete message to `aws-smithy-eventstream`, AWS's maintained
//! parser, which checks the message CRC and decodes the typed headers.
//!
//! Each message becomes one frame: an event's `:event-type` is the frame's `event` and its JSON
//! payload the `data`. An exception (`:message-type` `exception`, named by `:exception-type`)
//! or a generic error (`:message-type` `error`, `:error-code` and `:error-message` headers)
//! becomes a frame whose `event` starts with [`EXCEPTION_PREFIX`], for the stream parser to
//! turn into an error.

use crate::error::{Error, ErrorKind};
use crate::provider::FrameDecoder;
use crate::sse::SseEvent;
use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};

/// Prefix of the frame `event` that carries an exception (`exception:throttlingException`).
pub(crate) const EXCEPTION_PREFIX: &str = "exception:";

/// Bytes of the prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// The smallest message: a prelude and a message CRC.
const MIN_MESSAGE_LEN: usize = 16;
/// The largest message accepted; AWS documents 16 MiB as the event-stream maximum.
const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;

/// Splits an event-stream body into frames.
#[derive(Debug, Default)]
pub(crate) struct EventStreamDecoder {
    buf: Vec<u8>,
}

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        format!("bedrock sent an invalid event-stream message: {what}"),
    )
}

fn be_u32(bytes: &[u8]) -> usize {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word) as usize
}

fn string_header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// The frame one decoded message stands for.
fn frame(message: &Message) -> Result<SseEvent, Error> {
    let payload =
        std::str::from_utf8(message.payload()).map_err(|_| invalid("a payload is not UTF-8"))?;
    match string_header(message, ":message-type") {
        Some("event") => {
            let kind = string_header(message, ":event-type")
                .ok_or_else(|| invalid("an event has no :event-type header"))?;
            Ok(SseEvent {
                event: Some(kind.to_owned()),
                data: payload.to_owned(),
            })
        }
        Some("exception") => {
            let kind = string_header(message, ":exception-type").unwrap_or("exception");
            Ok(SseEvent {
                event: Some(format!("{EXCEPTION_PREFIX}{kind}")),
                data: payload.to_owned(),
            })
        }
        Some("error") => {
            let code = string_header(message, ":error-code").unwrap_or("error");
            let text = string_header(message, ":error-message").unwrap_or("");
            Ok(SseEvent {
                event: Some(format!("{EXCEPTION_PREFIX}{code}")),
                data: serde_json::json!({ "message": text }).to_string(),
            })
        }
        Some(other) => Err(invalid(format_args!("unknown :message-type \"{other}\""))),
        None => Err(invalid("a message has no :message-type header")),
    }
}

impl FrameDecoder for EventStreamDecoder {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, Error> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            if rest.len() < PRELUDE_LEN {
                break;
            }
            let prelude_crc = be_u32(&rest[8..12]) as u32;
            if crc32fast::hash(&rest[..8]) != prelude_crc {
                return Err(invalid("the prelude checksum does not match"));
            }
            let total = be_u32(&rest[..4]);
            if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&total) {
                return Err(invalid(format_args!("a message claims {total} bytes")));
            }
            if rest.len() < total {
                break;
            }
            let message = read_message_from(&rest[..total]).map_err(invalid)?;
            frames.push(frame(&message)?);
            start += total;
        }
        self.buf.drain(..start);
        Ok(frames)
    }

    fn finish(&mut self) -> Result<Option<SseEvent>, Error> {
        if self.buf.is_empty() {
            Ok(None)
        } else {
            let left = self.buf.len();
            self.buf.clear();
            Err(invalid(format_args!(
                "the stream ended inside a message ({left} bytes left over)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        let m = Message::new(payload.as_bytes().to_vec())
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String(kind.to_owned().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            ));
        let mut out = Vec::new();
        write_message_to(&m, &mut out).unwrap();
        out
    }

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, Error> {
        let mut d = EventStreamDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(d.push(c)?);
        }
        out.extend(d.finish()?);
        Ok(out)
    }

    #[test]
    fn frames_split_at_every_byte_decode_the_same() {
        let mut bytes = event("messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hé"}}"#,
        ));
        let whole = decode_all(&[&bytes]).unwrap();
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].event.as_deref(), Some("messageStart"));
        assert_eq!(
            whole[1].data,
            r#"{"contentBlockIndex":0,"delta":{"text":"Hé"}}"#
        );
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_all(&[&bytes[..cut], &bytes[cut..]]).unwrap(),
                whole,
                "cut at {cut}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_all(&singles).unwrap(), whole);
    }

    #[test]
    fn bad_checksums_lengths_and_truncation_are_errors() {
        let good = event("messageStop", r#"{"stopReason":"end_turn"}"#);
        let mut bad_prelude = good.clone();
        bad_prelude[9] ^= 0xff;
        let e = decode_all(&[&bad_prelude[..12]]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
        assert!(e.message.contains("prelude checksum"), "{}", e.message);

        let mut bad_message = good.clone();
        let n = bad_message.len();
        bad_message[n - 5] ^= 0x01;
        assert_eq!(
            decode_all(&[&bad_message]).unwrap_err().kind,
            ErrorKind::InvalidResponse
        );

        let e = decode_all(&[&good[..good.len() - 3]]).unwrap_err();
        assert!(
            e.message.contains("ended inside a message"),
            "{}",
            e.message
        );

        // A prelude with a valid CRC that claims a huge message is refused at once.
        let mut huge = Vec::new();
        huge.extend_from_slice(&(u32::MAX).to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&huge);
        huge.extend_from_slice(&crc.to_be_bytes());
        let e = decode_all(&[&huge]).unwrap_err();
        assert!(e.message.contains("claims"), "{}", e.message);
    }

    #[test]
    fn exceptions_and_errors_become_marked_frames() {
        let m = Message::new(br#"{"message":"slow down"}"#.to_vec())
            .add_header(Header::new(
                ":exception-type",
                HeaderValue::String("throttlingException".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("exception".into()),
            ));
        let mut bytes = Vec::new();
        write_message_to(&m, &mut bytes).unwrap();
        let m = Message::new(Vec::new())
            .add_header(Header::new(
                ":error-code",
                HeaderValue::String("InternalFailure".into()),
            ))
            .add_header(Header::new(
                ":error-message",
                HeaderValue::String("boom".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("error".into()),
            ));
        write_message_to(&m, &mut bytes).unwrap();
        let frames = decode_all(&[&bytes]).unwrap();
        assert_eq!(
            frames[0].event.as_deref(),
            Some("exception:throttlingException")
        );
        assert_eq!(frames[0].data, r#"{"message":"slow down"}"#);
        assert_eq!(
            frames[1].event.as_deref(),
            Some("exception:InternalFailure")
        );
        assert!(frames[1].data.contains("boom"));
    }
}
