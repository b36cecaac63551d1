//! The playground's Candid UI: a canister's `.did` parsed and type-checked by `candid_parser`,
//! its methods described to JavaScript as JSON type trees (for the forms), arguments typed in
//! Candid text checked against a method's types and encoded, replies decoded with field names.
//!
//! The type tree of a type (`ty` below) is a JSON object with a `kind`:
//! `null`, `bool`, `nat`, `int`, `nat8`…`nat64`, `int8`…`int64`, `float32`, `float64`, `text`,
//! `principal`, `reserved`, `empty`; `blob` (a `vec nat8`); `opt` and `vec` with `of`;
//! `record` and `variant` with `fields`: `[{ name, label, ty }]` (`name` to show, `label` as
//! Candid text writes it, a number for tuple fields); `rec` (a recursive type met again, with
//! `name`) and `other` (a func or service reference) — the form asks for Candid text for those.
//! Every node has `text`: the type as Candid writes it.

use std::collections::BTreeSet;

use candid::types::{FuncMode, Function, Label, Type, TypeInner};
use candid::{IDLArgs, TypeEnv};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

/// A parsed and checked `.did`: its type definitions and its service (with init args, if a
/// class).
struct Did {
    env: TypeEnv,
    init: Vec<Type>,
    methods: Vec<(String, Type)>,
}

fn load(did: &str) -> Result<Did, String> {
    // Parsed and checked without candid_parser's pretty error printer (codespan), which the
    // tab's wasm would otherwise carry.
    let prog = did.parse::<candid_parser::IDLProg>().map_err(|e| format!("the .did does not parse: {e}"))?;
    let mut env = TypeEnv::new();
    let actor = candid_parser::check_prog(&mut env, &prog).map_err(|e| format!("the .did does not parse: {e}"))?;
    let actor = actor.ok_or("the .did has no service")?;
    let actor = env.trace_type(&actor).map_err(|e| e.to_string())?;
    let (init, service) = match actor.as_ref() {
        TypeInner::Class(init, service) => (init.clone(), service.clone()),
        _ => (Vec::new(), actor.clone()),
    };
    let methods = env.as_service(&service).map_err(|e| e.to_string())?.to_vec();
    Ok(Did { env, init, methods })
}

impl Did {
    fn method(&self, name: &str) -> Result<&Function, String> {
        let (_, ty) = self.methods.iter().find(|(m, _)| m == name).ok_or_else(|| format!("the service has no method {name}"))?;
        self.env.as_func(ty).map_err(|e| e.to_string())
    }
}

fn mode(func: &Function) -> &'static str {
    match func.modes.first() {
        Some(FuncMode::Query) => "query",
        Some(FuncMode::CompositeQuery) => "composite_query",
        Some(FuncMode::Oneway) => "oneway",
        None => "update",
    }
}

/// How Candid text writes a field's label: an identifier, a quoted name, or a number.
fn label_text(label: &Label) -> String {
    match label {
        Label::Named(name) if is_plain_id(name) => name.clone(),
        Label::Named(name) => format!("{name:?}"),
        Label::Id(n) | Label::Unnamed(n) => n.to_string(),
    }
}

const KEYWORDS: &[&str] = &[
    "import", "service", "func", "type", "opt", "vec", "record", "variant", "blob", "principal", "oneway", "query",
    "composite_query",
];

fn is_plain_id(id: &str) -> bool {
    candid::pretty::candid::is_valid_as_id(id) && !KEYWORDS.contains(&id)
}

