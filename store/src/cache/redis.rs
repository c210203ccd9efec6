//! The Redis cache: the synchronous `redis` client, a few reused connections, a deadline per call.
//!
//! Each call gets `op_timeout` in all: connecting (TCP and handshake) and every socket
//! read and write are bounded by what is left of it. A pooled connection that turns out
//! dead (Redis restarted) is dropped with its idle siblings and the call retries once on a
//! fresh connection within the same deadline. Connection failures and timeouts degrade the
//! cache (see `health`); Redis error replies do not. Reconnection is just the next connect.
//!
//! Fills are guarded across nodes by a generation counter next to each key
//! (`<key>#gen`): an invalidation `INCR`s it before deleting the key, a read takes the
//! value and the generation in one `MGET`, and a fill writes (in one server-side script)
//! only if the generation is still the one read before loading. So a node that loaded
//! from the database before another node's write committed can never put that stale copy
//! back after the other node's invalidation.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ::redis::{Client, Connection, ErrorKind, RedisError, RedisResult, ServerErrorKind};

use super::config::CacheConfig;
use super::error::CacheError;
use super::fill::FillEpochs;
use super::health::{Gate, Health};

/// Idle connections kept for reuse; busier moments open more and close the extra.
pub const MAX_IDLE_CONNECTIONS: usize = 16;
/// Keys per `DEL` when replaying missed invalidations.
pub const DEL_CHUNK: usize = 512;
/// Smallest socket timeout set (zero would mean "no timeout" to some platforms' APIs).
const MIN_SOCKET_TIMEOUT: Duration = Duration::from_millis(1);

struct Inner {
    client: Client,
    config: CacheConfig,
    fills: FillEpochs,
    health: Health,
    idle: Mutex<Vec<Connection>>,
    addr: String,
}

/// Cache in a Redis shared by all nodes. Cheap to clone (clones share connections and health).
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisCache {
    // The URL may hold a password: show only where Redis is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("addr", &self.inner.addr)
            .field("healthy", &self.inner.health.is_healthy())
            .finish_non_exhaustive()
    }
}

/// Whether Redis answered (with an error) and the connection is still good.
fn is_reply_error(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::ResponseError
                | ServerErrorKind::NoPerm
                | ServerErrorKind::NoScript
                | ServerErrorKind::CrossSlot
                | ServerErrorKind::ExecAbort
                | ServerErrorKind::NotBusy
                | ServerErrorKind::NoSub
        ) | ErrorKind::Extension
            | ErrorKind::UnexpectedReturnType
    )
}

fn classify(e: &RedisError, op_timeout: Duration) -> CacheError {
    if e.is_timeout() {
        CacheError::Timeout(op_timeout)
    } else if is_reply_error(e) {
        CacheError::Command(e.to_string())
    } else {
        CacheError::Unavailable(e.to_string())
    }
}

fn remaining(deadline: Instant, op_timeout: Duration) -> Result<Duration, CacheError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < MIN_SOCKET_TIMEOUT {
        Err(CacheError::Timeout(op_timeout))
    } else {
        Ok(left)
    }
}

/// Suffix of the generation counter that guards fills of a key.
pub const GENERATION_SUFFIX: &str = "#gen";
/// Shortest life of a generation counter after its last bump. It only has to outlive
/// one load (a read's `MGET` to its fill); the key's own TTL is used when longer.
const MIN_GENERATION_TTL: Duration = Duration::from_secs(600);

/// Write `ARGV[2]` to `KEYS[1]` for `ARGV[3]` ms only if `KEYS[2]` (the generation,
/// absent = "0") still equals `ARGV[1]`. Returns 1 when written.
const FILL_SCRIPT: &str = "local g = redis.call('GET', KEYS[2]) \
if not g then g = '0' end \
if g == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end \
return 0";

