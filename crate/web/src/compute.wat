;; `canister_update compute`: reads n (u64 LE) from the argument, runs n xorshift rounds,
;; replies with the accumulated value. The execution benchmark's canister; build.rs turns it
;; into a module, so the browser build carries no WAT parser.
(module
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (func (export "canister_update compute")
    (local $n i64) (local $i i64) (local $x i64) (local $acc i64)
    (call $arg_copy (i32.const 0) (i32.const 0) (i32.const 8))
    (local.set $n (i64.load (i32.const 0)))
    (local.set $x (i64.const 88172645463325252))
    (block $done
      (loop $next
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
        (local.set $acc (i64.add (local.get $acc) (local.get $x)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $next)))
    (i64.store (i32.const 0) (local.get $acc))
    (call $append (i32.const 0) (i32.const 8))
    (call $reply)))
