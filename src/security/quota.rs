//! Quotas: how many produce bytes, fetch bytes and requests per second a
//! principal or a client id may use on this broker, as Kafka's client quotas.
//!
//! Each quota is a token bucket per entity, refilled at its rate and holding
//! at most one second of it (the burst). A request takes its tokens when it
//! arrives (one request, and a produce its frame's bytes) and a fetch its
//! response's bytes when answered; the bucket may go below zero. While one
//! of an entity's buckets is below zero, the entity's next request waits
//! before it is dispatched for as long as the deficit takes to refill
//! (capped at [`MAX_THROTTLE`]), and its response says so in
//! `throttle_time_ms`: the client is slowed to its rate, never disconnected,
//! and a throttled connection takes no broker work meanwhile.
//!
//! Which entity a connection's requests count against, and at which rates:
//! an override for its principal (`user`), else one for its client id, each
//! shared by every connection it names; else the defaults (`[quotas]` in the
//! settings), per principal for an authenticated connection and per client id
//! for an anonymous one. An override sets some rates; the others come from
//! the defaults. 0 is no limit.
//!
//! Overrides live in `<data_dir>/security/quotas.json`, replaced whole and
//! fsynced on each change (see [`super::store`]).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use herald_actors::error::{BrokerError, ErrorCode};
use serde::{Deserialize, Serialize};

use super::{store, Principal};

/// The file of the overrides under the data directory's security directory.
pub const QUOTAS_FILE: &str = "quotas.json";

/// The longest a request is held: a deficit longer than this (one request
/// far over its entity's burst) is held this long each time until it is paid.
pub const MAX_THROTTLE: Duration = Duration::from_secs(10);

/// The three rates, per second; 0 (or absent in an override) is no limit
/// (for an override: the default's). The wire's type, stored as it is.
pub use herald_wire::protocol::QuotaRates as Rates;

/// The names of the rates, as on the wire and in the settings.
pub const RATE_KEYS: [&str; 3] = ["producer_byte_rate", "consumer_byte_rate", "request_rate"];

/// The rate named `key`.
fn slot<'a>(rates: &'a mut Rates, key: &str) -> Option<&'a mut Option<u64>> {
    match key {
        "producer_byte_rate" => Some(&mut rates.producer_byte_rate),
        "consumer_byte_rate" => Some(&mut rates.consumer_byte_rate),
        "request_rate" => Some(&mut rates.request_rate),
        _ => None,
    }
}

/// `rates`, each missing one from `defaults`.
fn or_defaults(rates: Rates, defaults: Rates) -> Rates {
    Rates {
        producer_byte_rate: rates.producer_byte_rate.or(defaults.producer_byte_rate),
        consumer_byte_rate: rates.consumer_byte_rate.or(defaults.consumer_byte_rate),
        request_rate: rates.request_rate.or(defaults.request_rate),
    }
}

/// Whether any of the rates limits anything.
fn limited(rates: &Rates) -> bool {
    [rates.producer_byte_rate, rates.consumer_byte_rate, rates.request_rate].iter().any(|r| r.unwrap_or(0) > 0)
}

/// Whom a quota is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// Before `User`, so that entities sort by their wire type's name.
    ClientId(String),
    /// A principal, by its name (`alice` for `User:alice`).
    User(String),
}

impl Entity {
    /// Parses the wire's `entity_type` and `entity_name`.
    ///
    /// # Errors
    ///
    /// An unknown type or an empty name.
    pub fn parse(entity_type: &str, name: &str) -> Result<Entity, String> {
        if name.is_empty() {
            return Err("entity_name must not be empty".into());
        }
        match entity_type {
            "user" => Ok(Entity::User(name.to_string())),
            "client_id" => Ok(Entity::ClientId(name.to_string())),
            other => Err(format!("unknown entity_type `{other}` (user or client_id)")),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Entity::User(_) => "user",
            Entity::ClientId(_) => "client_id",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Entity::User(name) | Entity::ClientId(name) => name,
        }
    }
}

/// One entity's buckets.
#[derive(Debug)]
struct Buckets {
    rates: Rates,
    produce: Bucket,
    fetch: Bucket,
    requests: Bucket,
}

/// Tokens refilled at `rate` per second up to one second's worth.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u64, now: Instant) -> Bucket {
        Bucket { tokens: rate as f64, at: now }
    }

    fn refill(&mut self, rate: u64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate as f64).min(rate as f64);
        self.at = now;
    }

    /// How long until the bucket is back at zero.
    fn deficit(&self, rate: u64) -> Duration {
        if self.tokens >= 0.0 || rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / rate as f64)
    }
}

impl Buckets {
    fn new(rates: Rates, now: Instant) -> Buckets {
        Buckets {
            rates,
            produce: Bucket::full(rates.producer_byte_rate.unwrap_or(0), now),
            fetch: Bucket::full(rates.consumer_byte_rate.unwrap_or(0), now),
            requests: Bucket::full(rates.request_rate.unwrap_or(0), now),
        }
    }

