//! The services the broker carries, one module each. Every one implements
//! [`Service`](super::service::Service) and is registered in `dispatch`.

pub mod messaging;
pub mod rpc;
pub mod share;
pub mod space;
