//! The IC HTTP interface of a node, sans-IO: which endpoint a request names, and what each
//! answers from the replica. The edges move the bytes — the native server (axum, with its
//! connection and body limits) and a tab's service worker (which hands the page's `fetch`es to
//! the tab's node) — and calls to consensus.
//!
//! A call is checked here ([`check_call`]) and then submitted to consensus by the edge; v2
//! answers 202 at once, v3/v4 wait for the certified outcome ([`call_outcome`] after each
//! certified height) or answer 202 when they stop waiting.

use tabnet_replica::{authenticate_call, rejection_body, replied_body, HttpError, ReadStateScope, Replica, RequestId, Store, SubmitError};
use tabnet_types::{Principal, MANAGEMENT_CANISTER};

use crate::replica::wrap_call;

/// Ingress messages are at most 2 MiB; the envelope adds signatures and delegations. A larger
/// request body is refused with 413 before it is decoded, by every edge.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024 + 256 * 1024;

/// The 413 an edge answers for a body over [`MAX_BODY_BYTES`].
pub fn body_too_large() -> HttpError {
    HttpError::new(413, format!("Request body is larger than {MAX_BODY_BYTES} bytes"))
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/v2/status`
    Status,
    /// `POST /api/v2|v3|v4/canister/<ecid>/call`, or `/api/v4/subnet/<id>/call` (canister
    /// creation; its effective canister id is the management canister's). `sync`: v3 and v4.
    Call { ecid: Principal, sync: bool, subnet: Option<Principal> },
    /// `POST /api/v2|v3/canister/<ecid>/query`, `/api/v3/subnet/<id>/query`
    Query(ReadStateScope),
    /// `POST /api/v2|v3/canister/<ecid>/read_state`, `/api/v2|v3/subnet/<id>/read_state`
    ReadState(ReadStateScope),
}

fn principal(text: &str, what: &str) -> Result<Principal, HttpError> {
    Principal::from_text(text).map_err(|e| HttpError::bad_request(format!("Invalid {what} {text:?} in URL: {e}")))
}

/// Calls, queries and read_state carry CBOR and say so, as agents do (the IC answers the same
/// 400); a page on another origin cannot send such a request without a CORS preflight.
pub fn is_cbor(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/cbor"))
}

/// The endpoint `method path` names (the path without its query string).
pub fn route(method: &str, path: &str, content_type: Option<&str>) -> Result<Endpoint, HttpError> {
    let not_found = || HttpError::not_found(format!("{method} {path} is not an endpoint of the IC HTTP interface"));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts == ["api", "v2", "status"] {
        return if method == "GET" { Ok(Endpoint::Status) } else { Err(HttpError::new(405, "use GET for /api/v2/status")) };
    }
    let ["api", version, kind, id, action] = parts.as_slice() else { return Err(not_found()) };
    if method != "POST" {
        return Err(HttpError::new(405, format!("use POST for {path}")));
    }
    if !is_cbor(content_type) {
        return Err(HttpError::bad_request("Unexpected content-type, expected application/cbor."));
    }
    match (*version, *kind, *action) {
        ("v2" | "v3" | "v4", "canister", "call") => {
            Ok(Endpoint::Call { ecid: principal(id, "effective canister id")?, sync: *version != "v2", subnet: None })
        }
        ("v4", "subnet", "call") => Ok(Endpoint::Call { ecid: MANAGEMENT_CANISTER, sync: true, subnet: Some(principal(id, "subnet id")?) }),
        ("v2" | "v3", "canister", "query") => Ok(Endpoint::Query(ReadStateScope::Canister(principal(id, "effective canister id")?))),
        ("v3", "subnet", "query") => Ok(Endpoint::Query(ReadStateScope::Subnet(principal(id, "subnet id")?))),
        ("v2" | "v3", "canister", "read_state") => Ok(Endpoint::ReadState(ReadStateScope::Canister(principal(id, "effective canister id")?))),
        ("v2" | "v3", "subnet", "read_state") => Ok(Endpoint::ReadState(ReadStateScope::Subnet(principal(id, "subnet id")?))),
        _ => Err(not_found()),
    }
}

/// What an edge does with a call once it is checked.
pub enum Checked {
    /// Submit `ingress` to consensus, then answer 202 (v2) or wait for `id`'s outcome.
    Submit { id: RequestId, ingress: Vec<u8> },
    /// Answer this at once (an error, or a rejection before execution: 200 with its CBOR).
    Answer { status: u16, body: Vec<u8>, cbor: bool },
}

/// Checks a call to `ecid` (`subnet`: addressed to a subnet) as the node receiving it must:
/// authentic, for its effective canister id, not executed already, accepted by the canister.
pub fn check_call<S: Store>(replica: &mut Replica<S>, ecid: Principal, subnet: Option<Principal>, sync: bool, body: &[u8], now: u64) -> Checked {
    if let Some(subnet) = subnet.filter(|s| *s != replica.subnet_id()) {
        return error(HttpError::not_found(format!("Subnet {} is not this subnet", subnet.to_text())));
    }
    let checked = authenticate_call(body, &ecid, now).map_err(SubmitError::Http).and_then(|call| replica.check_call(&call, now));
    match checked {
        Ok(id) => Checked::Submit { id, ingress: wrap_call(body, &ecid) },
        Err(SubmitError::Http(e)) => error(e),
        Err(SubmitError::Rejected(e)) => Checked::Answer { status: 200, body: rejection_body(&e, sync), cbor: true },
    }
}

fn error(e: HttpError) -> Checked {
    Checked::Answer { status: e.status, body: e.message.into_bytes(), cbor: false }
}

/// The answer to a synchronous call once its outcome is certified: the certificate of its
/// status (replied or rejected). `None` while it is unknown or still running.
pub fn call_outcome<S: Store>(replica: &Replica<S>, id: &RequestId) -> Option<Vec<u8>> {
    let status = replica.certified_status(id)?;
    status.state.is_terminal().then(|| replied_body(replica.call_certificate(id)))
}

/// A response: status, whether the body is CBOR (else plain text), body.
pub struct Response {
    pub status: u16,
    pub cbor: bool,
    pub body: Vec<u8>,
}

impl Response {
    fn of(result: Result<Vec<u8>, HttpError>) -> Self {
        match result {
            Ok(body) => Response { status: 200, cbor: true, body },
            Err(e) => Response { status: e.status, cbor: false, body: e.message.into_bytes() },
        }
    }
}

/// Answers the endpoints that need no consensus: status, query, read_state.
pub fn answer<S: Store>(replica: &mut Replica<S>, endpoint: &Endpoint, body: &[u8], now: u64) -> Option<Response> {
    Some(match endpoint {
        Endpoint::Status => Response { status: 200, cbor: true, body: replica.status() },
        Endpoint::Query(scope) => Response::of(replica.query(body, *scope, now)),
        Endpoint::ReadState(scope) => Response::of(replica.read_state(body, *scope, now)),
        Endpoint::Call { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_endpoints_of_the_interface() {
        let cbor = Some("application/cbor");
        let c = Principal::from_text("rwlgt-iiaaa-aaaaa-aaaaa-cai").unwrap();
        assert_eq!(route("GET", "/api/v2/status", None).unwrap(), Endpoint::Status);
        assert_eq!(route("POST", &format!("/api/v2/canister/{c}/call"), cbor).unwrap(), Endpoint::Call { ecid: c, sync: false, subnet: None });
        assert_eq!(route("POST", &format!("/api/v4/canister/{c}/call"), cbor).unwrap(), Endpoint::Call { ecid: c, sync: true, subnet: None });
        assert_eq!(route("POST", &format!("/api/v3/canister/{c}/query"), cbor).unwrap(), Endpoint::Query(ReadStateScope::Canister(c)));
        assert_eq!(route("POST", &format!("/api/v2/subnet/{c}/read_state"), cbor).unwrap(), Endpoint::ReadState(ReadStateScope::Subnet(c)));
        assert_eq!(
            route("POST", &format!("/api/v4/subnet/{c}/call"), cbor).unwrap(),
            Endpoint::Call { ecid: MANAGEMENT_CANISTER, sync: true, subnet: Some(c) }
        );
        assert_eq!(route("POST", &format!("/api/v2/canister/{c}/call"), Some("text/plain")).unwrap_err().status, 400);
        assert_eq!(route("GET", &format!("/api/v2/canister/{c}/call"), cbor).unwrap_err().status, 405);
        assert_eq!(route("POST", "/api/v2/canister/not-a-principal/call", cbor).unwrap_err().status, 400);
        assert_eq!(route("POST", &format!("/api/v2/subnet/{c}/query"), cbor).unwrap_err().status, 404);
        assert_eq!(route("GET", "/api/v9/status", None).unwrap_err().status, 404);
    }
}
