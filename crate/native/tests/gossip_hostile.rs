//! A subnet node's gossip port under attack, with real `tabnet node` processes: a flood of frame
//! headers that announce 16 MiB and send nothing more; a stranger claiming a member's index; a
//! recorded handshake replayed; a member flooding valid frames far over its rate.
//! (`TABNET_GOSSIP_TEST_BIN` runs them against another build.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tabnet_consensus::handshake::{Acceptor, Connector, PeerKeys, SigningKey, CHALLENGE_LEN, CONFIRM_LEN, RESPONSE_LEN};
use tabnet_consensus::{deal, Message};

const NODES: usize = 4;

fn bin() -> String {
    std::env::var("TABNET_GOSSIP_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tabnet").to_string())
}

/// A base port P with P..P+2N free (tests of this file run at once; each takes its own range).
fn free_ports(salt: u16) -> u16 {
    let start = 20_000 + (std::process::id() % 2_000) as u16 * 16 + salt * 4_000;
    (0..200u16)
        .map(|i| start.wrapping_add(i * 37) % 40_000 + 20_000)
        .find(|p| (0..2 * NODES as u16).all(|k| TcpListener::bind(("127.0.0.1", p + k)).is_ok()))
        .expect("free ports")
}

struct Subnet {
    dir: PathBuf,
    port: u16,
    nodes: Vec<Child>,
}

