//! Which state-tree paths a read_state request may ask for (the spec's "Request: Read state").
//!
//! - `/time`, `/subnet/...` and `/canister_ranges/<subnet>`: always.
//! - `/request_status/<id>[/status|reply|reject_code|reject_message|error_code]`: one request id
//!   per read_state; allowed when the id is unknown, or when the read_state's sender sent the
//!   call and the call was for this effective canister id.
//! - `/canister/<id>/module_hash|controllers|metadata/<name>`: only on the canister endpoint and
//!   only for the effective canister id; private metadata only for the canister's controllers.
//! - anything else (including `/canister/<id>/certified_data`): 404.

use tabnet_types::Principal;

use crate::error::HttpError;
use crate::ingress::IngressHistory;

/// Which endpoint a read_state came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStateScope {
    Canister(Principal),
    Subnet(Principal),
}

/// What the authorization needs to know about a canister.
pub trait CanisterAccess {
    fn controllers(&self, canister: &Principal) -> Option<Vec<Principal>>;
    /// `Some(true)` public, `Some(false)` private, `None` no such section (or no canister).
    fn metadata_is_public(&self, canister: &Principal, name: &str) -> Option<bool>;
}

const REQUEST_STATUS_FIELDS: [&[u8]; 5] = [b"status", b"reply", b"reject_code", b"reject_message", b"error_code"];