    fn each(&mut self) -> [(&mut Bucket, u64); 3] {
        let r = self.rates;
        [
            (&mut self.produce, r.producer_byte_rate.unwrap_or(0)),
            (&mut self.fetch, r.consumer_byte_rate.unwrap_or(0)),
            (&mut self.requests, r.request_rate.unwrap_or(0)),
        ]
    }

    fn take(&mut self, usage: Usage, now: Instant) {
        let amounts = [usage.produce_bytes, usage.fetch_bytes, usage.requests];
        for ((bucket, rate), amount) in self.each().into_iter().zip(amounts) {
            if rate > 0 {
                bucket.refill(rate, now);
                bucket.tokens -= amount as f64;
            }
        }
    }

    fn throttle(&mut self, now: Instant) -> Duration {
        self.each()
            .into_iter()
            .filter(|(_, rate)| *rate > 0)
            .map(|(bucket, rate)| {
                bucket.refill(rate, now);
                bucket.deficit(rate)
            })
            .max()
            .unwrap_or_default()
            .min(MAX_THROTTLE)
    }
}

/// What a request uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub requests: u64,
    pub produce_bytes: u64,
    pub fetch_bytes: u64,
}

/// The file's shape.
#[derive(Serialize, Deserialize, Default)]
struct QuotasFile {
    version: u32,
    quotas: Vec<StoredQuota>,
}

#[derive(Serialize, Deserialize)]
struct StoredQuota {
    entity_type: String,
    entity_name: String,
    #[serde(flatten)]
    rates: Rates,
}

/// The broker's quotas. See the module documentation.
pub struct Quotas {
    defaults: Rates,
    file: PathBuf,
    overrides: RwLock<Arc<BTreeMap<Entity, Rates>>>,
    /// Whether any quota limits anyone (the defaults or an override): read
    /// on every request, so a flag rather than the lock.
    active: AtomicBool,
    buckets: Mutex<HashMap<Entity, Buckets>>,
    writing: Mutex<()>,
}

impl Quotas {
    /// Loads the overrides of `data_dir`, with `defaults` for every entity.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed (the broker does not start on it).
    pub fn open(data_dir: &Path, defaults: Rates) -> io::Result<Quotas> {
        let file = store::dir(data_dir).join(QUOTAS_FILE);
        let overrides = match store::read(&file)? {
            None => BTreeMap::new(),
            Some(bytes) => {
                let stored: QuotasFile = serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", file.display())))?;
                let invalid =
                    |e: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", file.display()));
                stored
                    .quotas
                    .into_iter()
                    .map(|q| Ok((Entity::parse(&q.entity_type, &q.entity_name).map_err(invalid)?, q.rates)))
                    .collect::<io::Result<_>>()?
            }
        };
        Ok(Quotas {
            defaults,
            file,
            active: AtomicBool::new(limited(&defaults) || !overrides.is_empty()),
            overrides: RwLock::new(Arc::new(overrides)),
            buckets: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
        })
    }

    /// Whether any quota limits anyone: defaults or overrides.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn overrides(&self) -> Arc<BTreeMap<Entity, Rates>> {
        self.overrides.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// The entity a connection's requests count against and its rates;
    /// `None` when nothing limits it (no bucket is kept then).
    pub fn resolve(&self, principal: &Principal, client_id: &str) -> Option<(Entity, Rates)> {
        let overrides = self.overrides();
        let user = Entity::User(principal.name().to_string());
        let client = Entity::ClientId(client_id.to_string());
        let (entity, rates) = if let Some(rates) = overrides.get(&user) {
            (user, or_defaults(*rates, self.defaults))
        } else if let Some(rates) = overrides.get(&client) {
            (client, or_defaults(*rates, self.defaults))
        } else if principal.is_anonymous() {
            (client, self.defaults)
        } else {
            (user, self.defaults)
        };
        limited(&rates).then_some((entity, rates))
    }

    /// Counts `usage` against `entity` and returns how long its next
    /// request must wait (zero when it is within its rates).
    pub fn record(&self, entity: &Entity, rates: Rates, usage: Usage) -> Duration {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else { return Duration::ZERO };
        let buckets = buckets.entry(entity.clone()).or_insert_with(|| Buckets::new(rates, now));
        if buckets.rates != rates {
            // The rates changed: start again from full buckets at the new ones.
            *buckets = Buckets::new(rates, now);
        }
        buckets.take(usage, now);
        buckets.throttle(now)
    }

    /// The overrides, sorted by entity.
    pub fn list(&self) -> Vec<(Entity, Rates)> {
        self.overrides().iter().map(|(e, r)| (e.clone(), *r)).collect()
    }

    /// The defaults (`[quotas]`).
    pub fn defaults(&self) -> Rates {
        self.defaults
    }

