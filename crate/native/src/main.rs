//! `tabnet`: one node that is a whole subnet, serving the IC HTTP interface — or a subnet of
//! several nodes, each its own process.
//!
//! ```text
//! tabnet [serve] [--port P] [--state-dir D] [--bind ADDR] [--www DIR] [--memory-capacity MIB]
//! tabnet init-subnet --nodes N --port P --dir D [--dkg-interval H]
//! tabnet node --dir D --index K [--www DIR]
//! tabnet node --join URL [--port P] [--state-dir D] [--bind ADDR]   # a member of a tab subnet
//! tabnet --nodes N [--port P] [--dir D] [--www DIR]     # init-subnet (if needed) + N node processes
//! ```

mod checkpoints;
mod gossip;
mod log_store;
mod rendezvous;
mod rtc;
mod server;
mod subnet;
mod tab_member;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  tabnet [serve] [--port P (default 4943)] [--state-dir D (default $XDG_DATA_HOME/tabnet or ~/.local/share/tabnet)] [--bind ADDR (default 127.0.0.1)] [--www DIR (serve the web app from DIR)] [--memory-capacity MIB (memory all canisters may use, default 4096)]
  tabnet init-subnet --nodes N --port P --dir D [--dkg-interval H (default 500)]
                                                   write a subnet's configuration (node K: HTTP on P+K, gossip on P+N+K;
                                                   a catch-up package every H heights)
  tabnet node --dir D --index K [--www DIR]        run node K of the subnet in D
  tabnet node --join URL [--port P (default 4943)] [--state-dir D] [--bind ADDR]
                                                   be a node of the tab subnet at URL (the app's address with
                                                   ?subnet=NAME&nodes=N), linked to its tabs over WebRTC
  tabnet --nodes N [--port P] [--dir D] [--www DIR] a whole local subnet: init-subnet if D has none, then N node processes";

/// Stack of the runtime's threads (virtual memory; pages are used only as touched).
const THREAD_STACK_BYTES: usize = 256 * 1024 * 1024;

enum Command {
    Serve(Options),
    InitSubnet { nodes: usize, port: u16, dir: PathBuf, dkg_interval: u64 },
    Node { dir: PathBuf, index: usize, www: Option<PathBuf> },
    Join { url: String, port: u16, state_dir: PathBuf, bind: String },
    Subnet { nodes: usize, port: u16, dir: PathBuf, www: Option<PathBuf> },
}

/// Options of the subnet commands: `--name value` or `--name=value`.
fn subnet_options(args: impl Iterator<Item = String>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(String::new());
        }
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (arg.clone(), args.next().ok_or(format!("{arg} needs a value"))?),
        };
        if !["--nodes", "--port", "--dir", "--index", "--www", "--dkg-interval", "--join", "--state-dir", "--bind"].contains(&name.as_str()) {
            return Err(format!("unknown argument {name}"));
        }
        out.insert(name, value);
    }
    Ok(out)
}

