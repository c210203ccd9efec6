//! tally-actors: the actor system. ThreadActor, BillingActor, PersisterActor, supervision and wiring.
//!
//! Every actor owns its state and talks through typed messages (one struct per
//! intent). Blocking storage work runs on the blocking pool, never on an
//! actor's event loop.

pub mod alerts;
pub mod billing;
pub mod budget;
pub mod error;
pub mod feed;
pub mod kafka;
pub mod notify;
pub mod persister;
pub mod registry;
pub mod scheduler;
pub mod supervise;
pub mod system;
pub mod thread;
pub mod usage;

pub use billing::{
    AddPriceVersion, BillBatch, BillUsage, BilledUsage, BillingActor, GetPriceBook, PriceBookHandle, UsageEvent,
};
pub use error::ActorError;
pub use feed::{PricedBatch, UsageFeed, UsagePriced};
pub use persister::{FlushBatch, InjectPanic, Persist, PersisterActor, PersisterConfig};
pub use registry::{OpenThread, ThreadRegistry};
pub use system::{ActorSystem, ActorSystemConfig};
pub use thread::{ChatEvent, SendMessage, ThreadActor, ThreadDeps, TurnOutcome, TurnStarted, TurnTracker};
pub use tally_observability::TraceContext;
pub use usage::usage_from_tokens;
