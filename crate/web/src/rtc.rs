//! A link to one peer over WebRTC: an `RTCPeerConnection` with one negotiated, ordered,
//! reliable data channel that carries the node's frames.
//!
//! - Signaling is the caller's: [`RtcLink::offer`] gives the SDP to send, [`RtcLink::answer`]
//!   answers one, [`RtcLink::accept`] takes the answer. ICE candidates ride in the SDP (the
//!   link waits for gathering to finish: tabs of one machine gather host candidates at once and
//!   no ICE servers are configured), so one message each way connects.
//! - Frames cross in fragments of at most 64 KiB ([`FRAGMENT`]), as `tabnet_node::codec` cuts
//!   and reassembles them (the native member of a tab subnet does the same): a peer breaking the
//!   framing is cut off before its bytes are held. The browser cannot push a peer back (a data
//!   channel delivers every message), so a peer whose frames the node has not yet taken pass
//!   [`RECEIVED_BYTES`] is cut off too.
//! - [`RtcLink::channel_binding`] is what the gossip handshake binds its proof to
//!   ([`tabnet_node::codec::channel_binding`]: both DTLS certificate fingerprints).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Array, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelState, RtcDataChannelType, RtcIceGatheringState,
    RtcPeerConnection, RtcSdpType, RtcSessionDescriptionInit,
};

pub use tabnet_node::codec::FRAGMENT;
use tabnet_node::codec::{fragments, Reassembler, FRAME_OVERHEAD, MAX_FRAME};
/// Fragments are queued in the browser up to this; beyond, [`RtcLink::send`] keeps them here
/// until the channel drains (so a slow peer cannot make the browser buffer without end).
const BROWSER_BUFFER: u32 = 4 << 20;
/// Frames waiting here for the browser's buffer to drain, at most (beyond: dropped, and
/// consensus sends what matters again).
const SEND_QUEUE_BYTES: usize = 64 << 20;

/// Bytes of whole frames received and not yet taken by the node, at most (each frame counts its
/// length and [`FRAME_OVERHEAD`]). The node takes frames every turn; an honest peer's frames
/// in flight (a state-sync chunk, a block) stay far below.
pub const RECEIVED_BYTES: usize = 2 * MAX_FRAME;

/// Wakes the page's node loop early ([`crate::tab_subnet::TabSubnet::wait`]) when something
/// arrives for the node (a whole frame on a link, a call handed over), so that a message does
/// not wait out the loop's sleep: each hop of a round would otherwise add up to that sleep.
#[derive(Clone, Default)]
pub struct Wake(Rc<RefCell<Option<js_sys::Function>>>);

impl Wake {
    /// Resolves the loop's current wait, if it waits.
    pub fn now(&self) {
        if let Some(resolve) = self.0.borrow_mut().take() {
            let _ = resolve.call0(&JsValue::NULL);
        }
    }

    /// What the next [`Wake::now`] resolves.
    pub fn set(&self, resolve: js_sys::Function) {
        *self.0.borrow_mut() = Some(resolve);
    }
}

#[derive(Default)]
struct Received {
    frames: VecDeque<Vec<u8>>,
    /// What `frames` hold, as [`RECEIVED_BYTES`] counts it.
    held: usize,
    partial: Reassembler,
    open: bool,
    closed: bool,
    /// Why the link was cut (a peer breaking the framing).
    error: Option<String>,
}

/// One peer connection and its data channel.
pub struct RtcLink {
    pc: RtcPeerConnection,
    channel: RtcDataChannel,
    received: Rc<RefCell<Received>>,
    send_queue: RefCell<VecDeque<Vec<u8>>>,
    queued_bytes: RefCell<usize>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_open: Closure<dyn FnMut(JsValue)>,
    _on_close: Closure<dyn FnMut(JsValue)>,
    _on_state: Closure<dyn FnMut(JsValue)>,
}

impl Drop for RtcLink {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.set_onopen(None);
        self.channel.set_onclose(None);
        self.pc.set_onconnectionstatechange(None);
        self.channel.close();
        self.pc.close();
    }
}