fn generation_key(key: &str) -> String {
    format!("{key}{GENERATION_SUFFIX}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Invalidate `keys` in chunks (an invalidation, or the replay of missed ones): bump each
/// key's generation, then `DEL` the keys. The bump comes first, so a fill that loaded
/// before the write either fails its generation check or is deleted afterwards.
fn del(conn: &mut Connection, keys: &[String], generation_ttl: Duration) -> RedisResult<()> {
    let ttl_ms = millis(generation_ttl);
    for chunk in keys.chunks(DEL_CHUNK) {
        let mut pipe = ::redis::pipe();
        for k in chunk {
            let g = generation_key(k);
            pipe.cmd("INCR").arg(&g).ignore().cmd("PEXPIRE").arg(&g).arg(ttl_ms).ignore();
        }
        pipe.cmd("DEL").arg(chunk).ignore();
        pipe.query::<()>(conn)?;
    }
    Ok(())
}

impl RedisCache {
    /// A cache on the Redis at `url` (`redis://[user:password@]host:port[/db]`); connects
    /// lazily, so an unreachable Redis is not an error here (config assumed valid).
    pub fn open(url: &str, config: CacheConfig) -> Result<Self, CacheError> {
        let client = Client::open(url).map_err(|e| CacheError::InvalidUrl(e.to_string()))?;
        let addr = client.get_connection_info().addr().to_string();
        let health = Health::new(config.retry_interval, addr.clone());
        Ok(RedisCache {
            inner: Arc::new(Inner {
                client,
                config,
                fills: FillEpochs::default(),
                health,
                idle: Mutex::new(Vec::new()),
                addr,
            }),
        })
    }

    /// `host:port` (or socket path) of the Redis server, for logs.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub(crate) fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    pub(crate) fn fills(&self) -> &FillEpochs {
        &self.inner.fills
    }

    fn generation_ttl(&self) -> Duration {
        self.inner.config.ttl.max(MIN_GENERATION_TTL)
    }

    /// Whether the last contact with Redis worked.
    pub(crate) fn is_healthy(&self) -> bool {
        self.inner.health.is_healthy()
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // Poisoned only if a push or pop panicked; the vector is still a valid set of connections.
        self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// Run `op` on a connection with socket timeouts set to what is left of the deadline.
    fn attempt<T>(
        &self,
        conn: &mut Connection,
        deadline: Instant,
        op: &mut impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, RedisError> {
        let op_timeout = self.inner.config.op_timeout;
        let left = remaining(deadline, op_timeout).unwrap_or(MIN_SOCKET_TIMEOUT);
        conn.set_read_timeout(Some(left))?;
        conn.set_write_timeout(Some(left))?;
        op(conn)
    }

    /// One call against Redis, on a reused connection or a new one, within `deadline`.
    fn exec<T>(
        &self,
        deadline: Instant,
        mut op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, CacheError> {
        let op_timeout = self.inner.config.op_timeout;
        let pooled = self.idle().pop();
        if let Some(mut conn) = pooled {
            match self.attempt(&mut conn, deadline, &mut op) {
                Ok(v) => {
                    self.give_back(conn);
                    return Ok(v);
                }
                Err(e) if is_reply_error(&e) => {
                    self.give_back(conn);
                    return Err(classify(&e, op_timeout));
                }
                // A hung server: trying again would only wait out the same deadline.
                Err(e) if e.is_timeout() => {
                    self.idle().clear();
                    return Err(classify(&e, op_timeout));
                }
                // Probably closed by a Redis restart, and so are its idle siblings:
                // drop them all and retry once on a fresh connection.
                Err(_) => self.idle().clear(),
            }
        }
        let left = remaining(deadline, op_timeout)?;
        let mut conn = self.inner.client.get_connection_with_timeout(left).map_err(|e| classify(&e, op_timeout))?;
        match self.attempt(&mut conn, deadline, &mut op) {
            Ok(v) => {
                self.give_back(conn);
                Ok(v)
            }
            Err(e) => {
                if is_reply_error(&e) {
                    self.give_back(conn);
                }
                Err(classify(&e, op_timeout))
            }
        }
    }

    /// Run `op` through the health gate: skip while degraded, probe (replaying missed
    /// deletes) when due, record the outcome. `deletes` are the keys `op` removes.
    fn run<T>(
        &self,
        deletes: &[String],
        force_probe: bool,
        mut op: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, CacheError> {
        let start = Instant::now();
        let deadline = start + self.inner.config.op_timeout;
        let health = &self.inner.health;
        let replay = match health.gate(start, deletes, force_probe) {
            Gate::Closed => return Err(CacheError::Degraded),
            Gate::Open => None,
            Gate::Probe(pending) => Some(pending),
        };
        let result = match &replay {
            None => self.exec(deadline, &mut op),
            Some(pending) => self.exec(deadline, |conn| {
                del(conn, pending, self.generation_ttl())?;
                op(conn)
            }),
        };
        match &result {
            Ok(_) => health.succeeded(Instant::now(), replay.as_deref().unwrap_or_default()),
            // Redis answered, so it is up (nothing was replayed that the error could have undone).
            Err(e @ CacheError::Command(_)) if replay.as_ref().is_none_or(Vec::is_empty) => {
                health.succeeded(Instant::now(), &[]);
                health.command_failed(e);
            }
            // Down, or a refused command during a replay (which may be undone): stay degraded.
            Err(e) => {
                self.idle().clear();
                health.failed(Instant::now(), e, deletes);
            }
        }
        result
    }

    /// `GET` a full key.
    pub(crate) fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        self.run(&[], false, |conn| ::redis::cmd("GET").arg(key).query::<Option<String>>(conn))
    }

    /// The value under a full key and the key's fill generation (for [`RedisCache::fill`]), in one round trip.
    pub(crate) fn get_with_generation(&self, key: &str) -> Result<(Option<String>, String), CacheError> {
        let g = generation_key(key);
        let (value, generation) = self.run(&[], false, |conn| {
            ::redis::cmd("MGET").arg(key).arg(&g).query::<(Option<String>, Option<String>)>(conn)
        })?;
        Ok((value, generation.unwrap_or_else(|| "0".to_string())))
    }

    /// `SET key value PX ttl`.
    pub(crate) fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let ttl_ms = millis(ttl);
        self.run(&[], false, |conn| ::redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms).query::<()>(conn))
    }

    /// `SET key value PX ttl` only if no node invalidated `key` since `generation` was read
    /// (atomically, on the server). Ok(true) when written.
    pub(crate) fn fill(&self, key: &str, value: &str, ttl: Duration, generation: &str) -> Result<bool, CacheError> {
        let ttl_ms = millis(ttl);
        let g = generation_key(key);
        let written = self.run(&[], false, |conn| {
            ::redis::cmd("EVAL")
                .arg(FILL_SCRIPT)
                .arg(2)
                .arg(key)
                .arg(&g)
                .arg(generation)
                .arg(value)
                .arg(ttl_ms)
                .query::<i64>(conn)
        })?;
        Ok(written == 1)
    }

    /// Invalidate full keys (generation bump, then `DEL`); a failed or skipped
    /// invalidation is replayed when Redis is back.
    pub(crate) fn delete(&self, keys: &[String]) -> Result<(), CacheError> {
        self.run(keys, false, |conn| del(conn, keys, self.generation_ttl()))
    }

    /// `PING` now, even while degraded (a readiness probe; success heals after replay).
    pub(crate) fn ping(&self) -> Result<(), CacheError> {
        self.run(&[], true, |conn| ::redis::cmd("PING").query::<()>(conn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused_and_passwords_never_printed() {
        assert!(
            matches!(RedisCache::open("http://example", CacheConfig::default()), Err(CacheError::InvalidUrl(_))),
            "a non-redis scheme is refused"
        );
        match RedisCache::open("redis://:s3cret@127.0.0.1:1/0", CacheConfig::default()) {
            Ok(c) => {
                let shown = format!("{c:?}");
                assert!(!shown.contains("s3cret"), "Debug hides the password: {shown}");
                assert_eq!(c.addr(), "127.0.0.1:1", "addr is host:port");
            }
            Err(e) => panic!("a valid URL opens lazily: {e}"),
        }
    }

    #[test]
    fn refused_connection_degrades_fast_then_skips() {
        // Port 1 on loopback: nothing listens, the connect is refused at once.
        let config = CacheConfig { op_timeout: Duration::from_millis(200), ..CacheConfig::default() };
        let cache = match RedisCache::open("redis://127.0.0.1:1", config) {
            Ok(c) => c,
            Err(e) => panic!("opens lazily: {e}"),
        };
        assert!(matches!(cache.get("k"), Err(CacheError::Unavailable(_) | CacheError::Timeout(_))), "first call fails");
        assert!(!cache.is_healthy(), "and degrades the cache");
        assert_eq!(cache.get("k"), Err(CacheError::Degraded), "later calls skip Redis until the next probe");
    }
}
