//! Calling an extension's custom operation (`x.<extension>.<name>`; see
//! docs/protocol.md, "Custom operations").

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use herald_wire::protocol::{custom_response_body, encode_custom_request};

use crate::{decode_response, Client, ClientError};

/// A custom request's fields: its body under `body`.
#[derive(Serialize)]
struct CallBody<'a, T: ?Sized> {
    body: &'a T,
}

/// A custom response's fields.
#[derive(Deserialize)]
struct CallAnswer<T> {
    body: T,
}

impl Client {
    /// Calls the custom operation `op` with `body` (any value serde can
    /// encode as MessagePack) and decodes the response's body as `T`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Broker`] with the extension's code (2000-2999) or a
    /// broker code: `UNKNOWN_OPERATION` when the broker does not serve `op`,
    /// `EXTENSION_UNAVAILABLE` (retriable) when its handler failed or is
    /// restarting. [`ClientError::Protocol`] when the body is not a `T`.
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(&self, op: &str, body: &B) -> Result<T, ClientError> {
        let answer: CallAnswer<T> = self.request(op, &CallBody { body }).await?;
        Ok(answer.body)
    }

    /// [`Client::call`] with the body already encoded: `body` must be the
    /// MessagePack bytes of one value; the answer is the response body's
    /// MessagePack bytes, as the extension wrote them.
    ///
    /// # Errors
    ///
    /// As [`Client::call`].
    pub async fn call_raw(&self, op: &str, body: &[u8]) -> Result<Bytes, ClientError> {
        self.check_offered(op)?;
        let id = crate::next_correlation_id(&self.next_id);
        let payload = encode_custom_request(id, op, body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if payload.len() > self.max_frame_bytes() {
            return Err(crate::too_large(op, payload.len(), self.max_frame_bytes()));
        }
        let mut frame = Vec::with_capacity(crate::LENGTH_BYTES + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        let rx = self.enqueue(id, Bytes::from(frame))?;
        let frame = self.answer(op, id, rx, std::time::Duration::ZERO).await?;
        decode_response::<serde::de::IgnoredAny>(&frame)?;
        custom_response_body(&frame).ok_or_else(|| ClientError::Protocol(format!("`{op}` response has no `body`")))
    }
}
