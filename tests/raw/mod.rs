//! Raw frames for the wire tests: a bare TCP connection to the broker that
//! sends MessagePack payloads built by hand and reads responses as values,
//! bypassing the client.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use herald::protocol::ResponseHeader;
use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::common::PATIENCE;

/// A MessagePack map with string keys.
pub fn map(fields: &[(&str, Value)]) -> Value {
    Value::Map(fields.iter().map(|(k, v)| (Value::from(*k), v.clone())).collect())
}

/// A request map: `correlation_id`, `op`, then the operation's fields.
pub fn request(correlation_id: u32, op: &str, fields: &[(&str, Value)]) -> Vec<u8> {
    let mut all = vec![("correlation_id", Value::from(correlation_id)), ("op", Value::from(op))];
    all.extend_from_slice(fields);
    encode(&map(&all))
}

pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("encode into a Vec");
    out
}

/// A length-prefixed frame.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

pub fn handshake(correlation_id: u32) -> Vec<u8> {
    request(correlation_id, "handshake", &[("client_id", "raw".into()), ("protocol_version", 1.into())])
}

/// A field of a MessagePack map, nil when absent.
pub fn get<'a>(map: &'a Value, name: &str) -> &'a Value {
    let fields = map.as_map().expect("a map");
    fields.iter().find(|(k, _)| k.as_str() == Some(name)).map(|(_, v)| v).unwrap_or(&Value::Nil)
}

/// One response: its common header and the whole map.
#[derive(Debug)]
pub struct Response {
    pub header: ResponseHeader,
    pub body: Value,
}

impl Response {
    pub fn field(&self, name: &str) -> &Value {
        get(&self.body, name)
    }

    pub fn assert_error(&self, correlation_id: u32, error_code: i16) {
        assert_eq!((self.header.correlation_id, self.header.error_code), (correlation_id, error_code), "{self:?}");
        let message = self.header.error_message.as_deref().unwrap_or_default();
        assert!(!message.is_empty(), "an error response explains itself: {self:?}");
    }

    pub fn assert_ok(&self, correlation_id: u32) {
        assert_eq!((self.header.correlation_id, self.header.error_code), (correlation_id, 0), "{self:?}");
    }
}

/// A raw TCP connection to the broker.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw { stream: TcpStream::connect(addr).await.expect("connect") }
    }

    /// Connects and completes the handshake (correlation id 1).
    pub async fn ready(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(&handshake(1)).await;
        raw.response().await.assert_ok(1);
        raw
    }

    /// A handshaken connection, once it has created `topic` with `config`.
    pub async fn ready_with_topic(addr: SocketAddr, topic: &str, partitions: i64, config: Vec<(&str, Value)>) -> Raw {
        let mut raw = Raw::ready(addr).await;
        let config = Value::Map(config.into_iter().map(|(k, v)| (k.into(), v)).collect());
        let fields = [("topic", topic.into()), ("partitions", partitions.into()), ("config", config)];
        raw.send(&request(2, "create_topic", &fields)).await;
        raw.response().await.assert_ok(2);
        raw
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to the broker");
    }

    /// Sends one payload as a frame.
    pub async fn send(&mut self, payload: &[u8]) {
        self.write(&frame(payload)).await;
    }

    /// Reads one response frame.
    pub async fn response(&mut self) -> Response {
        self.response_within(PATIENCE).await.expect("a response in time")
    }

    /// Reads one response frame, or `None` if none comes within `wait`.
    pub async fn response_within(&mut self, wait: Duration) -> Option<Response> {
        let mut length = [0u8; 4];
        match timeout(wait, self.stream.read_exact(&mut length)).await {
            Err(_) => return None,
            Ok(read) => read.expect("a response frame"),
        };
        let mut payload = vec![0u8; u32::from_be_bytes(length) as usize];
        timeout(PATIENCE, self.stream.read_exact(&mut payload))
            .await
            .expect("the rest of the frame in time")
            .expect("the rest of the frame");
        let header: ResponseHeader = rmp_serde::from_slice(&payload).expect("a response header");
        let mut rest = &payload[..];
        let body = rmpv::decode::read_value(&mut rest).expect("a MessagePack value");
        assert!(rest.is_empty(), "a frame holds exactly one MessagePack value");
        Some(Response { header, body })
    }

    /// Asserts that the broker closes the connection without sending anything
    /// more. A close with unread data may arrive as a reset rather than an
    /// end of stream; both mean the broker closed.
    pub async fn assert_closed(&mut self) {
        let mut buf = [0u8; 64];
        match timeout(PATIENCE, self.stream.read(&mut buf)).await.expect("the broker closes in time") {
            Ok(0) => {}
            Ok(n) => panic!("expected a close, got {n} more bytes: {:?}", &buf[..n]),
            Err(err) if err.kind() == ErrorKind::ConnectionReset => {}
            Err(err) => panic!("expected a close, got {err}"),
        }
    }
}
