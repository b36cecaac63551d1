//! How a tab's node reaches the other members to make WebRTC links: the tabs of one browser
//! on the BroadcastChannel `tabnet:NAME`; tabs on different machines through the rendezvous of
//! the native `tabnet` that served the page (a WebSocket; the tab proves its node key there and
//! gets its slot and, once the subnet has formed, its membership: the subnet's public keys and
//! its own BLS keys). Either way signals arrive in one inbox the node drains each turn.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use tabnet_consensus::Time;
use tabnet_consensus::handshake::SigningKey;
use js_sys::Function;
use tabnet_node::tab_signal::{FromRendezvous, JoinRequest, Membership, Signal};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent, WebSocket};

/// Signals waiting to be handled; a flood beyond this is cut, not held.
const INBOX: usize = 1_000;
/// A lost rendezvous connection is tried again this often (ms).
const RECONNECT_EVERY: Time = 3_000;
/// The first answer of the rendezvous must come within this (ms).
const WELCOME_TIMEOUT: i32 = 10_000;

pub type Inbox = Rc<RefCell<VecDeque<Signal>>>;

fn push(inbox: &Inbox, signal: Signal) {
    let mut inbox = inbox.borrow_mut();
    if inbox.len() < INBOX {
        inbox.push_back(signal);
    }
}

pub enum Signaling {
    Local { channel: BroadcastChannel, _on_message: Closure<dyn FnMut(MessageEvent)> },
    Server(ServerLink),
}

impl Signaling {
    /// The BroadcastChannel of the subnet `name`, delivering into `inbox`.
    pub fn local(name: &str, inbox: &Inbox) -> Result<Self, JsValue> {
        let channel = BroadcastChannel::new(&format!("tabnet:{name}"))?;
        let inbox = inbox.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(signal) = e.data().as_string().and_then(|text| Signal::from_json(&text).ok()) {
                push(&inbox, signal);
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Ok(Signaling::Local { channel, _on_message: on_message })
    }

    pub fn post(&self, signal: &Signal) {
        match self {
            Signaling::Local { channel, .. } => {
                let _ = channel.post_message(&JsValue::from_str(&signal.to_json()));
            }
            Signaling::Server(link) => link.post(signal),
        }
    }

    /// Stops signaling (the tab leaves its subnet).
    pub fn close(&mut self) {
        match self {
            Signaling::Local { channel, .. } => channel.close(),
            Signaling::Server(link) => {
                link.socket.close();
                link.left = true;
            }
        }
    }

    /// Keeps the rendezvous connection up; returns what to tell the page, if anything.
    pub fn maintain(&mut self, now: Time) -> Option<String> {
        match self {
            Signaling::Local { .. } => None,
            Signaling::Server(link) => link.maintain(now),
        }
    }
}

/// A connection to the rendezvous, holding this member's slot while it is open.
pub struct ServerLink {
    /// `ws(s)://host/_/rendezvous/NAME?nodes=N`
    url: String,
    name: String,
    key: SigningKey,
    membership: Membership,
    socket: Socket,
    inbox: Inbox,
    lost_at: Option<Time>,
    /// Closed for good: not connected again.
    left: bool,
}

struct Socket {
    ws: WebSocket,
    /// The rendezvous's last word on this member's seat (waiting, welcome, refused), until taken.
    seat: Rc<RefCell<Option<FromRendezvous>>>,
    closed: Rc<Cell<bool>>,
    welcomed: Rc<Cell<bool>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(JsValue)>,
}

impl Socket {
    /// Connects and answers the rendezvous's challenge with a proof of `key`.
    fn open(url: &str, name: &str, key: &SigningKey, inbox: &Inbox) -> Result<Self, JsValue> {
        let ws = WebSocket::new(url)?;
        let seat: Rc<RefCell<Option<FromRendezvous>>> = Rc::default();
        let (closed, welcomed) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
        let (to_inbox, to_seat, seen, answer) = (inbox.clone(), seat.clone(), welcomed.clone(), ws.clone());
        let (name, key) = (name.to_string(), key.clone());
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(message) = e.data().as_string().and_then(|text| FromRendezvous::from_json(&text).ok()) else { return };
            match message {
                FromRendezvous::Challenge { nonce } => {
                    let _ = answer.send_with_str(&JoinRequest::sign(&key, &name, &nonce).to_json());
                }
                FromRendezvous::Signal(signal) if seen.get() => push(&to_inbox, signal),
                FromRendezvous::Signal(_) => {}
                other => {
                    seen.set(matches!(other, FromRendezvous::Welcome { .. }));
                    *to_seat.borrow_mut() = Some(other);
                }
            }
        });
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let gone = closed.clone();
        let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| gone.set(true));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket { ws, seat, closed, welcomed, _on_message: on_message, _on_close: on_close })
    }

    fn close(&self) {
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        self.ws.set_onmessage(None);
        let _ = self.ws.close();
    }
}

