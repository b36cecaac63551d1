// Included by every canister's lib.rs: checks that the committed `<canister>.did` equals the
// interface the code exports. `UPDATE_DID=1 cargo test` rewrites the files.
#[test]
fn candid_interface_matches_did_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/", env!("CARGO_PKG_NAME"), ".did");
    let exported = super::__export_service();
    if std::env::var_os("UPDATE_DID").is_some() {
        std::fs::write(path, format!("{}\n", exported.trim())).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        exported.trim(),
        committed.trim(),
        "{path} is stale; run UPDATE_DID=1 cargo test --manifest-path canisters/Cargo.toml"
    );
}
