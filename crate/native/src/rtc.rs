//! A WebRTC link to one member of a tab subnet, made natively with the `webrtc` crate exactly as
//! a tab makes it (crate/web/src/rtc.rs): one `RTCPeerConnection` with one negotiated (id 0),
//! ordered, reliable data channel; ICE candidates ride in the SDP (gathering finishes before an
//! offer or answer is sent, so one message each way connects); frames cross in fragments
//! (`tabnet_node::codec::fragments`), and the gossip handshake binds its proof to both DTLS
//! fingerprints (`tabnet_node::codec::channel_binding`).
//!
//! Chromium names its host candidates by mDNS (`<uuid>.local`) rather than by IP: the link asks
//! for them on the local network (mDNS query only; this node's own candidates are its IPs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tabnet_node::codec::{channel_binding, fragments, Reassembler, FRAME_OVERHEAD, MAX_FRAME};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

/// Bytes handed to the data channel and not yet sent, at most: beyond, [`RtcLink::send`] waits
/// (the outbox in front of it holds what waits, within its cap).
const CHANNEL_BUFFER: usize = 4 << 20;
/// Bytes of whole frames received and not yet taken, at most (each frame counts its length and
/// [`FRAME_OVERHEAD`]; the reader applies the member's inbox budget as it takes them). Beyond,
/// the channel's reader waits, and SCTP's flow control holds the peer back.
const RECEIVED_BYTES: usize = MAX_FRAME + (1 << 20);
/// ICE gathering (host candidates only: no ICE servers) finishes within this.
const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);

/// The WebRTC stack's settings: one per node.
pub fn api() -> API {
    // (Fails harmlessly if a provider is installed already.)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::QueryOnly);
    APIBuilder::new().with_setting_engine(settings).build()
}

struct Flags {
    open: AtomicBool,
    closed: AtomicBool,
    error: Mutex<Option<String>>,
    changed: Notify,
}

/// One peer connection and its data channel.
pub struct RtcLink {
    pc: Arc<RTCPeerConnection>,
    channel: Arc<RTCDataChannel>,
    flags: Arc<Flags>,
    received: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Vec<u8>, OwnedSemaphorePermit)>>,
    /// What frames received and not yet taken may hold ([`RECEIVED_BYTES`]).
    received_budget: Arc<Semaphore>,
}

impl RtcLink {
    pub async fn new(api: &API) -> Result<Arc<Self>, String> {
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.map_err(|e| e.to_string())?);
        // Negotiated with a fixed id, as the tabs make it: both sides open the same channel.
        let init = RTCDataChannelInit { ordered: Some(true), negotiated: Some(0), ..Default::default() };
        let channel = pc.create_data_channel("tabnet", Some(init)).await.map_err(|e| e.to_string())?;
        let flags = Arc::new(Flags { open: AtomicBool::new(false), closed: AtomicBool::new(false), error: Mutex::new(None), changed: Notify::new() });
        // (Unbounded in count, bounded in bytes by the budget each frame holds a share of.)
        let (frames, received) = mpsc::unbounded_channel();
        let received_budget = Arc::new(Semaphore::new(RECEIVED_BYTES));