    /// Sets rates of `entity` (`set`) and removes others (`remove`: back to
    /// the default); an entity left with no rate has no override. Blocks on
    /// the disk: call it off the event loops.
    ///
    /// # Errors
    ///
    /// INVALID_REQUEST for an unknown rate name; KAFKA_STORAGE_ERROR when the
    /// file cannot be written (nothing changes then).
    pub fn alter(&self, entity: Entity, set: &BTreeMap<String, u64>, remove: &[String]) -> Result<(), BrokerError> {
        let unknown = set.keys().chain(remove).find(|k| !RATE_KEYS.contains(&k.as_str()));
        if let Some(key) = unknown {
            return Err(BrokerError::new(
                ErrorCode::INVALID_REQUEST,
                format!("unknown quota `{key}` (one of {})", RATE_KEYS.join(", ")),
            ));
        }
        let storage = |m: String| BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, m);
        let _one_at_a_time = self.writing.lock().map_err(|_| storage("a change to the quotas failed before".into()))?;
        let mut next = (*self.overrides()).clone();
        let mut rates = next.get(&entity).copied().unwrap_or_default();
        for (key, value) in set {
            if let Some(slot) = slot(&mut rates, key) {
                *slot = Some(*value);
            }
        }
        for key in remove {
            if let Some(slot) = slot(&mut rates, key) {
                *slot = None;
            }
        }
        if rates == Rates::default() {
            next.remove(&entity);
        } else {
            next.insert(entity, rates);
        }
        let file = QuotasFile {
            version: 1,
            quotas: next
                .iter()
                .map(|(e, r)| StoredQuota { entity_type: e.kind().into(), entity_name: e.name().into(), rates: *r })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| storage(e.to_string()))?;
        store::replace(&self.file, &bytes)
            .map_err(|e| storage(format!("cannot write {}: {e}", self.file.display())))?;
        if let Ok(mut overrides) = self.overrides.write() {
            self.active.store(limited(&self.defaults) || !next.is_empty(), Ordering::Relaxed);
            *overrides = Arc::new(next);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(produce: u64, fetch: u64, requests: u64) -> Rates {
        let some = |n| (n > 0).then_some(n);
        Rates { producer_byte_rate: some(produce), consumer_byte_rate: some(fetch), request_rate: some(requests) }
    }

    #[test]
    fn a_burst_passes_and_what_exceeds_it_waits_for_its_refill() {
        let dir = tempfile::tempdir().unwrap();
        let quotas = Quotas::open(dir.path(), rates(1000, 0, 0)).unwrap();
        let (entity, r) = quotas.resolve(&Principal::anonymous(), "c").unwrap();
        assert_eq!(entity, Entity::ClientId("c".into()));
        let produce = |bytes| Usage { requests: 1, produce_bytes: bytes, fetch_bytes: 0 };
        assert_eq!(quotas.record(&entity, r, produce(1000)), Duration::ZERO, "one second's worth is the burst");
        let wait = quotas.record(&entity, r, produce(500));
        assert!(wait > Duration::from_millis(450) && wait <= Duration::from_millis(500), "{wait:?}");
        let wait = quotas.record(&entity, r, produce(1_000_000));
        assert_eq!(wait, MAX_THROTTLE);
    }

    #[test]
    fn nothing_is_kept_for_an_unlimited_entity() {
        let dir = tempfile::tempdir().unwrap();
        let quotas = Quotas::open(dir.path(), Rates::default()).unwrap();
        assert!(quotas.resolve(&Principal::user("alice"), "c").is_none());
    }

    #[test]
    fn a_user_override_comes_before_a_client_id_one_and_both_before_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let quotas = Quotas::open(dir.path(), rates(0, 0, 100)).unwrap();
        let alice = Principal::user("alice");
        assert_eq!(quotas.resolve(&alice, "c").unwrap(), (Entity::User("alice".into()), rates(0, 0, 100)));
        let set = |k: &str, v| BTreeMap::from([(k.to_string(), v)]);
        quotas.alter(Entity::ClientId("c".into()), &set("producer_byte_rate", 10), &[]).unwrap();
        assert_eq!(quotas.resolve(&alice, "c").unwrap(), (Entity::ClientId("c".into()), rates(10, 0, 100)));
        quotas.alter(Entity::User("alice".into()), &set("consumer_byte_rate", 5), &[]).unwrap();
        assert_eq!(quotas.resolve(&alice, "c").unwrap(), (Entity::User("alice".into()), rates(0, 5, 100)));

        // Durable: a new broker reads them back; removing every rate removes the override.
        let reopened = Quotas::open(dir.path(), rates(0, 0, 100)).unwrap();
        assert_eq!(reopened.list().len(), 2);
        reopened.alter(Entity::User("alice".into()), &BTreeMap::new(), &["consumer_byte_rate".into()]).unwrap();
        assert_eq!(reopened.list(), vec![(Entity::ClientId("c".into()), rates(10, 0, 0))]);
        let err = reopened.alter(Entity::User("a".into()), &set("bytes", 1), &[]).unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_REQUEST);
    }
}
