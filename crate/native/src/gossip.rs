//! Gossip between the processes of a native subnet, over loopback TCP. Node K dials every peer
//! and writes its frames to it (`len: u32 ‖ CBOR message`); it reads its peers' frames on the
//! connections they dialled. Every connection starts with the handshake of
//! [`tabnet_consensus::handshake`], so a frame's sender is the peer that proved its node key,
//! never an index someone claims.
//!
//! What a stranger can make the node hold: at most [`MAX_HANDSHAKING`] connections, for at most
//! [`HANDSHAKE_TIMEOUT`], each reading fixed-size handshake messages. When all those places are
//! taken, the oldest handshake gives way to the newest: a member's takes one round trip, so
//! strangers holding connections open cannot keep a restarted member out. What a member can: one
//! connection (a new one replaces the old), frames of at most [`MAX_FRAME`] read into a buffer
//! that grows only as bytes arrive, and [`PEER_INBOX_BYTES`] of frames waiting for consensus;
//! beyond that its connection is no longer read (TCP pushes back on it alone). Consensus takes
//! the peers' frames round-robin, so one flooding peer cannot starve the others. Each member's
//! frames are metered against [`Rates::FRAMES`] before they are read: frames beyond its rate
//! are skipped unread into nothing (never decoded) and counted, and a member that keeps
//! exceeding it is disconnected and refused for [`Rates::ban`]. What waits to be written to a
//! member is capped at [`PEER_OUTBOX_BYTES`] (a member that asks and does not read cannot make
//! the node hold its answers).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tabnet_consensus::handshake::{claimed_sender, Acceptor, Connector, PeerKeys, SigningKey, CHALLENGE_LEN, CONFIRM_LEN, RESPONSE_LEN};
use tabnet_consensus::limits::{PeerLimits, Rates, Verdict};
use tabnet_consensus::{Message, NodeIndex, Time};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::timeout;

/// Frames larger than this are refused: the node core's limit, the same on every transport.
pub use tabnet_node::codec::MAX_FRAME;
/// Connections still proving who they are, at once (a new one closes the oldest).
pub const MAX_HANDSHAKING: usize = 32;
/// A handshake takes one round trip and two signatures; a peer that has not finished in this
/// long is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A member's connection that carries no frame this long is closed (senders keep theirs alive).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A sender with nothing to send writes an empty frame this often.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// One frame's bytes must all arrive within this.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of one peer's frames read but not yet taken by consensus.
pub const PEER_INBOX_BYTES: usize = 2 * MAX_FRAME;
/// Frames of one peer read but not yet taken by consensus.
const PEER_INBOX_FRAMES: usize = 4_096;
/// Bytes queued for one member and not yet written (frames beyond are dropped; consensus
/// re-sends what matters, state sync asks again).
pub const PEER_OUTBOX_BYTES: usize = 64 << 20;

/// This node's key and every member's.
pub struct Identity {
    pub me: NodeIndex,
    pub key: SigningKey,
    pub peers: PeerKeys,
}

/// Loopback TCP carries no channel to bind the proof to (WebRTC will bind the DTLS fingerprints).
const CHANNEL: &[u8] = b"";

fn nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).expect("OS randomness");
    nonce
}

/// A frame of a peer, holding its share of that peer's inbox budget until consensus takes it.
type Inboxed = (Message, OwnedSemaphorePermit);

/// What each member may have waiting, and its live inbound connection.
struct PeerSlot {
    queue: mpsc::Sender<Inboxed>,
    bytes: Arc<Semaphore>,
    reader: Mutex<Option<AbortHandle>>,
}

/// The peers' frames, taken round-robin.
pub struct Inbound {
    queues: Vec<mpsc::Receiver<Inboxed>>,
    next: usize,
}

impl Inbound {
    /// No peers (a lone node): nothing ever arrives.
    pub fn none() -> Self {
        Inbound { queues: Vec::new(), next: 0 }
    }

