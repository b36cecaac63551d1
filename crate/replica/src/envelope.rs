//! Decoding and validating the CBOR authentication envelope of the HTTP interface:
//! `{content, sender_pubkey?, sender_sig?, sender_delegation?}` (optionally under the
//! self-describing tag 55799).
//!
//! Decoding checks the shape (every field present with its type); `validate` checks what
//! depends on time and keys: the ingress expiry window and the sender's signature and
//! delegation chain. Every failure is a 400 with a message that says what was wrong.

use ciborium::Value;
use tabnet_crypto::SignedDelegation;
use tabnet_types::Principal;

use crate::error::HttpError;

/// Requests may expire at most this far in the future (the IC's `MAX_INGRESS_TTL`).
pub const MAX_INGRESS_TTL_NANOS: u64 = 5 * 60 * 1_000_000_000;
/// Clock drift between agent and node that we tolerate on top of the TTL.
pub const PERMITTED_DRIFT_NANOS: u64 = 60 * 1_000_000_000;
/// The self-describing CBOR tag agents put in front of envelopes.
pub const CBOR_SELF_DESCRIBE_TAG: u64 = 55799;
/// Limits of the spec on read_state paths.
pub const MAX_PATHS: usize = 1000;
pub const MAX_PATH_LABELS: usize = 127;
/// Delegation chains longer than this are refused (spec: at most 20).
pub const MAX_DELEGATIONS: usize = 20;
/// Nonces are at most 32 bytes.
pub const MAX_NONCE_BYTES: usize = 32;
/// CBOR items in one request body: a read_state of `MAX_PATHS` paths of `MAX_PATH_LABELS`
/// labels fits, with room for the envelope and a full delegation chain.
pub const MAX_CBOR_ITEMS: usize = 200_000;
/// Elements of one CBOR array or entries of one map: the spec's most paths and most
/// delegation targets (1,000 each); envelopes' maps have a handful of fields.
pub const MAX_CBOR_CONTAINER: u64 = 1000;
/// Nesting of CBOR arrays, maps and tags.
pub const MAX_CBOR_DEPTH: usize = 64;

/// The three kinds of request, named as in the `request_type` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    Call,
    Query,
    ReadState,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Call => "call",
            RequestType::Query => "query",
            RequestType::ReadState => "read_state",
        }
    }
}

/// The fields of a call or query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanisterCall {
    pub canister_id: Principal,
    pub method_name: String,
    pub arg: Vec<u8>,
}

/// What the request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Call(CanisterCall),
    Query(CanisterCall),
    ReadState { paths: Vec<Vec<Vec<u8>>> },
}

/// A decoded (not yet validated) request.
#[derive(Clone, Debug)]
pub struct Request {
    /// The representation-independent hash of the `content` map, all fields included.
    pub request_id: [u8; 32],
    pub sender: Principal,
    pub ingress_expiry: u64,
    pub nonce: Option<Vec<u8>>,
    pub content: Content,
    pub sender_pubkey: Option<Vec<u8>>,
    pub sender_sig: Option<Vec<u8>>,
    pub sender_delegation: Option<Vec<SignedDelegation>>,
}

impl Request {
    pub fn request_type(&self) -> RequestType {
        match self.content {
            Content::Call(_) => RequestType::Call,
            Content::Query(_) => RequestType::Query,
            Content::ReadState { .. } => RequestType::ReadState,
        }
    }

    /// The call or query fields, if this is one.
    pub fn call(&self) -> Option<&CanisterCall> {
        match &self.content {
            Content::Call(c) | Content::Query(c) => Some(c),
            Content::ReadState { .. } => None,
        }
    }
}

/// Parses CBOR bytes into a value, removing the self-describing tag if present. The bytes'
/// shape is checked first ([`check_cbor_limits`]), so no value is built for a body of
/// hundreds of thousands of tiny items.
pub fn parse_cbor(bytes: &[u8]) -> Result<Value, HttpError> {
    check_cbor_limits(bytes).map_err(|e| HttpError::bad_request(format!("Could not parse body as CBOR: {e}")))?;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(bytes, MAX_CBOR_DEPTH)
        .map_err(|e| HttpError::bad_request(format!("Could not parse body as CBOR: {e}")))?;
    Ok(strip_self_describe(value))
}

