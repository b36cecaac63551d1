//! One replica of tabnet, sans-IO: the IC HTTP interface's request handling (CBOR envelopes,
//! authentication, effective canister ids), the ingress pool and history, rounds of execution,
//! the certified state tree, read_state, signed query responses, and persistence through a
//! [`Store`]. Time and randomness are inputs; the native and browser edges drive it.

mod canister_store;
pub mod envelope;
pub mod error;
pub mod ingress;
pub mod read_state;
pub mod replica;
pub mod state_tree;
pub mod store;

pub use error::{HttpError, SubmitError};
pub use ingress::{IngressState, IngressStatus, RequestId};
pub use read_state::ReadStateScope;
pub use envelope::RequestType;
pub use replica::{
    authenticate, authenticate_call, rejection_body, replied_body, Authenticated, AuthenticatedCall, Member, QuerySigner, QueryViews, Replica,
    IMPL_VERSION,
};
pub use store::{BatchStore, MemoryStore, Store, WriteBatch};

#[cfg(test)]
mod tests;