fn parse_command(args: Vec<String>) -> Result<Command, String> {
    let first = args.first().map(String::as_str);
    let subnet_form = first == Some("init-subnet") || first == Some("node") || args.iter().any(|a| a == "--nodes" || a.starts_with("--nodes="));
    if !subnet_form {
        return parse_args(args.into_iter()).map(Command::Serve);
    }
    let rest = if matches!(first, Some("init-subnet" | "node")) { args[1..].to_vec() } else { args.clone() };
    let o = subnet_options(rest.into_iter())?;
    let need = |k: &str| o.get(k).cloned().ok_or(format!("{k} is required"));
    let num = |k: &str, v: String| v.parse::<usize>().map_err(|e| format!("bad {k}: {e}"));
    let port = |v: String| v.parse::<u16>().map_err(|e| format!("bad --port: {e}"));
    let www = o.get("--www").map(PathBuf::from);
    match first {
        Some("init-subnet") => Ok(Command::InitSubnet {
            nodes: num("--nodes", need("--nodes")?)?,
            port: port(need("--port")?)?,
            dir: need("--dir")?.into(),
            dkg_interval: o.get("--dkg-interval").cloned().map(|v| num("--dkg-interval", v)).transpose()?.map_or(subnet::DEFAULT_DKG_INTERVAL, |h| h as u64),
        }),
        Some("node") if o.contains_key("--join") => Ok(Command::Join {
            url: need("--join")?,
            port: o.get("--port").cloned().map(port).transpose()?.unwrap_or(4943),
            state_dir: match o.get("--state-dir") {
                Some(d) => PathBuf::from(d),
                None => default_state_dir()?.join("tab-member"),
            },
            bind: o.get("--bind").cloned().unwrap_or_else(|| "127.0.0.1".into()),
        }),
        Some("node") => Ok(Command::Node { dir: need("--dir")?.into(), index: num("--index", need("--index")?)?, www }),
        _ => {
            let dir = match o.get("--dir") {
                Some(d) => PathBuf::from(d),
                None => default_state_dir()?.join("subnet"),
            };
            let port = o.get("--port").cloned().map(port).transpose()?.unwrap_or(4943);
            Ok(Command::Subnet { nodes: num("--nodes", need("--nodes")?)?, port, dir, www })
        }
    }
}

