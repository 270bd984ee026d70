//! Custom operations on a [`Connection`]: an extension's `x.<ext>.<name>`
//! request goes to its handler (see [`crate::extension`]) with the body's
//! raw MessagePack bytes; the handler's body is spliced into the response
//! frame as it is, never decoded nor encoded again. An `x.` operation no
//! extension serves gets `UNKNOWN_OPERATION`, as any unknown operation does.

use actix::prelude::*;
use bytes::Bytes;
use herald_actors::error::{BrokerError, ErrorCode};
use serde::de::{Deserialize, IgnoredAny};

use super::budget::Admission;
use super::fetch::ResponseBody;
use super::writer::Frame;
use super::Connection;
use crate::extension::{CustomError, CustomRequest, EXTENSION_ERROR_CODES};
use crate::protocol::{self, CustomCall, ResponseHeader};

/// A custom operation's answer, as the frame carries it.
enum CustomAnswer {
    Body(Bytes),
    Error(CustomError),
}

impl ResponseBody for CustomAnswer {
    fn frame(self, correlation_id: u32, throttle_time_ms: Option<u32>) -> Frame {
        match self {
            CustomAnswer::Body(body) => Frame { head: body_head(correlation_id, throttle_time_ms), body },
            CustomAnswer::Error(error) => {
                let header = ResponseHeader {
                    correlation_id,
                    error_code: error.code,
                    error_message: Some(error.message.clone()),
                    first_damaged_offset: None,
                    next_valid_offset: None,
                    throttle_time_ms,
                };
                match rmp_serde::to_vec_named(&header) {
                    Ok(bytes) => Bytes::from(bytes).into(),
                    Err(_) => {
                        protocol::encode_error(correlation_id, ErrorCode::UNKNOWN_SERVER_ERROR, &error.message, None)
                            .into()
                    }
                }
            }
        }
    }
}

/// A success response's map up to its `body` value: `correlation_id`,
/// `error_code` 0, `error_message` nil, `throttle_time_ms` when held for a
/// quota, then the key `body`.
fn body_head(correlation_id: u32, throttle_time_ms: Option<u32>) -> Bytes {
    let mut head = protocol::encode_ok_throttled(correlation_id, throttle_time_ms, &protocol::Empty {}).to_vec();
    // The header alone is a fixmap of three or four entries: one more for `body`.
    debug_assert!(matches!(head.first(), Some(0x83 | 0x84)));
    head[0] += 1;
    head.extend_from_slice(&[0xa4, b'b', b'o', b'd', b'y']);
    Bytes::from(head)
}

/// Whether `bytes` are exactly one MessagePack value.
fn one_value(bytes: &[u8]) -> bool {
    let mut cursor = std::io::Cursor::new(bytes);
    let read = IgnoredAny::deserialize(&mut rmp_serde::Deserializer::new(&mut cursor));
    read.is_ok() && cursor.position() == bytes.len() as u64
}

/// The answer the client gets for a handler's result: its body if it is one
/// MessagePack value that fits a frame; its error if the code is an
/// extension's (2000-2999) or a broker code; otherwise `UNKNOWN_SERVER_ERROR`.
fn checked(op: &str, result: Result<Bytes, CustomError>, max_frame_bytes: usize) -> CustomAnswer {
    let broken = |message: String| {
        tracing::error!(op, %message, "custom operation answered wrongly");
        CustomAnswer::Error(CustomError::new(ErrorCode::UNKNOWN_SERVER_ERROR.code(), message))
    };
    match result {
        Ok(body) if !one_value(&body) => {
            broken(format!("the handler of `{op}` answered a body that is not one MessagePack value"))
        }
        Ok(body) if body.len() + 64 > max_frame_bytes => broken(format!(
            "the handler of `{op}` answered {} bytes; a response frame may be at most max_frame_bytes {max_frame_bytes}",
            body.len()
        )),
        Ok(body) => CustomAnswer::Body(body),
        Err(error)
            if EXTENSION_ERROR_CODES.contains(&error.code)
                || ErrorCode::from_code(error.code).is_some_and(|c| c != ErrorCode::NONE) =>
        {
            CustomAnswer::Error(error)
        }
        Err(error) => broken(format!(
            "the handler of `{op}` answered error code {} ({}), outside 2000-2999 and the broker's codes",
            error.code, error.message
        )),
    }
}

impl Connection {
    pub(super) fn custom(&mut self, correlation_id: u32, call: CustomCall, permit: Admission, ctx: &mut Context<Self>) {
        let op = call.op.clone();
        let request = CustomRequest { op: call.op, body: call.body, client_id: self.client_id().to_owned() };
        let Some(sent) = self.extensions.call(request) else {
            let error = BrokerError::new(ErrorCode::UNKNOWN_OPERATION, format!("unknown operation `{op}`"));
            return self.respond(correlation_id, permit, async move { Err::<Option<protocol::Empty>, _>(error) }, ctx);
        };
        let max_frame_bytes = self.limits.max_frame_bytes;
        self.respond(correlation_id, permit, async move { Ok(Some(checked(&op, sent.await, max_frame_bytes))) }, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_spliced_after_the_header_as_one_map() {
        let body = Bytes::from(rmp_serde::to_vec(&("a", 1)).unwrap());
        let frame = CustomAnswer::Body(body).frame(9, None);
        let whole = [frame.head.as_ref(), frame.body.as_ref()].concat();
        let value: rmpv::Value = rmp_serde::from_slice(&whole).unwrap();
        let map = value.as_map().unwrap();
        let keys: Vec<&str> = map.iter().map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["correlation_id", "error_code", "error_message", "body"]);
        assert_eq!(map[3].1, rmpv::Value::Array(vec!["a".into(), 1.into()]));
    }

    #[test]
    fn bodies_and_codes_are_checked() {
        assert!(one_value(&[0xc0]) && !one_value(&[]) && !one_value(&[0xc0, 0xc0]) && !one_value(&[0x92, 0x01]));
        let code = |answer: CustomAnswer| match answer {
            CustomAnswer::Error(e) => e.code,
            CustomAnswer::Body(_) => 0,
        };
        assert_eq!(code(checked("x.a.b", Ok(Bytes::from_static(&[0xc0])), 1024)), 0);
        assert_eq!(code(checked("x.a.b", Ok(Bytes::from_static(&[0xc0])), 10)), -1, "too large");
        assert_eq!(code(checked("x.a.b", Err(CustomError::new(2001, "no")), 1024)), 2001);
        assert_eq!(code(checked("x.a.b", Err(CustomError::new(3, "no")), 1024)), 3);
        assert_eq!(code(checked("x.a.b", Err(CustomError::new(0, "no")), 1024)), -1);
        assert_eq!(code(checked("x.a.b", Err(CustomError::new(1500, "no")), 1024)), -1);
    }
}
