//! How messages travel between nodes: one frame is one CBOR-encoded [`Message`]. Every
//! transport (TCP natively, an RTCDataChannel in a tab) carries frames of an authenticated peer
//! and hands them to [`crate::NodeCore::on_frame`], which decodes them here, within limits.

use tabnet_consensus::Message;

/// Frames larger than this are refused (a block of 4 MiB of ingress, a catch-up of 8 MiB fit).
pub const MAX_FRAME: usize = 16 << 20;

pub fn encode(message: &Message) -> Vec<u8> {
    crate::cbor(message)
}

/// The message a peer's frame holds. An empty frame is a keepalive (`Ok(None)`).
pub fn decode(frame: &[u8]) -> Result<Option<Message>, String> {
    if frame.is_empty() {
        return Ok(None);
    }
    if frame.len() > MAX_FRAME {
        return Err(format!("a frame of {} bytes; at most {MAX_FRAME} are allowed", frame.len()));
    }
    // ciborium bounds nesting (its recursion limit), reads byte strings in segments as they
    // arrive, and serde caps what a claimed sequence length preallocates: a hostile frame
    // costs memory in proportion to its own size.
    ciborium::from_reader(frame).map(Some).map_err(|e| format!("not a message: {e}"))
}

/// Any value in CBOR (records and messages alike).
pub fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    crate::cbor(value)
}