/// The JSON type tree of `ty`; `open` holds the named types being expanded (a recursive type
/// met again becomes `rec`).
fn tree(env: &TypeEnv, ty: &Type, open: &mut BTreeSet<String>) -> Value {
    let text = ty.to_string();
    let node = |kind: &str| json!({ "kind": kind, "text": text });
    match ty.as_ref() {
        TypeInner::Var(name) => {
            if open.contains(name) {
                return json!({ "kind": "rec", "name": name, "text": text });
            }
            let Ok(inner) = env.find_type(name) else { return node("other") };
            open.insert(name.clone());
            let mut value = tree(env, inner, open);
            open.remove(name);
            value["text"] = Value::String(text);
            value["name"] = Value::String(name.clone());
            value
        }
        TypeInner::Null => node("null"),
        TypeInner::Bool => node("bool"),
        TypeInner::Nat => node("nat"),
        TypeInner::Int => node("int"),
        TypeInner::Nat8 => node("nat8"),
        TypeInner::Nat16 => node("nat16"),
        TypeInner::Nat32 => node("nat32"),
        TypeInner::Nat64 => node("nat64"),
        TypeInner::Int8 => node("int8"),
        TypeInner::Int16 => node("int16"),
        TypeInner::Int32 => node("int32"),
        TypeInner::Int64 => node("int64"),
        TypeInner::Float32 => node("float32"),
        TypeInner::Float64 => node("float64"),
        TypeInner::Text => node("text"),
        TypeInner::Principal => node("principal"),
        TypeInner::Reserved => node("reserved"),
        TypeInner::Empty => node("empty"),
        TypeInner::Opt(of) => json!({ "kind": "opt", "text": text, "of": tree(env, of, open) }),
        TypeInner::Vec(of) => {
            if matches!(env.trace_type(of).as_deref(), Ok(TypeInner::Nat8)) {
                node("blob")
            } else {
                json!({ "kind": "vec", "text": text, "of": tree(env, of, open) })
            }
        }
        TypeInner::Record(fields) | TypeInner::Variant(fields) => {
            let kind = if matches!(ty.as_ref(), TypeInner::Record(_)) { "record" } else { "variant" };
            let fields: Vec<Value> = fields
                .iter()
                .map(|f| {
                    let name = match f.id.as_ref() {
                        Label::Named(n) => n.clone(),
                        other => other.get_id().to_string(),
                    };
                    json!({ "name": name, "label": label_text(&f.id), "ty": tree(env, &f.ty, open) })
                })
                .collect();
            json!({ "kind": kind, "text": text, "fields": fields })
        }
        _ => node("other"),
    }
}

fn trees(env: &TypeEnv, types: &[Type]) -> Vec<Value> {
    types.iter().map(|t| tree(env, t, &mut BTreeSet::new())).collect()
}

/// The service of `did` as JSON: `{ init: [ty], methods: [{ name, mode, args: [ty], results:
/// [ty] }] }`, `mode` one of "query", "update", "composite_query", "oneway".
pub fn describe(did: &str) -> Result<String, String> {
    let did = load(did)?;
    let mut methods = Vec::new();
    for (name, _) in &did.methods {
        let func = did.method(name)?;
        methods.push(json!({
            "name": name,
            "mode": mode(func),
            "args": trees(&did.env, &func.args),
            "results": trees(&did.env, &func.rets),
        }));
    }
    Ok(json!({ "init": trees(&did.env, &did.init), "methods": methods }).to_string())
}

/// Candid text `text` checked against `types` and encoded; omitted trailing `opt`/`null`
/// arguments are filled in.
fn encode_typed(env: &TypeEnv, types: &[Type], text: &str) -> Result<Vec<u8>, String> {
    let args = candid_parser::parse_idl_args(text).map_err(|e| format!("not Candid text: {e}"))?;
    if args.args.len() > types.len() {
        return Err(format!("{} argument(s) given, the method takes {}", args.args.len(), types.len()));
    }
    let args = args.annotate_types(true, env, types).map_err(|e| format!("the arguments do not fit the types: {e}"))?;
    args.to_bytes_with_types(env, types).map_err(|e| format!("the arguments do not fit the types: {e}"))
}

/// The arguments of `method` in Candid text, encoded after a type check against `did`.
pub fn encode(did: &str, method: &str, text: &str) -> Result<Vec<u8>, String> {
    let did = load(did)?;
    let func = did.method(method)?;
    encode_typed(&did.env, &func.args, text)
}

/// The init argument (the service's class arguments) in Candid text, encoded. Without a
/// `.did` (empty text) the Candid text is encoded as it is.
pub fn encode_init_arg(did: &str, text: &str) -> Result<Vec<u8>, String> {
    if did.trim().is_empty() {
        let args = candid_parser::parse_idl_args(text).map_err(|e| format!("not Candid text: {e}"))?;
        return args.to_bytes().map_err(|e| e.to_string());
    }
    let did = load(did)?;
    encode_typed(&did.env, &did.init, text)
}

