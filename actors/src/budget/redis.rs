//! The cluster budget ledger: windows and holds in Redis, shared by every node.
//!
//! Each operation is one Lua script (`lua/*.lua`, each prefixed with `lua/common.lua`),
//! so it runs atomically; scripts are sent with EVALSHA and loaded on NOSCRIPT
//! (`redis::Script`). The key layout is described at the top of `lua/common.lua`.
//!
//! Money in Redis is an integer count of 1e-10 USD ("units"): Lua numbers are doubles,
//! exact only up to 2^53, so a window can count at most [`MAX_UNITS`] units
//! (about $900,719.93); budgets with a larger max are refused with
//! [`BudgetError::Invalid`]. Reservations, settles and loaded spend are rounded UP to
//! whole units and budget maxima DOWN, so Redis never undercounts spend nor admits
//! more than the max; the cost is at most 1e-10 USD per operation.
//!
//! Lease deadlines use the Redis server's clock (`TIME`), so nodes with skewed clocks
//! agree on when a hold expires. Expired holds of a window are swept by every reserve
//! and state query touching it.
//!
//! When a window has no committed spend (first touch, invalidation, or Redis lost its
//! data) the script answers "load"; the node loads it through the [`SpendLoader`] and
//! seeds it with set-if-absent, then runs the script again. A Redis that comes back
//! empty is rebuilt this way, window by window, from the database. Holds live only in
//! Redis: after such a loss, requests in flight are no longer reserved, and their settles
//! add nothing (the database already has them when the window reloads).
//!
//! Redis unreachable, slow or erroring fails closed: [`BudgetError::Unavailable`], within
//! [`RedisLedgerConfig::op_timeout`].
//!
//! All keys of one operation are built inside the script from a prefix, so the ledger
//! needs a single Redis (or a Redis Cluster with a `{hash tag}` in the prefix, putting
//! every budget key in one slot).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncConnectionConfig, Script, ScriptInvocation, Value};
use deadpool_redis::{Manager, Pool, Runtime};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::load::SpendLoads;
use super::{check_not_negative, exceeded, merge_limits, BudgetError, BudgetLedger, BudgetLimit, SpendLoader, WindowState, MAX_LOAD_ROUNDS};

/// Units per US dollar: Redis counts money in 1e-10 USD.
pub const UNITS_PER_USD: i64 = 10_000_000_000;

/// Most units a Redis window can count exactly: 2^53 - 1 (Lua numbers are doubles),
/// about $900,719.93.
pub const MAX_UNITS: i64 = (1 << 53) - 1;

/// Default prefix of every key.
pub const DEFAULT_KEY_PREFIX: &str = "tally:budget:";

/// Default number of pooled connections per node.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Default bound on opening a connection: a dead Redis fails requests this fast.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Default bound on one whole operation (pool wait, connect, every script run, but not
/// the spend loads between runs).
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(1);

/// Default time a settled or released hold is remembered (a repeat is a no-op).
pub const DEFAULT_FINISHED_HOLD_RETENTION: Duration = Duration::from_secs(10 * 60);

/// Default time an expired hold is remembered (a late settle still counts, once).
pub const DEFAULT_EXPIRED_HOLD_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Default time a window's keys live past its end, so holds made in it can settle into it.
pub const DEFAULT_WINDOW_GRACE: Duration = Duration::from_secs(6 * 60 * 60);

/// How long a budget's generation counter lives after its last invalidation.
pub const GENERATION_TTL: Duration = Duration::from_secs(40 * 24 * 60 * 60);

/// Longest lease accepted, in milliseconds (kept far below 2^53 for the Lua arithmetic).
const MAX_LEASE_MS: u64 = 1 << 40;

/// Settings of a [`RedisLedger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLedgerConfig {
    /// Prefix of every key (a unique one per test run keeps tests apart).
    pub key_prefix: String,
    /// Pooled connections per node.
    pub pool_size: usize,
    /// Bound on opening a connection.
    pub connect_timeout: Duration,
    /// Bound on one script run, including the wait for a pooled connection.
    pub op_timeout: Duration,
    /// How long a settled or released hold is remembered.
    pub finished_hold_retention: Duration,
    /// How long an expired hold is remembered.
    pub expired_hold_retention: Duration,
    /// How long a window's keys live past its end.
    pub window_grace: Duration,
}

impl Default for RedisLedgerConfig {
    fn default() -> Self {
        RedisLedgerConfig {
            key_prefix: DEFAULT_KEY_PREFIX.to_string(),
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            op_timeout: DEFAULT_OP_TIMEOUT,
            finished_hold_retention: DEFAULT_FINISHED_HOLD_RETENTION,
            expired_hold_retention: DEFAULT_EXPIRED_HOLD_RETENTION,
            window_grace: DEFAULT_WINDOW_GRACE,
        }
    }
}

