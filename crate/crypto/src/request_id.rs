//! The representation-independent hash of the IC interface spec.
//!
//! A map is hashed as SHA-256 of the sorted concatenation of `SHA-256(key) ‖ hash(value)` over
//! its fields. Values: blobs as-is, text as UTF-8, naturals as unsigned LEB128 (negative integers
//! as signed LEB128), arrays as the hash of their concatenated element hashes, maps recursively.
//! A request id is this hash of an envelope's `content`.

use crate::sha256;
use ciborium::Value;

/// Domain separator of request signatures: `"\x0Aic-request" ‖ request_id`.
pub const IC_REQUEST: &[u8] = b"\x0Aic-request";
/// Domain separator of delegation signatures: `"\x1Aic-request-auth-delegation" ‖ hash_of_map(delegation)`.
pub const IC_REQUEST_AUTH_DELEGATION: &[u8] = b"\x1Aic-request-auth-delegation";
/// Domain separator of node signatures on query responses.
pub const IC_RESPONSE: &[u8] = b"\x0Bic-response";
/// Domain separator of certificate signatures: `"\x0Dic-state-root" ‖ root_hash`.
pub const IC_STATE_ROOT: &[u8] = b"\x0Dic-state-root";

/// The request id of an envelope's `content` map.
pub fn request_id(content: &Value) -> Result<[u8; 32], String> {
    hash_of_map(content)
}

/// The representation-independent hash of a CBOR map (text keys). A self-describing or other
/// tag around the map is looked through.
pub fn hash_of_map(map: &Value) -> Result<[u8; 32], String> {
    match untag(map) {
        Value::Map(fields) => hash_fields(fields),
        other => Err(format!("expected a map, found {}", kind(other))),
    }
}

fn hash_fields(fields: &[(Value, Value)]) -> Result<[u8; 32], String> {
    let mut pairs: Vec<[u8; 64]> = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        let key = match untag(key) {
            Value::Text(k) => k,
            other => return Err(format!("map keys must be text, found {}", kind(other))),
        };
        let mut pair = [0u8; 64];
        pair[..32].copy_from_slice(&sha256(key.as_bytes()));
        let value_hash = hash_value(value).map_err(|e| format!("field `{key}`: {e}"))?;
        pair[32..].copy_from_slice(&value_hash);
        pairs.push(pair);
    }
    pairs.sort_unstable();
    Ok(sha256(&pairs.concat()))
}

/// The hash of one value.
fn hash_value(value: &Value) -> Result<[u8; 32], String> {
    match untag(value) {
        Value::Bytes(b) => Ok(sha256(b)),
        Value::Text(t) => Ok(sha256(t.as_bytes())),
        Value::Integer(i) => {
            let i = i128::from(*i);
            let mut buf = Vec::with_capacity(19);
            if i >= 0 {
                // CBOR integers are at most 64 bits wide.
                leb128::write::unsigned(&mut buf, i as u64).map_err(|e| e.to_string())?;
            } else {
                let i = i64::try_from(i).map_err(|_| "integer out of range".to_string())?;
                leb128::write::signed(&mut buf, i).map_err(|e| e.to_string())?;
            }
            Ok(sha256(&buf))
        }
        Value::Array(items) => {
            let mut concat = Vec::with_capacity(items.len() * 32);
            for item in items {
                concat.extend_from_slice(&hash_value(item)?);
            }
            Ok(sha256(&concat))
        }
        Value::Map(fields) => hash_fields(fields),
        other => Err(format!("cannot hash a {}", kind(other))),
    }
}

/// Looks through tags (55799 self-describing, or any other): the hash covers the inner value.
fn untag(mut value: &Value) -> &Value {
    while let Value::Tag(_, inner) = value {
        value = inner;
    }
    value
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "integer",
        Value::Bytes(_) => "byte string",
        Value::Float(_) => "float",
        Value::Text(_) => "text",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        Value::Tag(..) => "tag",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        _ => "unsupported CBOR value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn spec_content() -> Vec<(Value, Value)> {
        vec![
            (text("request_type"), text("call")),
            (text("sender"), Value::Bytes(vec![0x04])),
            (
                text("ingress_expiry"),
                Value::Integer(1685570400000000000u64.into()),
            ),
            (
                text("canister_id"),
                Value::Bytes(hex::decode("00000000000004D2").unwrap()),
            ),
            (text("method_name"), text("hello")),
            (text("arg"), Value::Bytes(b"DIDL\x00\xFD*".to_vec())),
        ]
    }

    #[test]
    fn spec_request_id_vector() {
        let id = request_id(&Value::Map(spec_content())).unwrap();
        assert_eq!(
            hex::encode(id),
            "1d1091364d6bb8a6c16b203ee75467d59ead468f523eb058880ae8ec80e2b101"
        );
    }

    #[test]
    fn field_order_and_self_describing_tag_do_not_matter() {
        let mut reversed = spec_content();
        reversed.reverse();
        let tagged = Value::Tag(55799, Box::new(Value::Map(reversed)));
        assert_eq!(
            request_id(&tagged).unwrap(),
            request_id(&Value::Map(spec_content())).unwrap()
        );
    }

    #[test]
    fn changing_a_field_changes_the_id() {
        let mut content = spec_content();
        content[4].1 = text("hellp");
        assert_ne!(
            request_id(&Value::Map(content)).unwrap(),
            request_id(&Value::Map(spec_content())).unwrap()
        );
    }

    #[test]
    fn arrays_and_nested_maps() {
        // read_state paths: array of arrays of blobs.
        let paths = Value::Array(vec![Value::Array(vec![
            Value::Bytes(b"request_status".to_vec()),
            Value::Bytes(vec![1, 2, 3]),
        ])]);
        let inner = [sha256(b"request_status"), sha256(&[1, 2, 3])].concat();
        let expected = sha256(&sha256(&inner));
        assert_eq!(hash_value(&paths).unwrap(), expected);

        let nested = Value::Map(vec![(text("a"), Value::Map(vec![(text("b"), text("c"))]))]);
        let inner_map = sha256(&[sha256(b"b"), sha256(b"c")].concat());
        let expected = sha256(&[sha256(b"a"), inner_map].concat());
        assert_eq!(hash_of_map(&nested).unwrap(), expected);
    }

    #[test]
    fn leb128_of_naturals() {
        // 624485 = 0xE5 0x8E 0x26 in unsigned LEB128.
        assert_eq!(
            hash_value(&Value::Integer(624485u32.into())).unwrap(),
            sha256(&[0xE5, 0x8E, 0x26])
        );
        assert_eq!(
            hash_value(&Value::Integer(0u8.into())).unwrap(),
            sha256(&[0])
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(hash_of_map(&text("not a map")).is_err());
        assert!(hash_of_map(&Value::Map(vec![(Value::Bytes(vec![1]), text("x"))])).is_err());
        assert!(hash_of_map(&Value::Map(vec![(text("f"), Value::Float(1.5))])).is_err());
        assert!(hash_of_map(&Value::Map(vec![(text("n"), Value::Null)])).is_err());
    }
}
