// motoko_caller: calls another canister that has the counter interface (the Rust `counter` or
// `motoko_counter`), and a trapping method, reporting the reject code it got.
import Error "mo:core/Error";
import Principal "mo:core/Principal";

persistent actor Caller {
  type Counter = actor {
    inc : () -> async Nat64;
    get : query () -> async Nat64;
  };

  type Trapper = actor {
    boom : () -> async ();
  };

  public func call_inc(callee : Principal) : async Nat64 {
    let counter : Counter = actor (Principal.toText(callee));
    await counter.inc()
  };

  public func call_get(callee : Principal) : async Nat64 {
    let counter : Counter = actor (Principal.toText(callee));
    await counter.get()
  };

  // Calls `boom` on the callee; returns the reject code and message it caught.
  public func call_trap(callee : Principal) : async Text {
    let trapper : Trapper = actor (Principal.toText(callee));
    try {
      await trapper.boom();
      "replied"
    } catch (e) {
      debug_show (Error.code(e)) # ": " # Error.message(e)
    }
  };
};