/// The Lua scripts, compiled once (the SHA1 is computed at construction).
struct Scripts {
    reserve: Script,
    settle: Script,
    release: Script,
    renew: Script,
    state: Script,
    seed: Script,
    invalidate: Script,
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(include_str!("lua/common.lua"), "\n", include_str!($file)))
    };
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            reserve: script!("lua/reserve.lua"),
            settle: script!("lua/settle.lua"),
            release: script!("lua/release.lua"),
            renew: script!("lua/renew.lua"),
            state: script!("lua/state.lua"),
            seed: script!("lua/seed.lua"),
            invalidate: script!("lua/invalidate.lua"),
        }
    }
}

/// The cluster ledger: a connection pool, the scripts and the spend loader.
#[derive(Clone)]
pub struct RedisLedger {
    pool: Pool,
    config: Arc<RedisLedgerConfig>,
    scripts: Arc<Scripts>,
    loads: Arc<SpendLoads>,
}

/// What the reserve script answered.
enum ReserveReply {
    Admitted,
    Load(Vec<(usize, u64)>),
    Exceeded { index: usize, spent: i64, reserved: i64 },
}

impl RedisLedger {
    /// A ledger on the Redis at `url` with default settings. Connects lazily: a Redis
    /// that is down makes operations fail with [`BudgetError::Unavailable`], not this.
    pub fn connect(url: &str, loader: SpendLoader) -> Result<Self, BudgetError> {
        Self::connect_with(url, loader, RedisLedgerConfig::default())
    }

