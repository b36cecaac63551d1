//! How messages travel between nodes: one frame is one CBOR-encoded [`Message`]. Every
//! transport (TCP natively, an RTCDataChannel in a tab) carries frames of an authenticated peer
//! and hands them to [`crate::NodeCore::on_frame`], which decodes them here, within limits.

use tabnet_consensus::Message;

/// Frames larger than this are refused (a block of 4 MiB of ingress, a catch-up of 8 MiB fit).
pub const MAX_FRAME: usize = 16 << 20;
/// What a frame received and not yet taken counts beyond its bytes, against a link's cap on
/// such frames (so that a flood of empty frames is capped too).
pub const FRAME_OVERHEAD: usize = 64;

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

/// Bytes of a frame in one data-channel message, whose first byte is the flag: a message is at
/// most 65,535 bytes, which every endpoint takes without saying so (without `max-message-size`
/// in the SDP the limit is 64 KiB, RFC 8841; webrtc-rs states none and reads messages into a
/// buffer of 65,535 bytes).
pub const FRAGMENT: usize = u16::MAX as usize - 1;
const MORE: u8 = 1;
const LAST: u8 = 0;

/// How a frame crosses an RTCDataChannel, in a tab and natively alike: cut into messages of at
/// most [`FRAGMENT`] bytes, each led by a byte that says whether more follow (an empty frame is
/// one message, the lone flag).
pub fn fragments(frame: &[u8]) -> Vec<Vec<u8>> {
    if frame.is_empty() {
        return vec![vec![LAST]];
    }
    let mut out = Vec::with_capacity(frame.len().div_ceil(FRAGMENT));
    let mut chunks = frame.chunks(FRAGMENT).peekable();
    while let Some(chunk) = chunks.next() {
        let mut message = Vec::with_capacity(chunk.len() + 1);
        message.push(if chunks.peek().is_some() { MORE } else { LAST });
        message.extend_from_slice(chunk);
        out.push(message);
    }
    out
}

/// Puts a peer's data-channel messages back into frames. A message that breaks the framing (empty,
/// over [`FRAGMENT`], or growing a frame past [`MAX_FRAME`]) is an error: the link is cut before
/// the bytes are held.
#[derive(Default)]
pub struct Reassembler {
    partial: Vec<u8>,
}

impl Reassembler {
    /// Takes one message; returns the frame it completes, if it does.
    pub fn push(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let len = message.len();
        if len == 0 || len > FRAGMENT + 1 || self.partial.len() + len - 1 > MAX_FRAME {
            return Err(format!("a fragment of {len} bytes after {} (frames are at most {MAX_FRAME} bytes)", self.partial.len()));
        }
        self.partial.extend_from_slice(&message[1..]);
        Ok((message[0] == LAST).then(|| std::mem::take(&mut self.partial)))
    }
}

/// The `a=fingerprint:` value of an SDP (algorithm and hex, lower case), if it states one.
pub fn sdp_fingerprint(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=fingerprint:")).map(|f| f.trim().to_ascii_lowercase())
}

/// What the gossip handshake binds its proof to on a WebRTC link: both DTLS certificate
/// fingerprints as the two descriptions state them, in a fixed order (the same bytes on both
/// sides), so a relay in the middle that terminated DTLS itself could not reuse a proof.
pub fn channel_binding(local_sdp: &str, remote_sdp: &str) -> Option<Vec<u8>> {
    let (local, remote) = (sdp_fingerprint(local_sdp)?, sdp_fingerprint(remote_sdp)?);
    let (a, b) = if local <= remote { (local, remote) } else { (remote, local) };
    Some(format!("webrtc-dtls {a} {b}").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_in_fragments_and_come_back_whole() {
        for len in [0, 1, FRAGMENT - 1, FRAGMENT, FRAGMENT + 1, 3 * FRAGMENT + 7] {
            let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let messages = fragments(&frame);
            assert!(messages.iter().all(|m| m.len() <= FRAGMENT + 1));
            let mut r = Reassembler::default();
            let (last, init) = messages.split_last().unwrap();
            for m in init {
                assert_eq!(r.push(m).unwrap(), None);
            }
            assert_eq!(r.push(last).unwrap(), Some(frame));
        }
    }

    #[test]
    fn a_peer_breaking_the_framing_is_refused_before_its_bytes_are_held() {
        let mut r = Reassembler::default();
        assert!(r.push(&[]).is_err());
        assert!(r.push(&vec![MORE; FRAGMENT + 2]).is_err());
        // Fragments that never end stop at MAX_FRAME.
        let more = vec![MORE; FRAGMENT + 1];
        let mut r = Reassembler::default();
        let taken = (0..).take_while(|_| r.push(&more).is_ok()).count();
        assert_eq!(taken, MAX_FRAME / FRAGMENT);
    }

    #[test]
    fn both_sides_bind_the_same_fingerprints() {
        let a = "v=0\r\na=fingerprint:sha-256 AB:CD\r\n";
        let b = "v=0\r\na=fingerprint:sha-256 01:02\r\n";
        assert_eq!(channel_binding(a, b), channel_binding(b, a));
        assert_eq!(channel_binding(a, b).unwrap(), b"webrtc-dtls sha-256 01:02 sha-256 ab:cd".to_vec());
        assert_eq!(channel_binding(a, "v=0\r\n"), None);
    }
}