impl ServerLink {
    /// Joins the subnet `name` at the rendezvous `url` (`ws(s)://…/_/rendezvous/NAME?nodes=N`)
    /// as the holder of `key`: resolves to this member's membership once the subnet has formed
    /// (`on_progress` hears of the wait), or to why there is none.
    pub async fn join(url: String, name: &str, key: SigningKey, inbox: &Inbox, on_progress: Option<&Function>) -> Result<(Self, Membership), JsValue> {
        let socket = Socket::open(&url, name, &key, inbox)?;
        // (The first answer must come in time; then there is no deadline while the subnet forms.)
        let (mut waited, mut answered) = (0, false);
        let membership = loop {
            let seat = socket.seat.borrow_mut().take();
            match seat {
                Some(FromRendezvous::Welcome { membership }) => break membership,
                Some(FromRendezvous::Refused { reason }) => {
                    socket.close();
                    return Err(JsValue::from_str(&reason));
                }
                Some(FromRendezvous::Waiting { index, joined, nodes }) => {
                    answered = true;
                    crate::membership::progress(on_progress, &format!("node {index}: waiting for the others, {joined} of {nodes} have joined"));
                }
                _ if socket.closed.get() && answered => return Err(JsValue::from_str(&format!("the rendezvous at {url} closed the connection"))),
                _ if socket.closed.get() || waited >= WELCOME_TIMEOUT => {
                    socket.close();
                    return Err(JsValue::from_str(&format!("no rendezvous answers at {url}")));
                }
                _ => {}
            }
            crate::rtc::sleep(20).await;
            waited += 20;
        };
        let link = ServerLink { url, name: name.to_string(), key, membership: membership.clone(), socket, inbox: inbox.clone(), lost_at: None, left: false };
        Ok((link, membership))
    }

    fn post(&self, signal: &Signal) {
        if self.socket.welcomed.get() && !self.socket.closed.get() {
            let _ = self.socket.ws.send_with_str(&signal.to_json());
        }
    }

    /// A lost connection is made again, for the same member (links up meanwhile stay up).
    fn maintain(&mut self, now: Time) -> Option<String> {
        if let Some(seat) = self.socket.seat.borrow_mut().take() {
            // A new connection's welcome: only this member's own place in the same subnet will do.
            match seat {
                FromRendezvous::Welcome { membership } if membership == self.membership => {
                    self.lost_at = None;
                    return Some("the rendezvous is back".into());
                }
                _ => self.socket.closed.set(true),
            }
        }
        if !self.socket.closed.get() || self.left {
            return None;
        }
        let lost = *self.lost_at.get_or_insert(now);
        let note = (lost == now).then(|| "lost the rendezvous; links that are up stay up".to_string());
        if now >= lost + RECONNECT_EVERY {
            self.lost_at = Some(now);
            self.socket.close();
            if let Ok(socket) = Socket::open(&self.url, &self.name, &self.key, &self.inbox) {
                self.socket = socket;
            }
        }
        note
    }
}