/// A reply of `method` as Candid text, with the field names of `did` (or untyped, with field
/// hashes, if `did` is empty).
pub fn decode(did: &str, method: &str, bytes: &[u8]) -> Result<String, String> {
    let config = tabnet_types::candid_untyped_decoder_config();
    if did.trim().is_empty() {
        let args = IDLArgs::from_bytes_with_config(bytes, &config).map_err(|e| format!("not Candid: {e}"))?;
        return Ok(args.to_string());
    }
    let did = load(did)?;
    let func = did.method(method)?;
    let args = IDLArgs::from_bytes_with_types_with_config(bytes, &did.env, &func.rets, &config)
        .map_err(|e| format!("the reply does not fit the method's result types: {e}"))?;
    Ok(args.to_string())
}

#[wasm_bindgen]
pub fn describe_service(did: &str) -> Result<String, JsValue> {
    describe(did).map_err(|e| JsValue::from_str(&e))
}

#[wasm_bindgen]
pub fn encode_args(did: &str, method: &str, candid_text: &str) -> Result<Vec<u8>, JsValue> {
    encode(did, method, candid_text).map_err(|e| JsValue::from_str(&e))
}

#[wasm_bindgen]
pub fn encode_init(did: &str, candid_text: &str) -> Result<Vec<u8>, JsValue> {
    encode_init_arg(did, candid_text).map_err(|e| JsValue::from_str(&e))
}

#[wasm_bindgen]
pub fn decode_reply(did: &str, method: &str, bytes: &[u8]) -> Result<String, JsValue> {
    decode(did, method, bytes).map_err(|e| JsValue::from_str(&e))
}