impl Subnet {
    fn init(name: &str, salt: u16) -> Subnet {
        let dir = std::env::temp_dir().join(format!("tabnet-gossip-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = free_ports(salt);
        let status = Command::new(bin())
            .args(["init-subnet", "--nodes", &NODES.to_string(), "--port", &port.to_string(), "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        Subnet { dir, port, nodes: Vec::new() }
    }

    /// Where node `k`'s standard error goes.
    fn log(&self, k: usize) -> PathBuf {
        self.dir.join(format!("node-{k}.stderr"))
    }

    fn gossip_port(&self, k: usize) -> u16 {
        self.port + (NODES + k) as u16
    }

    fn start(&mut self, k: usize) {
        let child = Command::new(bin())
            .args(["node", "--index", &k.to_string(), "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.log(k)).unwrap())
            .spawn()
            .unwrap();
        self.nodes.push(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        while status(self.port + k as u16, Duration::from_secs(5)).is_none() {
            assert!(Instant::now() < deadline, "node {k} does not answer /api/v2/status");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every node key of the subnet (the test plays the dealer; `subnet.conf` holds the seed).
    fn keys(&self) -> (PeerKeys, Vec<SigningKey>) {
        let conf = std::fs::read_to_string(self.dir.join("subnet.conf")).unwrap();
        let seed = conf.lines().find_map(|l| l.strip_prefix("dealer_seed = ")).unwrap();
        let seed: [u8; 32] = hex(seed).try_into().unwrap();
        let (public, secrets) = deal(NODES, &seed);
        (PeerKeys::new(&public), secrets.into_iter().map(|s| s.proposal_key).collect())
    }
}

impl Drop for Subnet {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("TABNET_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// `GET /api/v2/status` on `port`: how long the answer took, if one came within `patience`.
fn status(port: u16, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(patience)).ok()?;
    stream.write_all(format!("GET /api/v2/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.1 200").then(|| started.elapsed())
}

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

fn frame(message: &Message) -> Vec<u8> {
    let mut body = Vec::new();
    ciborium::into_writer(message, &mut body).unwrap();
    [&(body.len() as u32).to_be_bytes()[..], &body].concat()
}

/// Reads `len ‖ CBOR` frames until the stream ends or breaks the format.
fn read_frames(stream: &mut TcpStream, out: &mpsc::Sender<Message>) {
    loop {
        let mut head = [0u8; 4];
        if stream.read_exact(&mut head).is_err() {
            return;
        }
        let len = u32::from_be_bytes(head) as usize;
        if len > 16 << 20 {
            return;
        }
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(m) = ciborium::from_reader::<Message, _>(body.as_slice()) {
            let _ = out.send(m);
        }
    }
}

#[test]
fn a_flood_of_frame_headers_neither_bloats_nor_stalls_the_node() {
    let mut subnet = Subnet::init("flood", 0);
    subnet.start(0);
    let pid = subnet.nodes[0].id();
    let before = resident_bytes(pid);
    // 300 connections, each: what an old peer said first (index 1), then a header announcing
    // a 16 MiB frame, and nothing more.
    let mut held = Vec::new();
    for _ in 0..300 {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", subnet.gossip_port(0))) else { continue };
        let _ = stream.write_all(&[0, 0, 0, 1, 0, 0, 0, 0]);
        let _ = stream.write_all(&(16u32 << 20).to_be_bytes());
        held.push(stream);
    }
    // Let the node do its worst with them (allocate, read).
    std::thread::sleep(Duration::from_secs(3));
    let answered = status(subnet.port, Duration::from_secs(30));
    let during = resident_bytes(pid);
    eprintln!(
        "flood of {} header-only connections: resident {} MiB before, {} MiB during; /api/v2/status answered in {:?}",
        held.len(),
        before >> 20,
        during >> 20,
        answered
    );
    assert!(answered.is_some(), "/api/v2/status does not answer during the flood");
    assert!(during < 1 << 30, "the node holds {} MiB for headers that announce frames", during >> 20);

    // Strangers holding every handshake place open cannot keep a member out: node 3 (which
    // restarted, say) still proves its key and is accepted.
    for _ in 0..64 {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", subnet.gossip_port(0))) {
            let _ = stream.write_all(&[0, 0, 0, 1]);
            held.push(stream);
        }
    }
    let (peers, keys) = subnet.keys();
    let mut stream = TcpStream::connect(("127.0.0.1", subnet.gossip_port(0))).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut challenge = [0u8; CHALLENGE_LEN];
    stream.read_exact(&mut challenge).expect("node 0 challenges a member while strangers hold connections open");
    let mut connector = Connector::new(3, 0, [9; 32]);
    stream.write_all(&connector.on_challenge(&peers, &keys[3], b"", &challenge).unwrap()).unwrap();
    let mut confirm = [0u8; CONFIRM_LEN];
    stream.read_exact(&mut confirm).expect("node 0 accepts node 3");
    connector.on_confirm(&peers, b"", &confirm).unwrap();
    drop(held);
}

/// Node 3's gossip port, held by the test: records what node 0 sends "to node 3". Until
/// `genuine` is set it answers nothing (an old node sends its frames at once; a node that
/// authenticates waits for a challenge); then it proves node 3's key and reads frames.
fn listen_as_node_3(listener: TcpListener, genuine: Arc<AtomicBool>, peers: PeerKeys, key: SigningKey) -> mpsc::Receiver<Message> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (tx, genuine, peers, key) = (tx.clone(), genuine.load(Ordering::SeqCst), peers.clone(), key.clone());
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut index = [0u8; 4];
                if genuine {
                    let (acceptor, challenge) = Acceptor::new(3, [0x33; 32]);
                    let mut response = [0u8; RESPONSE_LEN];
                    if stream.write_all(&challenge).is_err() || stream.read_exact(&mut response).is_err() {
                        return;
                    }
                    let Ok((_, confirm)) = acceptor.on_response(&peers, &key, b"", &response) else { return };
                    if stream.write_all(&confirm).is_err() {
                        return;
                    }
                } else if stream.read_exact(&mut index).is_err() {
                    return;
                }
                read_frames(&mut stream, &tx);
            });
        }
    });
    rx
}

fn catch_up_within(rx: &mpsc::Receiver<Message>, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Message::CatchUp(_)) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn ask_catch_up() -> Vec<u8> {
    frame(&Message::CatchUpRequest { finalized: 0 })
}

#[test]
fn only_a_member_that_proves_its_key_is_answered_and_handshakes_do_not_replay() {
    let mut subnet = Subnet::init("claims", 1);
    let (peers, keys) = subnet.keys();
    let genuine = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind(("127.0.0.1", subnet.gossip_port(3))).unwrap();
    let to_node_3 = listen_as_node_3(listener, genuine.clone(), peers.clone(), keys[3].clone());
    for k in 0..3 {
        subnet.start(k);
    }
    let node_0 = subnet.gossip_port(0);

    // A stranger claims to be node 3 (old peers began with their index) and asks node 0 for
    // the finalized blocks, again and again while the subnet makes them. It signs with a key
    // of its own.
    let stranger = SigningKey::from_bytes(&[0xAB; 32]);
    let mut answered_stranger = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !answered_stranger {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", node_0)) {
            stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut challenge = [0u8; CHALLENGE_LEN];
            let opening = match stream.read_exact(&mut challenge) {
                Ok(()) => Connector::new(3, 0, [1; 32]).on_challenge(&peers, &stranger, b"", &challenge).unwrap().to_vec(),
                Err(_) => 3u32.to_be_bytes().to_vec(),
            };
            let _ = stream.write_all(&opening);
            for _ in 0..5 {
                let _ = stream.write_all(&ask_catch_up());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        answered_stranger = catch_up_within(&to_node_3, Duration::from_millis(500));
    }
    assert!(!answered_stranger, "node 0 answered a catch-up request from a stranger claiming node 3's index");

    // The same with node 3's key: answered (so the silence above was the handshake's doing).
    genuine.store(true, Ordering::SeqCst);
    let mut recorded: Option<([u8; CHALLENGE_LEN], [u8; RESPONSE_LEN])> = None;
    let mut answered = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !answered {
        let mut stream = TcpStream::connect(("127.0.0.1", node_0)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut challenge = [0u8; CHALLENGE_LEN];
        stream.read_exact(&mut challenge).expect("node 0 challenges whoever connects");
        let mut connector = Connector::new(3, 0, [2; 32]);
        let response = connector.on_challenge(&peers, &keys[3], b"", &challenge).unwrap();
        stream.write_all(&response).unwrap();
        let mut confirm = [0u8; CONFIRM_LEN];
        stream.read_exact(&mut confirm).expect("node 0 accepts node 3's proof");
        connector.on_confirm(&peers, b"", &confirm).expect("node 0 proves its own key");
        recorded = Some((challenge, response));
        stream.write_all(&ask_catch_up()).unwrap();
        answered = catch_up_within(&to_node_3, Duration::from_secs(5));
    }
    assert!(answered, "node 0 never answered node 3's catch-up request (is the subnet making blocks?)");

    // Someone who recorded that handshake replays it: node 0's new challenge differs, the old
    // response does not verify, the connection ends without a confirmation and is never read.
    let (old_challenge, old_response) = recorded.unwrap();
    while to_node_3.try_recv().is_ok() {}
    let mut thief = TcpStream::connect(("127.0.0.1", node_0)).unwrap();
    thief.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut challenge = [0u8; CHALLENGE_LEN];
    thief.read_exact(&mut challenge).unwrap();
    assert_ne!(challenge, old_challenge, "a challenge is never repeated");
    thief.write_all(&old_response).unwrap();
    let _ = thief.write_all(&ask_catch_up());
    let mut confirm = [0u8; CONFIRM_LEN];
    assert!(thief.read_exact(&mut confirm).is_err(), "node 0 confirmed a replayed handshake");
    assert!(!catch_up_within(&to_node_3, Duration::from_secs(3)), "a replayed handshake got a catch-up answered");
}

/// The height node `k` last certified (from `/_/metrics`).
fn certified_height(port: u16) -> Option<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    stream.write_all(format!("GET /_/metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().find_map(|l| l.strip_prefix("certified height: ")).and_then(|h| h.trim().parse().ok())
}

/// Connects to `port` as member `me` of the subnet (proving its key) and returns the stream.
fn connect_as(port: u16, me: usize, peers: &PeerKeys, key: &SigningKey) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut challenge = [0u8; CHALLENGE_LEN];
    stream.read_exact(&mut challenge).ok()?;
    let mut connector = Connector::new(me, 0, [5; 32]);
    stream.write_all(&connector.on_challenge(peers, key, b"", &challenge).ok()?).ok()?;
    let mut confirm = [0u8; CONFIRM_LEN];
    stream.read_exact(&mut confirm).ok()?;
    connector.on_confirm(peers, b"", &confirm).ok()?;
    Some(stream)
}

#[test]
fn a_member_flooding_valid_frames_far_over_its_rate_does_not_stop_the_rounds() {
    use tabnet_consensus::limits::Rates;
    use tabnet_consensus::ArtifactId;
    // Nodes 0, 1, 2 run; the test holds node 3's key. With node 3 silent, every round needs
    // node 0: if the flood stalls it, the subnet stops.
    let mut subnet = Subnet::init("rate", 2);
    let (peers, keys) = subnet.keys();
    for k in 0..3 {
        subnet.start(k);
    }
    let (node_0, node_1) = (subnet.port, subnet.port + 1);
    let progress = |seconds: u64| {
        let from = certified_height(node_1).unwrap_or(0);
        std::thread::sleep(Duration::from_secs(seconds));
        certified_height(node_1).unwrap_or(0) - from
    };
    // Let the subnet get going, then measure its pace undisturbed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while certified_height(node_0).unwrap_or(0) < 3 {
        assert!(Instant::now() < deadline, "the subnet does not certify");
        std::thread::sleep(Duration::from_millis(200));
    }
    const WINDOW: u64 = 10;
    let calm = progress(WINDOW);

    // Node 3 floods node 0 with adverts of ingress nobody has (each one, taken, makes node 0
    // fetch), as fast as one thread writes: reconnecting whenever it is cut off.
    let frames: Vec<u8> = (0..100_000u64)
        .flat_map(|k| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&k.to_be_bytes());
            frame(&Message::Advert(ArtifactId::Ingress(id)))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (stop, peers, key) = (stop.clone(), peers.clone(), keys[3].clone());
        let port = subnet.gossip_port(0);
        std::thread::spawn(move || {
            let (mut sent, mut connections) = (0u64, 0u64);
            // How many frames the first connection carried, in how long, until it was cut.
            let mut first: Option<(u64, Duration)> = None;
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let Some(mut stream) = connect_as(port, 3, &peers, &key) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                connections += 1;
                while !stop.load(Ordering::SeqCst) && stream.write_all(&frames).is_ok() {
                    sent += 100_000;
                }
                first.get_or_insert((sent, started.elapsed()));
            }
            (sent, connections, first)
        })
    };
    let flooded = progress(WINDOW);
    stop.store(true, Ordering::SeqCst);
    let (sent, connections, first) = flooder.join().unwrap();
    let after = progress(WINDOW);
    let log = std::fs::read_to_string(subnet.log(0)).unwrap();
    let cut_off: Vec<u64> = log
        .lines()
        .filter_map(|l| l.strip_prefix("tabnet: member 3 keeps sending over its gossip rate (")?.split(' ').next()?.parse().ok())
        .collect();
    let (until_cut, took) = first.unwrap_or((sent, Duration::from_secs(WINDOW)));
    let rate = until_cut as f64 / took.as_secs_f64().max(0.001);
    eprintln!(
        "certified heights in {WINDOW} s: {calm} undisturbed, {flooded} while member 3 flooded node 0, {after} after; its first connection carried {until_cut} frames in {took:?} ({rate:.0}/s, {:.1}x its rate of {}/s with a burst of {}); {sent} frames over {connections} connections in all; node 0 cut it off {} times, dropped frames counted: {cut_off:?}",
        rate / Rates::FRAMES.items_per_second as f64,
        Rates::FRAMES.items_per_second,
        Rates::FRAMES.item_burst,
        cut_off.len()
    );
    assert!(flooded >= 5, "the subnet certified {flooded} heights in {WINDOW} s while node 0 was flooded ({calm} before)");
    assert!(!cut_off.is_empty(), "node 0 never cut off a member sending {rate} frames/s");
    assert!(cut_off.windows(2).all(|w| w[0] < w[1]), "the dropped count rises: {cut_off:?}");
}