/// Checks every path; the first one not allowed decides the error.
pub fn authorize(
    paths: &[Vec<Vec<u8>>],
    scope: ReadStateScope,
    sender: &Principal,
    history: &IngressHistory,
    canisters: &dyn CanisterAccess,
) -> Result<(), HttpError> {
    let mut request_id: Option<&[u8]> = None;
    for path in paths {
        let labels: Vec<&[u8]> = path.iter().map(|l| l.as_slice()).collect();
        match labels.as_slice() {
            [] => return Err(HttpError::not_found("Invalid path requested: the empty path")),
            [b"time"] => {}
            [b"subnet", rest @ ..] if subnet_path_ok(rest) => {}
            [b"canister_ranges", _subnet] => {}
            [b"request_status", id, rest @ ..]
                if rest.is_empty() || (rest.len() == 1 && REQUEST_STATUS_FIELDS.contains(&rest[0])) =>
            {
                if id.len() != 32 {
                    return Err(HttpError::bad_request(format!(
                        "Invalid request id in path: {} bytes, expected 32",
                        id.len()
                    )));
                }
                match request_id {
                    Some(seen) if seen != *id => {
                        return Err(HttpError::bad_request(
                            "Can only request a single request ID in request_status paths.",
                        ))
                    }
                    _ => request_id = Some(id),
                }
            }
            [b"canister", canister, field @ ..] => {
                let ReadStateScope::Canister(ecid) = scope else {
                    return Err(HttpError::not_found(
                        "Invalid path requested: canister paths are read at /api/v2/canister/<id>/read_state",
                    ));
                };
                let canister = Principal::try_from_slice(canister)
                    .map_err(|_| HttpError::bad_request("Invalid canister id in path"))?;
                let field_ok = matches!(field, [b"module_hash"] | [b"controllers"] | [b"metadata", _]);
                if !field_ok {
                    return Err(HttpError::not_found("Invalid path requested."));
                }
                if canister != ecid {
                    return Err(HttpError::bad_request(format!(
                        "Effective principal id in URL {} does not match requested canister id: {}.",
                        ecid.to_text(),
                        canister.to_text()
                    )));
                }
                if let [b"metadata", name] = field {
                    let name = std::str::from_utf8(name)
                        .map_err(|_| HttpError::bad_request("Metadata name in path is not UTF-8"))?;
                    if canisters.metadata_is_public(&canister, name) == Some(false) {
                        let controllers = canisters.controllers(&canister).unwrap_or_default();
                        if !controllers.contains(sender) {
                            return Err(HttpError::forbidden(format!(
                                "Custom section {name} can only be requested by the controllers of the canister."
                            )));
                        }
                    }
                }
            }
            _ => return Err(HttpError::not_found("Invalid path requested.")),
        }
    }

    if let Some(id) = request_id {
        let id: [u8; 32] = id.try_into().expect("checked to be 32 bytes");
        if let Some(status) = history.get(&id) {
            if &status.sender != sender {
                return Err(HttpError::forbidden(
                    "Request IDs must be for requests signed by the caller.",
                ));
            }
            if let ReadStateScope::Canister(ecid) = scope {
                if status.effective_canister_id != ecid {
                    return Err(HttpError::forbidden(
                        "Request IDs must be for requests to canisters belonging to the effective canister id.",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `/subnet`, `/subnet/<id>`, `/subnet/<id>/{public_key,type,canister_ranges,metrics,node}`,
/// `/subnet/<id>/node/<node>`, `/subnet/<id>/node/<node>/public_key`.
fn subnet_path_ok(rest: &[&[u8]]) -> bool {
    matches!(
        rest,
        [] | [_]
            | [_, b"public_key" | b"type" | b"canister_ranges" | b"metrics" | b"node"]
            | [_, b"node", _]
            | [_, b"node", _, b"public_key"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::{IngressState, IngressStatus};

    struct Canisters;
    impl CanisterAccess for Canisters {
        fn controllers(&self, _: &Principal) -> Option<Vec<Principal>> {
            Some(vec![Principal::from_slice(&[7])])
        }
        fn metadata_is_public(&self, _: &Principal, name: &str) -> Option<bool> {
            match name {
                "candid:service" => Some(true),
                "secret" => Some(false),
                _ => None,
            }
        }
    }

    fn p(labels: &[&[u8]]) -> Vec<Vec<u8>> {
        labels.iter().map(|l| l.to_vec()).collect()
    }

    #[test]
    fn paths_are_authorized_as_the_spec_says() {
        let cid = tabnet_types::canister_id_from_index(0);
        let other = tabnet_types::canister_id_from_index(1);
        let alice = Principal::from_slice(&[7]);
        let bob = Principal::from_slice(&[8]);
        let mut history = IngressHistory::default();
        history.insert(
            [9; 32],
            IngressStatus {
                state: IngressState::Received,
                sender: alice,
                effective_canister_id: cid,
                ingress_expiry: 10,
                updated_at: 0,
            },
        );
        let scope = ReadStateScope::Canister(cid);
        let ok = |paths: Vec<Vec<Vec<u8>>>, sender: &Principal| authorize(&paths, scope, sender, &history, &Canisters);

        assert!(ok(vec![p(&[b"time"])], &bob).is_ok());
        assert!(ok(vec![p(&[b"subnet"]), p(&[b"subnet", b"x", b"node", b"y", b"public_key"])], &bob).is_ok());
        assert!(ok(vec![p(&[b"canister", cid.as_slice(), b"module_hash"])], &bob).is_ok());
        assert!(ok(vec![p(&[b"canister", cid.as_slice(), b"controllers"])], &bob).is_ok());
        assert!(ok(vec![p(&[b"canister", cid.as_slice(), b"metadata", b"candid:service"])], &bob).is_ok());
        // Private metadata: controllers only.
        assert_eq!(ok(vec![p(&[b"canister", cid.as_slice(), b"metadata", b"secret"])], &bob).unwrap_err().status, 403);
        assert!(ok(vec![p(&[b"canister", cid.as_slice(), b"metadata", b"secret"])], &alice).is_ok());
        // Another canister than the effective one.
        assert_eq!(ok(vec![p(&[b"canister", other.as_slice(), b"module_hash"])], &bob).unwrap_err().status, 400);
        // certified_data is not readable by users.
        assert_eq!(ok(vec![p(&[b"canister", cid.as_slice(), b"certified_data"])], &bob).unwrap_err().status, 404);
        assert_eq!(ok(vec![p(&[b"nonsense"])], &bob).unwrap_err().status, 404);
        // Request status: the sender's own request, or an unknown one.
        assert!(ok(vec![p(&[b"request_status", &[9; 32]])], &alice).is_ok());
        assert!(ok(vec![p(&[b"request_status", &[9; 32], b"reply"])], &alice).is_ok());
        assert_eq!(ok(vec![p(&[b"request_status", &[9; 32]])], &bob).unwrap_err().status, 403);
        assert!(ok(vec![p(&[b"request_status", &[5; 32]])], &bob).is_ok());
        assert_eq!(
            ok(vec![p(&[b"request_status", &[9; 32]]), p(&[b"request_status", &[5; 32]])], &alice).unwrap_err().status,
            400
        );
        assert_eq!(ok(vec![p(&[b"request_status", &[9; 3]])], &alice).unwrap_err().status, 400);
        // The right sender but another effective canister id.
        let scope_other = ReadStateScope::Canister(other);
        assert_eq!(
            authorize(&[p(&[b"request_status", &[9; 32]])], scope_other, &alice, &history, &Canisters).unwrap_err().status,
            403
        );
        // Subnet endpoint: no canister paths.
        let subnet = ReadStateScope::Subnet(Principal::from_slice(&[1, 2]));
        assert_eq!(
            authorize(&[p(&[b"canister", cid.as_slice(), b"module_hash"])], subnet, &alice, &history, &Canisters)
                .unwrap_err()
                .status,
            404
        );
        assert!(authorize(&[p(&[b"canister_ranges", &[1, 2]])], subnet, &alice, &history, &Canisters).is_ok());
    }
}