/// The IC HTTP interface's `/api/v2/status` answer (CBOR) as lines of `field: value`.
#[wasm_bindgen]
pub fn describe_status(cbor: &[u8]) -> String {
    match ciborium::from_reader::<ciborium::Value, _>(cbor) {
        Ok(value) => {
            let value = match value {
                ciborium::Value::Tag(_, inner) => *inner,
                v => v,
            };
            let fields = value.as_map().cloned().unwrap_or_default();
            fields
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        ciborium::Value::Bytes(b) => format!("{} bytes", b.len()),
                        ciborium::Value::Text(t) => t.clone(),
                        ciborium::Value::Integer(i) => i128::from(*i).to_string(),
                        other => format!("{other:?}"),
                    };
                    format!("{}: {v}", k.as_text().unwrap_or("?"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("not CBOR: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::{Decode, Encode, Principal};

    const DID: &str = r#"
        type Tree = variant { leaf : int; node : record { left : Tree; right : Tree } };
        type Profile = record { name : text; age : opt nat8; "type" : bool; tags : vec text };
        service : (opt nat64) -> {
          greet : (text) -> (text) query;
          inc : () -> (nat);
          set : (Profile, principal, blob) -> (record { nat64; text });
          walk : (Tree) -> (Tree) composite_query;
          ping : () -> () oneway;
        }
    "#;

    fn methods() -> Value {
        serde_json::from_str::<Value>(&describe(DID).unwrap()).unwrap()
    }

    fn method(name: &str) -> Value {
        methods()["methods"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone()
    }

    #[test]
    fn candid_ui_describes_modes_and_init() {
        assert_eq!(method("greet")["mode"], "query");
        assert_eq!(method("inc")["mode"], "update");
        assert_eq!(method("walk")["mode"], "composite_query");
        assert_eq!(method("ping")["mode"], "oneway");
        let all = methods();
        assert_eq!(all["init"][0]["kind"], "opt");
        assert_eq!(all["init"][0]["of"]["kind"], "nat64");
        assert_eq!(all["methods"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn candid_ui_describes_nested_types() {
        let set = method("set");
        let profile = &set["args"][0];
        assert_eq!(profile["kind"], "record");
        assert_eq!(profile["name"], "Profile");
        let fields = profile["fields"].as_array().unwrap();
        let field = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap().clone();
        assert_eq!(field("age")["ty"]["kind"], "opt");
        assert_eq!(field("age")["ty"]["of"]["kind"], "nat8");
        assert_eq!(field("tags")["ty"]["kind"], "vec");
        assert_eq!(field("tags")["ty"]["of"]["kind"], "text");
        // A keyword as a field name is quoted in Candid text.
        assert_eq!(field("type")["label"], "\"type\"");
        assert_eq!(field("name")["label"], "name");
        assert_eq!(set["args"][1]["kind"], "principal");
        assert_eq!(set["args"][2]["kind"], "blob");
        // A tuple record: numbered fields.
        let tuple = &set["results"][0];
        assert_eq!(tuple["kind"], "record");
        assert_eq!(tuple["fields"][0]["label"], "0");
        assert_eq!(tuple["fields"][1]["ty"]["kind"], "text");
    }

    #[test]
    fn candid_ui_recursive_types_end_in_rec() {
        let walk = method("walk");
        let tree = &walk["args"][0];
        assert_eq!(tree["kind"], "variant");
        let node = &tree["fields"][1]["ty"];
        assert_eq!(node["kind"], "record");
        assert_eq!(node["fields"][0]["ty"]["kind"], "rec");
        assert_eq!(node["fields"][0]["ty"]["name"], "Tree");
    }

    #[test]
    fn candid_ui_encodes_checked_arguments() {
        let bytes = encode(DID, "greet", r#"("world")"#).unwrap();
        assert_eq!(Decode!(&bytes, String).unwrap(), "world");
        // Numbers take the method's types without annotations.
        let bytes = encode(
            DID,
            "set",
            r#"(record { name = "a"; age = opt 7; "type" = true; tags = vec { "x" } }, principal "aaaaa-aa", blob "\01\02")"#,
        )
        .unwrap();
        let text = IDLArgs::from_bytes(&bytes).unwrap().to_string();
        assert!(text.contains("opt (7 : nat8)"), "{text}");
        assert!(text.contains("principal \"aaaaa-aa\""), "{text}");
        // Wrong types and wrong counts are refused.
        assert!(encode(DID, "greet", "(42)").unwrap_err().contains("do not fit"));
        assert!(encode(DID, "greet", r#"("a", "b")"#).unwrap_err().contains("2 argument(s) given"));
        assert!(encode(DID, "nope", "()").unwrap_err().contains("no method nope"));
        assert!(encode(DID, "greet", "(\"unterminated").unwrap_err().contains("not Candid text"));
    }

    #[test]
    fn candid_ui_encodes_init_args_with_omitted_opts() {
        let bytes = encode_init_arg(DID, "()").unwrap();
        assert_eq!(Decode!(&bytes, Option<u64>).unwrap(), None);
        let bytes = encode_init_arg(DID, "(opt 5)").unwrap();
        assert_eq!(Decode!(&bytes, Option<u64>).unwrap(), Some(5));
        let bytes = encode_init_arg("", "(42 : nat)").unwrap();
        assert_eq!(Decode!(&bytes, candid::Nat).unwrap(), candid::Nat::from(42u32));
    }

    #[test]
    fn candid_ui_decodes_replies_with_field_names() {
        let bytes = Encode!(&(7u64, "seven".to_string())).unwrap();
        assert_eq!(decode(DID, "set", &bytes).unwrap(), "(record { 7 : nat64; \"seven\" })");
        let bytes = Encode!(&candid::Nat::from(3u32)).unwrap();
        assert_eq!(decode(DID, "inc", &bytes).unwrap(), "(3 : nat)");
        assert_eq!(decode("", "inc", &bytes).unwrap(), "(3 : nat)");
        let bytes = Encode!(&Principal::anonymous()).unwrap();
        assert!(decode(DID, "greet", &bytes).unwrap_err().contains("does not fit"));
    }

    #[test]
    fn candid_ui_refuses_a_broken_did() {
        assert!(describe("service : { f : (nope) -> () }").unwrap_err().contains("does not parse"));
        assert!(describe("type T = nat;").unwrap_err().contains("no service"));
    }
}