    /// A ledger on the Redis at `url` with `config`.
    pub fn connect_with(url: &str, loader: SpendLoader, config: RedisLedgerConfig) -> Result<Self, BudgetError> {
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.op_timeout));
        let manager = Manager::new_with_config(url, connection)
            .map_err(|e| BudgetError::Invalid(format!("Redis URL for the budget ledger: {e}")))?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.op_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| BudgetError::Invalid(format!("budget ledger pool: {e}")))?;
        Ok(RedisLedger { pool, config: Arc::new(config), scripts: Arc::new(Scripts::new()), loads: SpendLoads::new(loader) })
    }

    /// Check that Redis answers (for start-up and readiness probes).
    pub async fn ping(&self) -> Result<(), BudgetError> {
        let op = async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(unavailable)
        };
        self.bounded(op).await.map(|_| ())
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisLedgerConfig {
        &self.config
    }

    async fn bounded<T>(&self, op: impl std::future::Future<Output = Result<T, BudgetError>>) -> Result<T, BudgetError> {
        match tokio::time::timeout(self.config.op_timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(BudgetError::Unavailable(format!("Redis gave no answer within {:?}", self.config.op_timeout))),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, BudgetError> {
        let op = async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            invocation.invoke_async::<T>(&mut conn).await.map_err(unavailable)
        };
        // Not logged here: the caller handles (and logs) the failure once.
        self.bounded(op).await
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(MAX_LEASE_MS).clamp(1, MAX_LEASE_MS)
    }

    /// Load the window of `limit` under `generation` and seed it (never overwriting).
    async fn load_and_seed(&self, limit: &BudgetLimit, generation: u64) -> Result<(), BudgetError> {
        let spent = self.loads.load(limit.budget_id, limit.window, generation).await?;
        // Loaded spend too large to count saturates: the window then refuses everything.
        let units = units_ceil(spent).unwrap_or(MAX_UNITS).clamp(-MAX_UNITS, MAX_UNITS);
        let mut inv = self.scripts.seed.prepare_invoke();
        inv.arg(&self.config.key_prefix)
            .arg(limit.budget_id.to_string())
            .arg(limit.window.start.timestamp_millis())
            .arg(limit.window.end.timestamp_millis())
            .arg(units)
            .arg(generation)
            .arg(Self::ms(self.config.window_grace));
        let outcome: String = self.run(&inv).await?;
        tracing::debug!(budget.id = %limit.budget_id, outcome = %outcome, "Budget window seeded.");
        Ok(())
    }

    async fn reserve_once(
        &self,
        hold_id: Uuid,
        limits: &[BudgetLimit],
        maxima: &[i64],
        amount: i64,
        lease: Duration,
    ) -> Result<ReserveReply, BudgetError> {
        let mut inv = self.scripts.reserve.prepare_invoke();
        inv.arg(&self.config.key_prefix)
            .arg(hold_id.to_string())
            .arg(amount)
            .arg(Self::ms(lease))
            .arg(Self::ms(self.config.expired_hold_retention))
            .arg(Self::ms(self.config.window_grace))
            .arg(limits.len());
        for (limit, max) in limits.iter().zip(maxima) {
            inv.arg(limit.budget_id.to_string())
                .arg(limit.window.start.timestamp_millis())
                .arg(limit.window.end.timestamp_millis())
                .arg(*max);
        }
        let reply: Vec<Value> = self.run(&inv).await?;
        let bad = || BudgetError::Unavailable(format!("unexpected reply from the reserve script: {reply:?}"));
        match reply.first().and_then(text).as_deref() {
            Some("ok") | Some("dup") => Ok(ReserveReply::Admitted),
            Some("load") => {
                let mut wanted = Vec::new();
                for pair in reply.get(1..).unwrap_or_default().chunks(2) {
                    let [index, generation] = pair else { return Err(bad()) };
                    let index = integer(index).and_then(|i| usize::try_from(i).ok()).ok_or_else(bad)?;
                    let generation = text(generation).and_then(|g| g.parse::<u64>().ok()).ok_or_else(bad)?;
                    wanted.push((index, generation));
                }
                Ok(ReserveReply::Load(wanted))
            }
            Some("exceeded") => {
                let field = |i: usize| reply.get(i).and_then(integer).ok_or_else(bad);
                let index = usize::try_from(field(1)?).map_err(|_| bad())?;
                Ok(ReserveReply::Exceeded { index, spent: field(2)?, reserved: field(3)? })
            }
            _ => Err(bad()),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BudgetError {
    BudgetError::Unavailable(format!("Redis: {e}"))
}

/// A reply element as text (bulk or simple string).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A reply element as an integer.
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(_) | Value::SimpleString(_) => text(v)?.parse().ok(),
        _ => None,
    }
}

/// `usd` in units, rounded up (`None` when out of `i64`).
pub fn units_ceil(usd: Decimal) -> Option<i64> {
    usd.checked_mul(Decimal::from(UNITS_PER_USD))?.ceil().to_i64()
}

/// `usd` in units, rounded down (`None` when out of `i64`).
pub fn units_floor(usd: Decimal) -> Option<i64> {
    usd.checked_mul(Decimal::from(UNITS_PER_USD))?.floor().to_i64()
}

/// `units` in USD, exact.
pub fn usd_from_units(units: i64) -> Decimal {
    Decimal::new(units, 10).normalize()
}

/// A budget max in units, refusing budgets the Redis ledger cannot count exactly.
fn max_units(limit: &BudgetLimit) -> Result<i64, BudgetError> {
    match units_floor(limit.max) {
        Some(u) if u <= MAX_UNITS => Ok(u.max(-MAX_UNITS)),
        _ => Err(BudgetError::Invalid(format!(
            "budget {} max {} is above the most the Redis ledger counts exactly per window ({} USD)",
            limit.budget_id,
            limit.max,
            usd_from_units(MAX_UNITS)
        ))),
    }
}

#[async_trait]
impl BudgetLedger for RedisLedger {
    async fn reserve(&self, hold_id: Uuid, limits: &[BudgetLimit], amount: Decimal, lease: Duration) -> Result<(), BudgetError> {
        check_not_negative("amount", amount)?;
        if lease.is_zero() {
            return Err(BudgetError::Invalid("lease must be longer than zero".into()));
        }
        let limits = merge_limits(limits);
        let maxima = limits.iter().map(max_units).collect::<Result<Vec<_>, _>>()?;
        // An amount beyond the exact range is larger than every max; capping it keeps the
        // Lua comparison meaningful and the request refused.
        let amount_units = units_ceil(amount).map_or(MAX_UNITS + 1, |u| u.min(MAX_UNITS + 1));
        for _ in 0..MAX_LOAD_ROUNDS {
            match self.reserve_once(hold_id, &limits, &maxima, amount_units, lease).await? {
                ReserveReply::Admitted => return Ok(()),
                ReserveReply::Exceeded { index, spent, reserved } => {
                    let limit = limits.get(index).ok_or_else(|| BudgetError::Unavailable("reserve script named an unknown limit".into()))?;
                    return Err(exceeded(limit, usd_from_units(spent), usd_from_units(reserved)));
                }
                ReserveReply::Load(wanted) => {
                    let loads = wanted.iter().filter_map(|(i, g)| limits.get(*i).map(|l| self.load_and_seed(l, *g)));
                    futures::future::try_join_all(loads).await?;
                }
            }
        }
        Err(BudgetError::Load(format!("budget was invalidated during each of {MAX_LOAD_ROUNDS} loads")))
    }

    async fn settle(&self, hold_id: Uuid, actual: Decimal) -> Result<(), BudgetError> {
        check_not_negative("actual cost", actual)?;
        let units = match units_ceil(actual) {
            Some(u) if u <= MAX_UNITS => u,
            _ => return Err(BudgetError::Invalid(format!("actual cost {actual} is above what the Redis ledger counts exactly"))),
        };
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.arg(&self.config.key_prefix)
            .arg(hold_id.to_string())
            .arg(units)
            .arg(Self::ms(self.config.finished_hold_retention));
        let outcome: String = self.run(&inv).await?;
        if outcome == "unknown" {
            tracing::warn!(budget.hold_id = %hold_id, cost_usd = %actual, "Settle of an unknown budget hold ignored.");
        }
        Ok(())
    }

    async fn release(&self, hold_id: Uuid) -> Result<(), BudgetError> {
        let mut inv = self.scripts.release.prepare_invoke();
        inv.arg(&self.config.key_prefix)
            .arg(hold_id.to_string())
            .arg(Self::ms(self.config.finished_hold_retention));
        let _outcome: String = self.run(&inv).await?;
        Ok(())
    }

    async fn renew(&self, hold_id: Uuid, lease: Duration) -> Result<(), BudgetError> {
        let mut inv = self.scripts.renew.prepare_invoke();
        inv.arg(&self.config.key_prefix)
            .arg(hold_id.to_string())
            .arg(Self::ms(lease))
            .arg(Self::ms(self.config.expired_hold_retention));
        let outcome: String = self.run(&inv).await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            _ => Err(BudgetError::HoldNotActive(hold_id)),
        }
    }

    async fn state(&self, limit: &BudgetLimit) -> Result<WindowState, BudgetError> {
        for _ in 0..MAX_LOAD_ROUNDS {
            let mut inv = self.scripts.state.prepare_invoke();
            inv.arg(&self.config.key_prefix)
                .arg(limit.budget_id.to_string())
                .arg(limit.window.start.timestamp_millis())
                .arg(Self::ms(self.config.expired_hold_retention));
            let reply: Vec<Value> = self.run(&inv).await?;
            let bad = || BudgetError::Unavailable(format!("unexpected reply from the state script: {reply:?}"));
            match reply.first().and_then(text).as_deref() {
                Some("ok") => {
                    let spent = reply.get(1).and_then(integer).ok_or_else(bad)?;
                    let reserved = reply.get(2).and_then(integer).ok_or_else(bad)?;
                    return Ok(WindowState { spent: usd_from_units(spent), reserved: usd_from_units(reserved) });
                }
                Some("load") => {
                    let generation = reply.get(1).and_then(text).and_then(|g| g.parse::<u64>().ok()).ok_or_else(bad)?;
                    self.load_and_seed(limit, generation).await?;
                }
                _ => return Err(bad()),
            }
        }
        Err(BudgetError::Load(format!("budget was invalidated during each of {MAX_LOAD_ROUNDS} loads")))
    }

    async fn invalidate(&self, budget_id: Uuid) -> Result<(), BudgetError> {
        let mut inv = self.scripts.invalidate.prepare_invoke();
        inv.arg(&self.config.key_prefix).arg(budget_id.to_string()).arg(Self::ms(GENERATION_TTL));
        let _outcome: String = self.run(&inv).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn units_round_towards_safety() {
        assert_eq!(units_ceil(dec!(1)), Some(UNITS_PER_USD), "a dollar is 1e10 units");
        assert_eq!(units_ceil(dec!(0.00000000001)), Some(1), "reservations and settles round up");
        assert_eq!(units_floor(dec!(0.00000000019)), Some(1), "maxima round down");
        assert_eq!(units_ceil(dec!(0.0000000001)), Some(1), "exact values are kept");
        assert_eq!(usd_from_units(12_345), dec!(0.0000012345), "units convert back exactly");
        assert_eq!(units_ceil(Decimal::MAX), None, "out of range is reported");
    }

    #[test]
    fn refuses_budgets_beyond_the_exact_range() {
        let window = tally_domain::BudgetWindow { start: chrono::Utc::now(), end: chrono::Utc::now() };
        let ok = BudgetLimit { budget_id: Uuid::nil(), max: dec!(900719.9254740991), window };
        assert_eq!(max_units(&ok), Ok(MAX_UNITS), "the largest exact max is accepted");
        let too_big = BudgetLimit { max: dec!(900719.9254740992), ..ok };
        assert_eq!(max_units(&too_big).map_err(|e| e.code()), Err("budget_invalid"), "one unit more is refused");
    }

    #[test]
    fn scripts_are_assembled_with_the_common_helpers() {
        let scripts = Scripts::new();
        for s in [&scripts.reserve, &scripts.settle, &scripts.release, &scripts.renew, &scripts.state, &scripts.seed, &scripts.invalidate] {
            assert_eq!(s.get_hash().len(), 40, "each script has a SHA1 for EVALSHA");
        }
    }
}
