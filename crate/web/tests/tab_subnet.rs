//! The node core driven in the page, as the app drives it: a tab subnet of one node (Web Locks,
//! IndexedDB and the page's clock; no peers needed) finalizes and certifies heights and answers
//! the IC HTTP interface through `TabSubnet::http`.
#![cfg(target_arch = "wasm32")]

use tabnet_web::rtc::sleep;
use tabnet_web::tab_subnet::TabSubnet;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn status(subnet: &TabSubnet) -> serde_json::Value {
    serde_json::from_str(&subnet.status().as_string().expect("status is JSON text")).expect("status JSON")
}

/// Drives `subnet` as the page's loop does until its status `field` reaches `at_least`.
async fn run_until(subnet: &TabSubnet, field: &str, at_least: u64) {
    let mut turns = 0;
    while status(subnet)[field].as_u64().unwrap_or(0) < at_least {
        let wait = subnet.step().await.expect("the node runs");
        sleep(wait.clamp(1.0, 50.0) as i32).await;
        turns += 1;
        assert!(turns < 5_000, "{field} not {at_least} after {turns} turns: {:?}", status(subnet));
    }
}

#[wasm_bindgen_test]
async fn a_one_node_tab_subnet_finalizes_certifies_and_answers_http() {
    let name = format!("wbt{}", js_sys::Date::now() as u64);
    let subnet = TabSubnet::join(name, 1, None, None).await.expect("joins");
    assert_eq!(status(&subnet)["index"], 0);
    run_until(&subnet, "certified", 5).await;
    let s = status(&subnet);
    assert!(s["finalized"].as_u64().unwrap() >= 5);
    assert!(s["storage"]["commits"].as_u64().unwrap() > 0, "what it keeps went to IndexedDB: {s:?}");
    let response = subnet.http("GET".into(), "/api/v2/status".into(), None, Vec::new()).await.expect("answers");
    let field = |k: &str| js_sys::Reflect::get(&response, &k.into()).unwrap();
    assert_eq!(field("status").as_f64(), Some(200.0));
    let body = js_sys::Uint8Array::new(&field("body")).to_vec();
    let value: ciborium::Value = ciborium::from_reader(body.as_slice()).expect("CBOR status");
    assert!(format!("{value:?}").contains("root_key"));
    // A request that is not of the interface is refused, and the node goes on.
    let response = subnet.http("POST".into(), "/api/v2/canister/aaaaa-aa/call".into(), Some("text/plain".into()), vec![1]).await.unwrap();
    assert_eq!(js_sys::Reflect::get(&response, &"status".into()).unwrap().as_f64(), Some(400.0));
    subnet.step().await.expect("still running");
}

#[wasm_bindgen_test]
async fn a_tab_that_leaves_lets_go_of_its_slot_and_joins_again_where_it_was() {
    let name = format!("wbt-leave{}", js_sys::Date::now() as u64);
    let subnet = TabSubnet::join(name.clone(), 1, None, None).await.expect("joins");
    run_until(&subnet, "finalized", 3).await;
    // While it is a member, its slot is taken.
    let refused = TabSubnet::join(name.clone(), 1, None, None).await.err().and_then(|e| e.as_string()).unwrap_or_default();
    assert!(refused.contains("has all its 1 members"), "{refused}");
    subnet.leave().await;
    let before = status(&subnet)["finalized"].as_u64().unwrap();
    assert_eq!(subnet.step().await.err().and_then(|e| e.as_string()).as_deref(), Some("this tab left the subnet"));
    let response = subnet.http("GET".into(), "/api/v2/status".into(), None, Vec::new()).await.unwrap();
    assert_eq!(js_sys::Reflect::get(&response, &"status".into()).unwrap().as_f64(), Some(503.0));
    // Joined again (this page or another), it is the same member and goes on from what it kept.
    let again = TabSubnet::join(name, 1, None, None).await.expect("joins again");
    let resumed = status(&again)["finalized"].as_u64().unwrap();
    assert!(resumed > 0 && resumed <= before, "resumed at {resumed}, had finalized {before}");
    run_until(&again, "finalized", before + 2).await;
}