impl RtcLink {
    /// A link whose whole frames call `wake` as they arrive.
    pub fn new(wake: Wake) -> Result<Self, JsValue> {
        let config = RtcConfiguration::new();
        config.set_ice_servers(&Array::new());
        let pc = RtcPeerConnection::new_with_configuration(&config)?;
        // Negotiated with a fixed id: both sides make the same channel, no `ondatachannel`.
        let init = RtcDataChannelInit::new();
        init.set_negotiated(true);
        init.set_id(0);
        init.set_ordered(true);
        let channel = pc.create_data_channel_with_data_channel_dict("tabnet", &init);
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        let received = Rc::new(RefCell::new(Received::default()));

        let r = received.clone();
        let ch = channel.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let mut r = r.borrow_mut();
            if r.closed {
                return;
            }
            let Ok(buffer) = e.data().dyn_into::<js_sys::ArrayBuffer>() else {
                r.error = Some("a text message on the data channel".into());
                r.closed = true;
                ch.close();
                return;
            };
            let bytes = Uint8Array::new(&buffer);
            // (Checked before it is copied: a message is at most what the browser delivers.)
            if bytes.length() as usize > FRAGMENT + 1 {
                r.error = Some(format!("a data-channel message of {} bytes (at most {} are allowed)", bytes.length(), FRAGMENT + 1));
                r.closed = true;
                ch.close();
                return;
            }
            match r.partial.push(&bytes.to_vec()) {
                Ok(Some(frame)) if r.held + frame.len() + FRAME_OVERHEAD > RECEIVED_BYTES => {
                    r.error = Some(format!("the peer sent more than {RECEIVED_BYTES} bytes of frames this node had not yet taken"));
                    r.closed = true;
                    r.frames.clear();
                    r.held = 0;
                    ch.close();
                }
                Ok(Some(frame)) => {
                    r.held += frame.len() + FRAME_OVERHEAD;
                    r.frames.push_back(frame);
                    wake.now();
                }
                Ok(None) => {}
                Err(e) => {
                    r.error = Some(e);
                    r.closed = true;
                    ch.close();
                }
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let r = received.clone();
        let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| r.borrow_mut().open = true);
        channel.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        let r = received.clone();
        let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| r.borrow_mut().closed = true);
        channel.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        // A peer that vanishes (tab closed, network gone) fails the connection.
        let r = received.clone();
        let pc2 = pc.clone();
        let on_state = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            use web_sys::RtcPeerConnectionState as S;
            if matches!(pc2.connection_state(), S::Failed | S::Closed | S::Disconnected) {
                r.borrow_mut().closed = true;
            }
        });
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        Ok(Self {
            pc,
            channel,
            received,
            send_queue: RefCell::new(VecDeque::new()),
            queued_bytes: RefCell::new(0),
            _on_message: on_message,
            _on_open: on_open,
            _on_close: on_close,
            _on_state: on_state,
        })
    }

    /// Makes the offer: the SDP to send to the peer.
    pub async fn offer(&self) -> Result<String, JsValue> {
        let offer = JsFuture::from(self.pc.create_offer()).await?;
        let sdp = Reflect::get(&offer, &"sdp".into())?.as_string().ok_or("an offer without SDP")?;
        self.set_local(RtcSdpType::Offer, &sdp).await?;
        self.local_sdp_when_gathered().await
    }

    /// Answers a peer's offer: the SDP to send back.
    pub async fn answer(&self, offer: &str) -> Result<String, JsValue> {
        self.set_remote(RtcSdpType::Offer, offer).await?;
        let answer = JsFuture::from(self.pc.create_answer()).await?;
        let sdp = Reflect::get(&answer, &"sdp".into())?.as_string().ok_or("an answer without SDP")?;
        self.set_local(RtcSdpType::Answer, &sdp).await?;
        self.local_sdp_when_gathered().await
    }

    /// Takes the peer's answer to our offer.
    pub async fn accept(&self, answer: &str) -> Result<(), JsValue> {
        self.set_remote(RtcSdpType::Answer, answer).await
    }

    async fn set_local(&self, kind: RtcSdpType, sdp: &str) -> Result<(), JsValue> {
        let d = RtcSessionDescriptionInit::new(kind);
        d.set_sdp(sdp);
        JsFuture::from(self.pc.set_local_description(&d)).await.map(|_| ())
    }

    async fn set_remote(&self, kind: RtcSdpType, sdp: &str) -> Result<(), JsValue> {
        let d = RtcSessionDescriptionInit::new(kind);
        d.set_sdp(sdp);
        JsFuture::from(self.pc.set_remote_description(&d)).await.map(|_| ())
    }

    /// The local description once ICE gathering completed (its candidates included).
    async fn local_sdp_when_gathered(&self) -> Result<String, JsValue> {
        for _ in 0..200 {
            if self.pc.ice_gathering_state() == RtcIceGatheringState::Complete {
                break;
            }
            sleep(25).await;
        }
        self.pc.local_description().map(|d| d.sdp()).ok_or_else(|| "no local description".into())
    }

    /// Both DTLS fingerprints, in a fixed order (the same bytes on both sides), once both
    /// descriptions are set.
    pub fn channel_binding(&self) -> Option<Vec<u8>> {
        tabnet_node::codec::channel_binding(&self.pc.local_description()?.sdp(), &self.pc.remote_description()?.sdp())
    }

    pub fn is_open(&self) -> bool {
        let r = self.received.borrow();
        r.open && !r.closed && self.channel.ready_state() == RtcDataChannelState::Open
    }

    pub fn is_closed(&self) -> bool {
        self.received.borrow().closed || self.channel.ready_state() == RtcDataChannelState::Closed
    }

    /// Why the link was cut, if the peer broke the framing.
    pub fn error(&self) -> Option<String> {
        self.received.borrow().error.clone()
    }

    /// The next whole frame received, if any.
    pub fn recv(&self) -> Option<Vec<u8>> {
        let mut r = self.received.borrow_mut();
        let frame = r.frames.pop_front()?;
        r.held -= frame.len() + FRAME_OVERHEAD;
        Some(frame)
    }

    /// Queues `frame` for the peer and sends what the browser's buffer takes. Returns `false`
    /// if the frame was dropped (the link is closed, or too much waits already).
    pub fn send(&self, frame: &[u8]) -> bool {
        if self.is_closed() || *self.queued_bytes.borrow() + frame.len() > SEND_QUEUE_BYTES {
            return false;
        }
        let mut queue = self.send_queue.borrow_mut();
        for fragment in fragments(frame) {
            *self.queued_bytes.borrow_mut() += fragment.len();
            queue.push_back(fragment);
        }
        drop(queue);
        self.flush();
        true
    }

    /// Hands queued fragments to the browser while its buffer has room (call on a timer).
    pub fn flush(&self) {
        if !self.is_open() {
            return;
        }
        let mut queue = self.send_queue.borrow_mut();
        while self.channel.buffered_amount() < BROWSER_BUFFER {
            let Some(fragment) = queue.pop_front() else { break };
            *self.queued_bytes.borrow_mut() -= fragment.len();
            if self.channel.send_with_u8_array(&fragment).is_err() {
                self.received.borrow_mut().closed = true;
                queue.clear();
                *self.queued_bytes.borrow_mut() = 0;
                break;
            }
        }
    }

    /// Whether frames still wait to be handed to the browser.
    pub fn has_queued(&self) -> bool {
        !self.send_queue.borrow().is_empty()
    }

    /// Sends one data-channel message as it is, bypassing the framing (to test what a peer that
    /// breaks it gets).
    pub fn send_raw(&self, message: &[u8]) -> Result<(), JsValue> {
        self.channel.send_with_u8_array(message)
    }

    pub fn close(&self) {
        self.received.borrow_mut().closed = true;
        self.channel.close();
        self.pc.close();
    }
}

/// Resolves after `ms` milliseconds (in a page or a worker).
pub async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| set_timeout(&resolve, f64::from(ms)));
    let _ = JsFuture::from(promise).await;
}

/// Calls `f` after `ms` milliseconds (`setTimeout`, in a page or a worker).
pub fn set_timeout(f: &js_sys::Function, ms: f64) {
    let global = js_sys::global();
    if let Some(set_timeout) = Reflect::get(&global, &"setTimeout".into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok()) {
        let _ = set_timeout.call2(&global, f, &JsValue::from(ms));
    }
}