/// Walks the item heads of the CBOR item at the start of `bytes` without building it: at most
/// `MAX_CBOR_ITEMS` items, `MAX_CBOR_CONTAINER` elements or entries per array or map, nesting
/// at most `MAX_CBOR_DEPTH`, and every length within the input. Linear in the input's length.
pub fn check_cbor_limits(bytes: &[u8]) -> Result<(), String> {
    use ciborium_ll::{Decoder, Header};
    use ciborium_io::Read;

    /// An array, map, tag or chunked string still open: items left (`None`: until a break),
    /// items seen and the most it may hold (a map's entries are two items each).
    struct Open {
        left: Option<u64>,
        seen: u64,
        most: u64,
    }
    let indefinite = |most| Open { left: None, seen: 0, most };
    let mut decoder = Decoder::from(bytes);
    let mut open = vec![Open { left: Some(1), seen: 0, most: 1 }];
    let mut items = 0usize;
    let mut skip = [0u8; 4096];
    while let Some(top) = open.last_mut() {
        if top.left == Some(0) {
            open.pop();
            continue;
        }
        let at = decoder.offset();
        let header = decoder.pull().map_err(|_| format!("malformed item at byte {at}"))?;
        if matches!(header, Header::Break) {
            if top.left.is_some() {
                return Err(format!("unexpected break at byte {at}"));
            }
            open.pop();
            continue;
        }
        if let Some(left) = &mut top.left {
            *left -= 1;
        }
        top.seen += 1;
        if top.seen > top.most {
            return Err(format!("more than {MAX_CBOR_CONTAINER} elements in an array or map at byte {at}"));
        }
        items += 1;
        if items > MAX_CBOR_ITEMS {
            return Err(format!("more than {MAX_CBOR_ITEMS} items"));
        }
        let container = |n: u64, per: u64| {
            if n > MAX_CBOR_CONTAINER {
                return Err(format!("{n} elements in an array or map at byte {at} (at most {MAX_CBOR_CONTAINER})"));
            }
            Ok(Open { left: Some(n * per), seen: 0, most: n * per })
        };
        let child = match header {
            Header::Positive(_) | Header::Negative(_) | Header::Float(_) | Header::Simple(_) | Header::Break => None,
            Header::Tag(_) => Some(Open { left: Some(1), seen: 0, most: 1 }),
            Header::Bytes(Some(len)) | Header::Text(Some(len)) => {
                if len > bytes.len() - decoder.offset() {
                    return Err(format!("a string at byte {at} is longer than the input"));
                }
                let mut left = len;
                while left > 0 {
                    let n = left.min(skip.len());
                    decoder.read_exact(&mut skip[..n]).map_err(|_| format!("truncated string at byte {at}"))?;
                    left -= n;
                }
                None
            }
            Header::Bytes(None) | Header::Text(None) | Header::Array(None) => Some(indefinite(MAX_CBOR_CONTAINER)),
            Header::Map(None) => Some(indefinite(2 * MAX_CBOR_CONTAINER)),
            Header::Array(Some(n)) => Some(container(n as u64, 1)?),
            Header::Map(Some(n)) => Some(container(n as u64, 2)?),
        };
        if let Some(child) = child {
            if open.len() > MAX_CBOR_DEPTH {
                return Err(format!("nesting deeper than {MAX_CBOR_DEPTH} at byte {at}"));
            }
            open.push(child);
        }
    }
    Ok(())
}

fn strip_self_describe(value: Value) -> Value {
    match value {
        Value::Tag(CBOR_SELF_DESCRIBE_TAG, inner) => *inner,
        other => other,
    }
}