/// `tabnet --nodes N`: the subnet's configuration (made if missing), then one process per node.
fn run_subnet(nodes: usize, port: u16, dir: PathBuf, www: Option<PathBuf>) -> Result<(), String> {
    let file = match subnet::SubnetFile::read(&dir) {
        Ok(f) if f.nodes == nodes => f,
        Ok(f) => return Err(format!("{} holds a subnet of {} nodes, not {nodes}", dir.display(), f.nodes)),
        Err(_) => subnet::init(&dir, nodes, port, subnet::DEFAULT_DKG_INTERVAL)?,
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut children = Vec::new();
    for k in 0..nodes {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("node").arg("--dir").arg(&dir).arg("--index").arg(k.to_string());
        if let Some(www) = &www {
            cmd.arg("--www").arg(www);
        }
        children.push(cmd.spawn().map_err(|e| format!("cannot start node {k}: {e}"))?);
    }
    println!("tabnet: a subnet of {nodes} nodes in {}; node K answers on http://127.0.0.1:{}+K", dir.display(), file.port);
    // A node that stops (killed, crashed) leaves the others running, as in a real subnet; say
    // how to start it again. Ctrl-C reaches every node (one process group); return when all
    // have stopped.
    let mut running: Vec<Option<std::process::Child>> = children.into_iter().map(Some).collect();
    while running.iter().any(Option::is_some) {
        for (k, slot) in running.iter_mut().enumerate() {
            if let Some(Ok(Some(status))) = slot.as_mut().map(|c| c.try_wait()) {
                *slot = None;
                eprintln!(
                    "tabnet: node {k} stopped ({status}); the others go on. Start it again with: {} node --dir {} --index {k}",
                    exe.display(),
                    dir.display()
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

struct Options {
    port: u16,
    state_dir: PathBuf,
    bind: String,
    www: Option<PathBuf>,
    memory_capacity_mib: Option<u64>,
}

fn default_state_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("tabnet"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty()).ok_or("neither XDG_DATA_HOME nor HOME is set; pass --state-dir")?;
    Ok(PathBuf::from(home).join(".local/share/tabnet"))
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut port = 4943u16;
    let mut state_dir = None;
    let mut bind = "127.0.0.1".to_string();
    let mut www = None;
    let mut memory_capacity_mib = None;
    let mut args = args.peekable();
    if args.peek().map(String::as_str) == Some("serve") {
        args.next();
    }
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| inline.clone().or_else(|| args.next()).ok_or(format!("{name} needs a value"));
        match name.as_str() {
            "--port" => port = value("--port")?.parse().map_err(|e| format!("bad --port: {e}"))?,
            "--state-dir" => state_dir = Some(PathBuf::from(value("--state-dir")?)),
            "--bind" => bind = value("--bind")?,
            "--www" => www = Some(PathBuf::from(value("--www")?)),
            "--memory-capacity" => {
                memory_capacity_mib = Some(value("--memory-capacity")?.parse().map_err(|e| format!("bad --memory-capacity: {e}"))?)
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let state_dir = match state_dir {
        Some(d) => d,
        None => default_state_dir()?,
    };
    Ok(Options { port, state_dir, bind, www, memory_capacity_mib })
}

fn main() -> ExitCode {
    let command = match parse_command(std::env::args().skip(1).collect()) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tabnet: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::InitSubnet { nodes, port, dir, dkg_interval } => subnet::init(&dir, nodes, port, dkg_interval).map(|f| {
            println!("tabnet: a subnet of {} nodes in {}: node K serves http://127.0.0.1:{}+K", f.nodes, dir.display(), f.port);
        }),
        Command::Subnet { nodes, port, dir, www } => run_subnet(nodes, port, dir, www),
        Command::Node { dir, index, www } => with_runtime(|| async move { subnet::run_node(&dir, index, www).await }),
        Command::Join { url, port, state_dir, bind } => with_runtime(|| async move {
            let settings = server::Settings { bind, port, state_dir, www: None, memory_capacity: None };
            tab_member::run_join(&url, settings).await
        }),
        Command::Serve(options) => {
            let settings = server::Settings {
                bind: options.bind,
                port: options.port,
                state_dir: options.state_dir,
                www: options.www,
                memory_capacity: options.memory_capacity_mib.map(|mib| mib * 1024 * 1024),
            };
            with_runtime(|| server::serve(settings))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tabnet: {e}");
            ExitCode::FAILURE
        }
    }
}

fn with_runtime<F: std::future::Future<Output = Result<(), String>>>(f: impl FnOnce() -> F) -> Result<(), String> {
    // Rounds and queries run canister code on the runtime's threads; the embedder and the
    // scheduler recurse (nested Wasm calls, deep call trees), so give them room.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(THREAD_STACK_BYTES)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(f());
    // Dropping the runtime would wait for every blocking task; one stuck in a round or a query
    // must not keep a stopped node alive.
    runtime.shutdown_timeout(server::STOP_GRACE);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments_parse() {
        let o = parse(&["serve", "--port", "5000", "--state-dir=/tmp/x", "--bind", "0.0.0.0"]).unwrap();
        assert_eq!((o.port, o.state_dir, o.bind.as_str()), (5000, PathBuf::from("/tmp/x"), "0.0.0.0"));
        assert_eq!(parse(&["--state-dir", "/d"]).unwrap().port, 4943);
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--port", "99999", "--state-dir", "/d"]).is_err());
    }

    #[test]
    fn subnet_commands_parse() {
        let args = |a: &[&str]| parse_command(a.iter().map(|s| s.to_string()).collect());
        assert!(matches!(args(&["init-subnet", "--nodes", "4", "--port", "8000", "--dir", "/d"]), Ok(Command::InitSubnet { nodes: 4, port: 8000, .. })));
        assert!(matches!(args(&["node", "--dir=/d", "--index", "2"]), Ok(Command::Node { index: 2, .. })));
        assert!(matches!(args(&["node", "--join", "http://h/?subnet=a", "--port", "5000", "--state-dir", "/s"]), Ok(Command::Join { port: 5000, .. })));
        assert!(matches!(args(&["--nodes", "4", "--dir", "/d"]), Ok(Command::Subnet { nodes: 4, port: 4943, .. })));
        assert!(matches!(args(&["--port", "5000"]), Ok(Command::Serve(_))));
        assert!(args(&["node", "--dir", "/d"]).is_err(), "--index is required");
        assert!(args(&["init-subnet", "--nodes", "4", "--bogus", "1"]).is_err());
    }
}