        let f = flags.clone();
        channel.on_open(Box::new(move || {
            f.open.store(true, Ordering::SeqCst);
            f.changed.notify_waiters();
            Box::pin(async {})
        }));
        let f = flags.clone();
        channel.on_close(Box::new(move || {
            f.closed.store(true, Ordering::SeqCst);
            f.changed.notify_waiters();
            Box::pin(async {})
        }));
        let (f, reassembler, budget) = (flags.clone(), Arc::new(Mutex::new(Reassembler::default())), received_budget.clone());
        channel.on_message(Box::new(move |message| {
            let (f, frames, budget) = (f.clone(), frames.clone(), budget.clone());
            let frame = if f.closed.load(Ordering::SeqCst) {
                Ok(None)
            } else if message.is_string {
                Err("a text message on the data channel".to_string())
            } else {
                reassembler.lock().unwrap_or_else(|e| e.into_inner()).push(&message.data)
            };
            Box::pin(async move {
                match frame {
                    // (Waiting here holds the channel's reader: the peer is pushed back on.)
                    Ok(Some(frame)) => {
                        if let Ok(permit) = budget.acquire_many_owned((frame.len() + FRAME_OVERHEAD) as u32).await {
                            let _ = frames.send((frame, permit));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        *f.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        f.closed.store(true, Ordering::SeqCst);
                        f.changed.notify_waiters();
                    }
                }
            })
        }));
        // A peer that vanishes (tab closed, network gone) fails the connection.
        let f = flags.clone();
        pc.on_peer_connection_state_change(Box::new(move |state| {
            if matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed | RTCPeerConnectionState::Disconnected) {
                f.closed.store(true, Ordering::SeqCst);
                f.changed.notify_waiters();
            }
            Box::pin(async {})
        }));
        Ok(Arc::new(RtcLink { pc, channel, flags, received: tokio::sync::Mutex::new(received), received_budget }))
    }

    /// Makes the offer: the SDP to send to the peer.
    pub async fn offer(&self) -> Result<String, String> {
        let offer = self.pc.create_offer(None).await.map_err(|e| e.to_string())?;
        self.set_local(offer).await
    }

    /// Answers a peer's offer: the SDP to send back.
    pub async fn answer(&self, offer: &str) -> Result<String, String> {
        let offer = RTCSessionDescription::offer(offer.to_string()).map_err(|e| e.to_string())?;
        self.pc.set_remote_description(offer).await.map_err(|e| e.to_string())?;
        let answer = self.pc.create_answer(None).await.map_err(|e| e.to_string())?;
        self.set_local(answer).await
    }

    /// Takes the peer's answer to our offer.
    pub async fn accept(&self, answer: &str) -> Result<(), String> {
        let answer = RTCSessionDescription::answer(answer.to_string()).map_err(|e| e.to_string())?;
        self.pc.set_remote_description(answer).await.map_err(|e| e.to_string())
    }

    /// Sets the local description and returns it once ICE gathering has finished (its
    /// candidates in it).
    async fn set_local(&self, description: RTCSessionDescription) -> Result<String, String> {
        let mut gathered = self.pc.gathering_complete_promise().await;
        self.pc.set_local_description(description).await.map_err(|e| e.to_string())?;
        let _ = tokio::time::timeout(GATHERING_TIMEOUT, gathered.recv()).await;
        self.pc.local_description().await.map(|d| d.sdp).ok_or_else(|| "no local description".to_string())
    }

    /// Both DTLS fingerprints (see the module), once both descriptions are set.
    pub async fn channel_binding(&self) -> Option<Vec<u8>> {
        let local = self.pc.local_description().await?;
        let remote = self.pc.remote_description().await?;
        channel_binding(&local.sdp, &remote.sdp)
    }

    pub fn is_open(&self) -> bool {
        self.flags.open.load(Ordering::SeqCst) && !self.is_closed()
    }

    pub fn is_closed(&self) -> bool {
        self.flags.closed.load(Ordering::SeqCst)
    }

    /// Why the link was cut, if the peer broke the framing.
    pub fn error(&self) -> Option<String> {
        self.flags.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the channel is open (`true`) or the link closed (`false`).
    pub async fn opened(&self) -> bool {
        loop {
            let changed = self.flags.changed.notified();
            if self.is_closed() {
                return false;
            }
            if self.is_open() {
                return true;
            }
            changed.await;
        }
    }

    /// The next whole frame; `None` once the link has closed.
    pub async fn recv(&self) -> Option<Vec<u8>> {
        let mut received = self.received.lock().await;
        loop {
            let changed = self.flags.changed.notified();
            if self.is_closed() {
                return None;
            }
            tokio::select! {
                frame = received.recv() => return frame.map(|(frame, _budget)| frame),
                _ = changed => {}
            }
        }
    }

    /// Sends one frame, waiting while the channel holds [`CHANNEL_BUFFER`] unsent. An error
    /// closes the link.
    pub async fn send(&self, frame: &[u8]) -> Result<(), String> {
        for fragment in fragments(frame) {
            while self.channel.buffered_amount().await > CHANNEL_BUFFER {
                if self.is_closed() {
                    return Err("the link closed".into());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // (A send to a peer that vanished can wait without end; it ends when the link is
            // found closed, so that the member's next link is not held up behind it.)
            let fragment = Bytes::from(fragment);
            let sent = tokio::select! {
                sent = self.channel.send(&fragment) => sent.map_err(|e| e.to_string()),
                _ = self.closed() => Err("the link closed".into()),
            };
            if let Err(e) = sent {
                self.flags.closed.store(true, Ordering::SeqCst);
                self.flags.changed.notify_waiters();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Resolves once the link is closed.
    async fn closed(&self) {
        loop {
            let changed = self.flags.changed.notified();
            if self.is_closed() {
                return;
            }
            changed.await;
        }
    }

    /// Sends one data-channel message as it is, bypassing the framing (to test what a peer that
    /// breaks it gets).
    #[cfg(test)]
    pub async fn send_raw(&self, message: &[u8]) -> bool {
        self.channel.send(&Bytes::copy_from_slice(message)).await.is_ok()
    }

    /// Bytes of frames received and not yet taken, as the budget counts them.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        RECEIVED_BYTES - self.received_budget.available_permits()
    }

    pub async fn close(&self) {
        self.flags.closed.store(true, Ordering::SeqCst);
        // (Frees a reader waiting for budget: what it holds is dropped.)
        self.received_budget.close();
        self.flags.changed.notify_waiters();
        let _ = self.channel.close().await;
        let _ = self.pc.close().await;
    }

    /// Marks the link closed now and closes the connection in the background (closing a
    /// connection to a peer that vanished can take its time; nothing waits for it).
    pub fn close_soon(self: &Arc<Self>) {
        self.flags.closed.store(true, Ordering::SeqCst);
        self.flags.changed.notify_waiters();
        let link = self.clone();
        tokio::spawn(async move { link.close().await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tabnet_node::codec::FRAGMENT;

    /// Two links of this process connected to each other, as two members would be.
    async fn connected_pair() -> (Arc<RtcLink>, Arc<RtcLink>) {
        let api = api();
        let (a, b) = (RtcLink::new(&api).await.unwrap(), RtcLink::new(&api).await.unwrap());
        let offer = a.offer().await.unwrap();
        let answer = b.answer(&offer).await.unwrap();
        a.accept(&answer).await.unwrap();
        for link in [&a, &b] {
            assert!(tokio::time::timeout(Duration::from_secs(20), link.opened()).await.unwrap(), "the channel opens");
        }
        (a, b)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_of_any_size_cross_whole_and_in_order() {
        let (a, b) = connected_pair().await;
        assert_eq!(a.channel_binding().await, b.channel_binding().await, "both sides bind the same fingerprints");
        assert!(a.channel_binding().await.unwrap().starts_with(b"webrtc-dtls sha-256 "));
        let big: Vec<u8> = (0..(3 * FRAGMENT + 5)).map(|i| (i % 251) as u8).collect();
        let frames = [Vec::new(), vec![7], vec![1; FRAGMENT], vec![2; FRAGMENT + 1], big];
        for f in &frames {
            a.send(f).await.unwrap();
        }
        for f in &frames {
            assert_eq!(&tokio::time::timeout(Duration::from_secs(10), b.recv()).await.unwrap().unwrap(), f);
        }
        a.close().await;
        assert_eq!(tokio::time::timeout(Duration::from_secs(30), b.recv()).await.unwrap(), None, "a closed peer ends the link");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_not_yet_taken_hold_at_most_the_budget_and_the_peer_is_held_back() {
        const FRAMES: usize = 48;
        let (a, b) = connected_pair().await;
        let frame = |k: usize| vec![k as u8; 1 << 20];
        let sender = tokio::spawn({
            let a = a.clone();
            async move {
                for k in 0..FRAMES {
                    a.send(&frame(k)).await.unwrap();
                }
            }
        });
        // Nothing taken for a while: what is held stays within the budget, and the peer waits.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let held = b.held_bytes();
        assert!(held > 0 && held <= RECEIVED_BYTES, "{held} bytes held");
        assert!(!sender.is_finished(), "the peer was not held back");
        for k in 0..FRAMES {
            let got = tokio::time::timeout(Duration::from_secs(20), b.recv()).await.unwrap().unwrap();
            assert!(got == frame(k), "frame {k} arrived whole and in order");
        }
        sender.await.unwrap();
        assert_eq!(b.held_bytes(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_breaks_the_framing_is_cut_off() {
        // Fragments that add up past the frame limit: cut off before the limit is held.
        let (a, b) = connected_pair().await;
        let more = vec![1u8; FRAGMENT + 1];
        for _ in 0..(tabnet_node::codec::MAX_FRAME / FRAGMENT + 2) {
            if b.is_closed() || !a.send_raw(&more).await {
                break;
            }
        }
        assert_eq!(tokio::time::timeout(Duration::from_secs(20), b.recv()).await.unwrap(), None, "a frame past the limit was accepted");
        assert!(b.error().unwrap().contains("frames are at most"), "{:?}", b.error());

        // A message larger than a data-channel message may be: the link ends (webrtc-rs cuts it
        // before our framing sees it).
        let (a, b) = connected_pair().await;
        a.send_raw(&vec![0u8; FRAGMENT + 2]).await;
        assert_eq!(tokio::time::timeout(Duration::from_secs(20), b.recv()).await.unwrap(), None);
    }
}