/// Decodes an envelope and checks that its content is a request of type `expected`.
pub fn decode(bytes: &[u8], expected: RequestType) -> Result<Request, HttpError> {
    let envelope = parse_cbor(bytes)?;
    let Value::Map(fields) = envelope else {
        return Err(HttpError::bad_request("Could not parse body as request envelope: expected a CBOR map"));
    };
    let mut content = None;
    let mut sender_pubkey = None;
    let mut sender_sig = None;
    let mut sender_delegation = None;
    for (key, value) in fields {
        let Value::Text(key) = key else {
            return Err(HttpError::bad_request("Could not parse body as request envelope: keys must be text"));
        };
        match key.as_str() {
            "content" => content = Some(value),
            "sender_pubkey" => sender_pubkey = Some(blob(value, "sender_pubkey")?),
            "sender_sig" => sender_sig = Some(blob(value, "sender_sig")?),
            "sender_delegation" => sender_delegation = Some(delegations(value)?),
            // Unknown envelope fields are ignored, as the IC does.
            _ => {}
        }
    }
    let content =
        content.ok_or_else(|| HttpError::bad_request("Could not parse body as request envelope: missing field `content`"))?;
    let content = strip_self_describe(content);
    let Value::Map(content_fields) = &content else {
        return Err(HttpError::bad_request("Could not parse body as request: `content` must be a map"));
    };

    let mut f = Fields::new(content_fields)?;
    let request_type = f.text("request_type")?;
    if request_type != expected.as_str() {
        return Err(HttpError::bad_request(format!(
            "Unexpected request_type `{request_type}`: this endpoint takes `{}` requests",
            expected.as_str()
        )));
    }
    let sender = principal(f.blob("sender")?, "sender")?;
    let ingress_expiry = f.nat("ingress_expiry")?;
    let nonce = f.opt_blob("nonce")?;
    if let Some(nonce) = &nonce {
        if nonce.len() > MAX_NONCE_BYTES {
            return Err(HttpError::bad_request(format!(
                "Nonce is {} bytes; at most {MAX_NONCE_BYTES} are allowed",
                nonce.len()
            )));
        }
    }
    let body = match expected {
        RequestType::Call | RequestType::Query => {
            let call = CanisterCall {
                canister_id: principal(f.blob("canister_id")?, "canister_id")?,
                method_name: f.text("method_name")?,
                arg: f.blob("arg")?,
            };
            if expected == RequestType::Call {
                Content::Call(call)
            } else {
                Content::Query(call)
            }
        }
        RequestType::ReadState => Content::ReadState { paths: paths(f.required("paths")?)? },
    };

    let request_id = tabnet_crypto::request_id(&content)
        .map_err(|e| HttpError::bad_request(format!("Could not compute the request id: {e}")))?;
    Ok(Request {
        request_id,
        sender,
        ingress_expiry,
        nonce,
        content: body,
        sender_pubkey,
        sender_sig,
        sender_delegation,
    })
}

/// Checks the expiry window and the sender's authentication. `target` is the canister the
/// request addresses (for delegation targets).
pub fn validate(request: &Request, now: u64, target: Option<&Principal>) -> Result<(), HttpError> {
    check_expiry(request.ingress_expiry, now)?;
    tabnet_crypto::authenticate(
        &request.sender,
        request.sender_pubkey.as_deref(),
        request.sender_sig.as_deref(),
        request.sender_delegation.as_deref().unwrap_or(&[]),
        &request.request_id,
        now,
        target,
    )
    .map_err(|e| HttpError::bad_request(format!("Failed to authenticate request 0x{}: {e}", hex::encode(request.request_id))))
}

/// `ingress_expiry` must not be in the past, nor further than the TTL (plus drift) ahead.
pub fn check_expiry(ingress_expiry: u64, now: u64) -> Result<(), HttpError> {
    let max = now.saturating_add(MAX_INGRESS_TTL_NANOS + PERMITTED_DRIFT_NANOS);
    if ingress_expiry < now || ingress_expiry > max {
        return Err(HttpError::bad_request(format!(
            "Invalid request expiry: ingress_expiry {ingress_expiry} is not within [{now}, {max}] \
             (now, now + 5 minutes + 60 s drift; times in ns since 1970)"
        )));
    }
    Ok(())
}

