//! `tabnet`: one node that is a whole subnet, serving the IC HTTP interface.
//!
//! ```text
//! tabnet [serve] [--port P] [--state-dir D] [--bind ADDR] [--www DIR] [--memory-capacity MIB]
//! ```

mod log_store;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: tabnet [serve] [--port P (default 4943)] [--state-dir D (default $XDG_DATA_HOME/tabnet or ~/.local/share/tabnet)] [--bind ADDR (default 127.0.0.1)] [--www DIR (serve the web app from DIR)] [--memory-capacity MIB (memory all canisters may use, default 4096)]";

/// Stack of the runtime's threads (virtual memory; pages are used only as touched).
const THREAD_STACK_BYTES: usize = 256 * 1024 * 1024;

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
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tabnet: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Rounds and queries run canister code on the runtime's threads; the embedder and the
    // scheduler recurse (nested Wasm calls, deep call trees), so give them room.
    let runtime = match tokio::runtime::Builder::new_multi_thread().thread_stack_size(THREAD_STACK_BYTES).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tabnet: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = server::Settings {
        bind: options.bind,
        port: options.port,
        state_dir: options.state_dir,
        www: options.www,
        memory_capacity: options.memory_capacity_mib.map(|mib| mib * 1024 * 1024),
    };
    match runtime.block_on(server::serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tabnet: {e}");
            ExitCode::FAILURE
        }
    }
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
}
