//! Non-replicated queries and composite queries, on the live state or on the state published
//! for queries after a round ([`QueryState`]); the call graph is in `crate::query_state`.
//! Nothing here changes replicated state.

use super::ExecutionEnvironment;
use crate::hypervisor::WasmResult;
use crate::query_state::{self, QueryState};
use std::collections::BTreeSet;
use tabnet_types::{CanisterId, Principal, UserError};

impl ExecutionEnvironment {
    /// Answers a query (`canister_query` or `canister_composite_query`, or the management
    /// canister's `canister_status` / `fetch_canister_logs`) at time `time`, without changing
    /// replicated state.
    pub fn query(
        &mut self,
        time: u64,
        sender: Principal,
        canister_id: CanisterId,
        method: &str,
        arg: Vec<u8>,
        data_certificate: Option<Vec<u8>>,
    ) -> Result<WasmResult, UserError> {
        query_state::answer_live(
            self,
            time,
            sender,
            canister_id,
            method,
            arg,
            data_certificate,
        )
    }

    /// The state queries run on after a round at `time`, to run them on other threads while
    /// rounds go on. Only canisters in `changed` since `previous` (all of them without one) are
    /// copied; the others are shared with `previous`.
    pub fn query_state(
        &self,
        previous: Option<&QueryState>,
        changed: &BTreeSet<CanisterId>,
        time: u64,
    ) -> QueryState {
        query_state::publish(self, previous, changed, time)
    }
}
