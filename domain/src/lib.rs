//! tally-domain: the pure billing model (money, usage kinds, SCD2 price versions, cost, invoices).
//!
//! Nothing in this crate performs I/O or is async: every function is a pure
//! computation over values, so the billing rules can be tested exhaustively.

pub mod budget;
pub mod catalog;
pub mod cost;
pub mod error;
pub mod ids;
pub mod invoice;
pub mod money;
pub mod pricing;
pub mod price_sync;
pub mod text;
pub mod usage;

pub use budget::{
    input_token_upper_bound, parse_tz, reservation_bound, window, BudgetPeriod, BudgetWindow, Tz,
};
pub use catalog::{Catalog, CatalogModel, CatalogPrice};
pub use cost::{price_usage, Cost, CostLine};
pub use error::DomainError;
pub use ids::new_id;
pub use invoice::{Invoice, InvoiceLine, InvoiceStatus};
pub use money::{round_invoice_total, Money, INVOICE_DECIMAL_PLACES, TOKENS_PER_PRICE_UNIT};
pub use pricing::{PriceBook, PriceHistory, PriceVersion};
pub use usage::{Unit, Usage, UsageKind};
