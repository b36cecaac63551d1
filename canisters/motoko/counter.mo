// motoko_counter: the Motoko twin of the Rust `counter` (same `inc`/`get` interface).
// `count` is persistent (kept across upgrades); `calls` is transient (reset by an upgrade).
import Principal "mo:core/Principal";

persistent actor Counter {
  var count : Nat64 = 0;
  transient var calls : Nat64 = 0;

  public func inc() : async Nat64 {
    count += 1;
    calls += 1;
    count
  };

  public query func get() : async Nat64 {
    count
  };

  // Update calls since the last install or upgrade.
  public query func transient_calls() : async Nat64 {
    calls
  };

  public query (msg) func whoami() : async Principal {
    msg.caller
  };

  public query func self_id() : async Text {
    Principal.toText(Principal.fromActor(Counter))
  };
};