/// Lookup of the content's fields by name, with type errors that name the field.
struct Fields<'a> {
    fields: Vec<(&'a str, &'a Value)>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a [(Value, Value)]) -> Result<Self, HttpError> {
        let mut fields = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Value::Text(k) = k else {
                return Err(HttpError::bad_request("Could not parse request content: keys must be text"));
            };
            fields.push((k.as_str(), v));
        }
        let mut names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(HttpError::bad_request(format!("Duplicate field `{}` in request content", pair[0])));
        }
        Ok(Self { fields })
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    fn required(&mut self, name: &str) -> Result<&'a Value, HttpError> {
        self.get(name).ok_or_else(|| HttpError::bad_request(format!("Missing field `{name}` in request content")))
    }

    fn text(&mut self, name: &str) -> Result<String, HttpError> {
        match self.required(name)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(mistyped(name, "text")),
        }
    }

    fn blob(&mut self, name: &str) -> Result<Vec<u8>, HttpError> {
        blob(self.required(name)?.clone(), name)
    }

    fn opt_blob(&mut self, name: &str) -> Result<Option<Vec<u8>>, HttpError> {
        self.get(name).map(|v| blob(v.clone(), name)).transpose()
    }

    fn nat(&mut self, name: &str) -> Result<u64, HttpError> {
        nat(self.required(name)?, name)
    }
}

fn mistyped(name: &str, expected: &str) -> HttpError {
    HttpError::bad_request(format!("Field `{name}` has the wrong type: expected {expected}"))
}

fn blob(value: Value, name: &str) -> Result<Vec<u8>, HttpError> {
    match strip_self_describe(value) {
        Value::Bytes(b) => Ok(b),
        _ => Err(mistyped(name, "a byte string")),
    }
}

fn nat(value: &Value, name: &str) -> Result<u64, HttpError> {
    match value {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| mistyped(name, "a natural number below 2^64")),
        _ => Err(mistyped(name, "a natural number")),
    }
}

fn principal(bytes: Vec<u8>, name: &str) -> Result<Principal, HttpError> {
    Principal::try_from_slice(&bytes)
        .map_err(|_| HttpError::bad_request(format!("Field `{name}` is not a principal (at most 29 bytes)")))
}

fn paths(value: &Value) -> Result<Vec<Vec<Vec<u8>>>, HttpError> {
    let Value::Array(paths) = value else {
        return Err(mistyped("paths", "an array of paths"));
    };
    if paths.len() > MAX_PATHS {
        return Err(HttpError::bad_request(format!(
            "Too many paths: {} (at most {MAX_PATHS})",
            paths.len()
        )));
    }
    paths
        .iter()
        .map(|path| {
            let Value::Array(labels) = path else {
                return Err(mistyped("paths", "an array of arrays of byte strings"));
            };
            if labels.len() > MAX_PATH_LABELS {
                return Err(HttpError::bad_request(format!(
                    "Path too long: {} labels (at most {MAX_PATH_LABELS})",
                    labels.len()
                )));
            }
            labels.iter().map(|l| blob(l.clone(), "paths")).collect()
        })
        .collect()
}

fn delegations(value: Value) -> Result<Vec<SignedDelegation>, HttpError> {
    let Value::Array(items) = strip_self_describe(value) else {
        return Err(mistyped("sender_delegation", "an array of signed delegations"));
    };
    if items.len() > MAX_DELEGATIONS {
        return Err(HttpError::bad_request(format!(
            "Invalid delegation: chain of {} delegations is longer than {MAX_DELEGATIONS}",
            items.len()
        )));
    }
    items
        .into_iter()
        .map(|item| {
            SignedDelegation::from_cbor_value(&item)
                .map_err(|e| HttpError::bad_request(format!("Invalid delegation: {e}")))
        })
        .collect()
}