    /// The next frame, from the peer after the one that was served last (waits for one).
    pub async fn recv(&mut self) -> (NodeIndex, Message) {
        poll_fn(|cx| {
            let n = self.queues.len();
            for i in 0..n {
                let k = (self.next + i) % n;
                if let Poll::Ready(Some((message, _budget))) = self.queues[k].poll_recv(cx) {
                    self.next = k + 1;
                    return Poll::Ready((k, message));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// A frame already waiting, if any, taken round-robin like [`Inbound::recv`].
    pub fn try_recv(&mut self) -> Option<(NodeIndex, Message)> {
        let n = self.queues.len();
        for i in 0..n {
            let k = (self.next + i) % n;
            if let Ok((message, _budget)) = self.queues[k].try_recv() {
                self.next = k + 1;
                return Some((k, message));
            }
        }
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Meters one member's frames; the driver's clock (ms) is the limits' time.
#[derive(Clone)]
struct Meter {
    limits: Arc<Mutex<PeerLimits>>,
    clock: fn() -> Time,
}

impl Meter {
    /// Charges member `from`'s frame of `len` bytes: `Ok(true)` to take it, `Ok(false)` to drop
    /// it (over its rate), `Err` when the member keeps exceeding its rate (cut it off).
    fn admit(&self, from: NodeIndex, len: usize) -> Result<bool, String> {
        let mut limits = lock(&self.limits);
        match limits.charge((self.clock)(), from, len as u64) {
            Verdict::Take => Ok(true),
            Verdict::Drop => Ok(false),
            Verdict::Disconnect => {
                Err(format!("member {from} keeps sending over its gossip rate ({} frames dropped so far)", limits.dropped(from)))
            }
        }
    }
}

/// Listens for members on `listener`; returns their frames, by authenticated sender. `clock`
/// gives the time (ms) the rate limits run on.
pub fn listen(listener: TcpListener, identity: Arc<Identity>, clock: fn() -> Time) -> Inbound {
    let n = identity.peers.nodes();
    let (slots, queues): (Vec<PeerSlot>, Vec<_>) = (0..n)
        .map(|_| {
            let (tx, rx) = mpsc::channel(PEER_INBOX_FRAMES);
            (PeerSlot { queue: tx, bytes: Arc::new(Semaphore::new(PEER_INBOX_BYTES)), reader: Mutex::new(None) }, rx)
        })
        .unzip();
    let limits = Arc::new(Mutex::new(PeerLimits::new(Rates::FRAMES, n, clock())));
    tokio::spawn(accept_peers(listener, identity, Arc::new(slots), Meter { limits, clock }));
    Inbound { queues, next: 0 }
}

async fn accept_peers(listener: TcpListener, identity: Arc<Identity>, slots: Arc<Vec<PeerSlot>>, meter: Meter) {
    // Handshakes in progress, oldest first, by connection number.
    let handshaking: Arc<Mutex<VecDeque<(u64, AbortHandle)>>> = Arc::default();
    for number in 0u64.. {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: let some close rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (identity, slots, all, meter) = (identity.clone(), slots.clone(), handshaking.clone(), meter.clone());
        // Held while the task starts, so that it finds itself in the list when it ends.
        let mut list = handshaking.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= MAX_HANDSHAKING {
            if let Some((_, oldest)) = list.pop_front() {
                oldest.abort();
            }
        }
        let task = tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let proved = timeout(HANDSHAKE_TIMEOUT, accept_handshake(&mut stream, &identity, &meter)).await;
            all.lock().unwrap_or_else(|e| e.into_inner()).retain(|(n, _)| *n != number);
            let Ok(Ok(from)) = proved else { return };
            let slot = &slots[from];
            let reader = tokio::spawn(read_frames(stream, from, slot.queue.clone(), slot.bytes.clone(), meter));
            // One live connection per member: the newest (a restarted peer's) replaces the old.
            let old = slot.reader.lock().unwrap_or_else(|e| e.into_inner()).replace(reader.abort_handle());
            if let Some(old) = old {
                old.abort();
            }
        });
        list.push_back((number, task.abort_handle()));
    }
}

/// The acceptor's side: challenge, check the proof, confirm. Returns the member it is.
/// A member shut out for its rate stays out until its time is up, refused before its
/// signature is checked (else reconnecting at once would buy a check and a signature each time).
async fn accept_handshake(stream: &mut TcpStream, identity: &Identity, meter: &Meter) -> Result<NodeIndex, String> {
    let (acceptor, challenge) = Acceptor::new(identity.me, nonce());
    stream.write_all(&challenge).await.map_err(|e| e.to_string())?;
    let mut response = [0u8; RESPONSE_LEN];
    stream.read_exact(&mut response).await.map_err(|e| e.to_string())?;
    if lock(&meter.limits).is_banned((meter.clock)(), claimed_sender(&response)) {
        return Err("shut out for its rate".into());
    }
    let (from, confirm) = acceptor.on_response(&identity.peers, &identity.key, CHANNEL, &response).map_err(|e| e.to_string())?;
    stream.write_all(&confirm).await.map_err(|e| e.to_string())?;
    Ok(from)
}

/// The connector's side: answer the challenge of node `peer`, check it confirms as that node.
async fn connect_handshake(stream: &mut TcpStream, identity: &Identity, peer: NodeIndex) -> Result<(), String> {
    let mut connector = Connector::new(identity.me, peer, nonce());
    let mut challenge = [0u8; CHALLENGE_LEN];
    stream.read_exact(&mut challenge).await.map_err(|e| e.to_string())?;
    let response = connector.on_challenge(&identity.peers, &identity.key, CHANNEL, &challenge).map_err(|e| e.to_string())?;
    stream.write_all(&response).await.map_err(|e| e.to_string())?;
    let mut confirm = [0u8; CONFIRM_LEN];
    stream.read_exact(&mut confirm).await.map_err(|e| e.to_string())?;
    connector.on_confirm(&identity.peers, CHANNEL, &confirm).map_err(|e| e.to_string())
}

/// Reads an authenticated member's frames into its queue until the connection ends, idles, or
/// breaks the limits.
async fn read_frames(mut stream: TcpStream, from: NodeIndex, queue: mpsc::Sender<Inboxed>, budget: Arc<Semaphore>, meter: Meter) {
    loop {
        let mut head = [0u8; 4];
        if !matches!(timeout(IDLE_TIMEOUT, stream.read_exact(&mut head)).await, Ok(Ok(_))) {
            return;
        }
        let len = u32::from_be_bytes(head) as usize;
        if len > MAX_FRAME {
            return;
        }
        match meter.admit(from, len) {
            Ok(true) => {}
            Ok(false) => {
                // Over its rate: the frame is read into nothing, never decoded.
                match timeout(FRAME_TIMEOUT, tokio::io::copy(&mut (&mut stream).take(len as u64), &mut tokio::io::sink())).await {
                    Ok(Ok(got)) if got == len as u64 => continue,
                    _ => return,
                }
            }
            Err(e) => {
                eprintln!("tabnet: {e}; disconnected for a while");
                return;
            }
        }
        // Room in this peer's budget first: while consensus has not taken its earlier frames,
        // its connection is not read.
        let Ok(permit) = budget.clone().acquire_many_owned(len.max(1) as u32).await else {
            return;
        };
        // The buffer grows as bytes arrive; a header alone allocates nothing.
        let mut frame = Vec::new();
        match timeout(FRAME_TIMEOUT, (&mut stream).take(len as u64).read_to_end(&mut frame)).await {
            Ok(Ok(got)) if got == len => {}
            _ => return,
        }
        // Decoded by the node core's codec. A frame that does not decode (a keepalive, a newer
        // message) is dropped; the connection goes on.
        if let Ok(Some(message)) = tabnet_node::codec::decode(&frame) {
            if queue.send((message, permit)).await.is_err() {
                return;
            }
        }
    }
}

/// Where authenticated members' frames go on a transport that hands over whole frames (the
/// WebRTC links of a tab subnet's native member): metered, held within each member's inbox
/// budget and decoded as a TCP connection's are.
#[derive(Clone)]
pub struct PeerInboxes {
    queues: Arc<Vec<(mpsc::Sender<Inboxed>, Arc<Semaphore>)>>,
    meter: Meter,
}

/// The inboxes of `n` members and the [`Inbound`] consensus takes their frames from.
pub fn inboxes(n: usize, clock: fn() -> Time) -> (PeerInboxes, Inbound) {
    let (queues, receivers): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| {
            let (tx, rx) = mpsc::channel(PEER_INBOX_FRAMES);
            ((tx, Arc::new(Semaphore::new(PEER_INBOX_BYTES))), rx)
        })
        .unzip();
    let meter = Meter { limits: Arc::new(Mutex::new(PeerLimits::new(Rates::FRAMES, n, clock()))), clock };
    (PeerInboxes { queues: Arc::new(queues), meter }, Inbound { queues: receivers, next: 0 })
}

impl PeerInboxes {
    /// Hands member `from`'s frame to consensus, waiting while its budget is spent. `Err`: the
    /// member keeps exceeding its rate, so its link is to be cut.
    pub async fn deliver(&self, from: NodeIndex, frame: Vec<u8>) -> Result<(), String> {
        let Some((queue, budget)) = self.queues.get(from) else { return Err(format!("no member {from}")) };
        if !self.meter.admit(from, frame.len())? {
            return Ok(());
        }
        let permit = budget.clone().acquire_many_owned(frame.len().clamp(1, MAX_FRAME) as u32).await.map_err(|e| e.to_string())?;
        if let Ok(Some(message)) = tabnet_node::codec::decode(&frame) {
            queue.send((message, permit)).await.map_err(|_| "the node stopped".to_string())?;
        }
        Ok(())
    }

    /// Whether member `from` is shut out for its rate (its link is not made again meanwhile).
    pub fn is_banned(&self, from: NodeIndex) -> bool {
        lock(&self.meter.limits).is_banned((self.meter.clock)(), from)
    }
}

/// An outbox for one member (at most `frames` frames and [`PEER_OUTBOX_BYTES`]), and its far
/// end: the frames, each to be marked taken (its bytes) once it leaves the queue.
pub fn outbox(frames: usize) -> (Outbox, mpsc::Receiver<Arc<Vec<u8>>>, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::channel(frames);
    let queued = Arc::new(AtomicUsize::new(0));
    (Outbox { queue: tx, queued: queued.clone() }, rx, queued)
}

/// Frames queued for one member, and their bytes.
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::Sender<Arc<Vec<u8>>>,
    queued: Arc<AtomicUsize>,
}

/// Starts the task that keeps a connection to member `peer` (listening on `port`); returns
/// where to queue its frames (at most `frames` of them and [`PEER_OUTBOX_BYTES`]).
pub fn connect(identity: Arc<Identity>, peer: NodeIndex, port: u16, frames: usize) -> Outbox {
    let (outbox, rx, queued) = outbox(frames);
    tokio::spawn(send_to_peer(identity, peer, port, rx, queued));
    outbox
}

/// Keeps a connection to member `peer` (listening on `port`) and writes the frames queued for
/// it; reconnects with back-off.
async fn send_to_peer(identity: Arc<Identity>, peer: NodeIndex, port: u16, mut queue: mpsc::Receiver<Arc<Vec<u8>>>, queued: Arc<AtomicUsize>) {
    let taken = |frame: &Arc<Vec<u8>>| {
        queued.fetch_sub(frame.len(), Ordering::Relaxed);
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = match timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await {
            Ok(Ok(mut stream)) => {
                let _ = stream.set_nodelay(true);
                match timeout(HANDSHAKE_TIMEOUT, connect_handshake(&mut stream, &identity, peer)).await {
                    Ok(Ok(())) => Some(stream),
                    Ok(Err(e)) => {
                        eprintln!("tabnet: the node on port {port} did not prove it is node {peer}: {e}");
                        None
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        let Some(mut stream) = connected else {
            // While the peer is unreachable, what is queued for it is stale by the time it returns.
            while let Ok(frame) = queue.try_recv() {
                taken(&frame);
            }
            if queue.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        backoff = Duration::from_millis(50);
        loop {
            let frame = match timeout(KEEPALIVE, queue.recv()).await {
                Ok(Some(frame)) => {
                    taken(&frame);
                    frame
                }
                Ok(None) => return,
                Err(_) => Arc::new(Vec::new()),
            };
            let mut out = Vec::with_capacity(4 + frame.len());
            out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            out.extend_from_slice(&frame);
            if stream.write_all(&out).await.is_err() {
                break;
            }
        }
    }
}

/// Queues `frame` for peer `to`, or for every peer; a peer whose queue is full (in frames or
/// bytes) misses it.
pub fn send(peers: &[Option<Outbox>], to: Option<NodeIndex>, frame: Vec<u8>) {
    let frame = Arc::new(frame);
    for (k, peer) in peers.iter().enumerate() {
        if let Some(peer) = peer.as_ref().filter(|_| to.is_none_or(|t| t == k)) {
            if peer.queued.fetch_add(frame.len(), Ordering::Relaxed) + frame.len() > PEER_OUTBOX_BYTES || peer.queue.try_send(frame.clone()).is_err()
            {
                peer.queued.fetch_sub(frame.len(), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flooding_peer_does_not_starve_the_others() {
        let (senders, queues): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::channel::<Inboxed>(PEER_INBOX_FRAMES)).unzip();
        let mut inbound = Inbound { queues, next: 0 };
        let budget = Arc::new(Semaphore::new(PEER_INBOX_BYTES));
        let frame = |k: u64| (Message::CatchUpRequest { finalized: k }, budget.clone().try_acquire_many_owned(1).unwrap());
        // Peer 1 has queued 1,000 frames before peers 2 and 3 send one each.
        for k in 0..1_000 {
            senders[1].try_send(frame(k)).unwrap();
        }
        senders[2].try_send(frame(0)).unwrap();
        senders[3].try_send(frame(0)).unwrap();
        let mut first = Vec::new();
        for _ in 0..3 {
            first.push(inbound.recv().await.0);
        }
        first.sort_unstable();
        assert_eq!(first, [1, 2, 3], "each peer is served in turn");
        // What peer 1 has waiting holds its budget until consensus takes it: no more than that is read.
        assert_eq!(budget.available_permits(), PEER_INBOX_BYTES - 999);
    }

    #[tokio::test]
    async fn frames_over_a_members_rate_are_dropped_unread_and_a_member_that_keeps_on_is_cut_off() {
        use tabnet_consensus::limits::Rates;
        let rates = Rates {
            items_per_second: 1,
            item_burst: 10,
            bytes_per_second: 1 << 20,
            byte_burst: 1 << 20,
            excess_per_second: 1,
            excess_burst: 20,
            ban: 60_000,
        };
        fn frozen() -> Time {
            1_000
        }
        let meter = Meter { limits: Arc::new(Mutex::new(PeerLimits::new(rates, 4, frozen()))), clock: frozen };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let (tx, mut rx) = mpsc::channel(PEER_INBOX_FRAMES);
        let reader = tokio::spawn(read_frames(stream, 2, tx, Arc::new(Semaphore::new(PEER_INBOX_BYTES)), meter.clone()));
        // 100 frames at once (the clock stands still: no refill).
        let mut body = Vec::new();
        ciborium::into_writer(&Message::CatchUpRequest { finalized: 7 }, &mut body).unwrap();
        let frame = [&(body.len() as u32).to_be_bytes()[..], &body].concat();
        let _ = peer.write_all(&frame.repeat(100)).await;
        reader.await.unwrap();
        let mut taken = 0;
        while rx.try_recv().is_ok() {
            taken += 1;
        }
        assert_eq!(taken, 10, "the burst is taken, the rest dropped");
        let limits = lock(&meter.limits);
        assert_eq!(limits.dropped(2), 21, "20 dropped unread, then the 21st cut the connection");
        assert!(limits.is_banned(frozen(), 2), "and the member is refused for a while");
    }

    #[tokio::test]
    async fn what_waits_for_a_member_is_capped_in_bytes() {
        let (tx, _rx) = mpsc::channel(20_000);
        let outbox = Outbox { queue: tx, queued: Arc::new(AtomicUsize::new(0)) };
        let peers = vec![None, Some(outbox.clone())];
        // A member asks for 1 MiB answers 1,000 times and reads none of them.
        for _ in 0..1_000 {
            send(&peers, Some(1), vec![0; 1 << 20]);
        }
        assert_eq!(outbox.queue.max_capacity() - outbox.queue.capacity(), PEER_OUTBOX_BYTES >> 20);
        assert_eq!(outbox.queued.load(Ordering::Relaxed), PEER_OUTBOX_BYTES);
    }
}
