//! Fuzz targets for the parsers that read outside bytes, one function per parser family.
//!
//! Each target takes arbitrary bytes, feeds them to the real parsing code, and panics when an
//! invariant breaks: a panic or a hang inside a parser, an accepted value that does not
//! re-encode and re-parse to itself, money that is not an exact non-negative decimal, or a
//! rejection without one of the parser's stable codes. The first input byte(s) choose a mode
//! (body format, report, route, chunking); the rest is the document.
//!
//! Two engines drive them: libFuzzer (coverage-guided, `cargo fuzz` on the stable toolchain,
//! `fuzz_targets/`) and the built-in mutational driver ([`driver`], the `tally-fuzz` binary),
//! which needs no instrumented build. `bench/fuzz.sh` runs either.

pub mod driver;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use tally_actors::kafka::envelope::{self, Envelope, InferenceEvent, ProcessedEvent, Record};
use tally_collector::batch::{self, BodyFormat};
use tally_collector::event::{self, MAX_QUANTITY};
use tally_import::fuzzing::{read_page, ReportPage};
use tally_llm::gateway::{SseFrame, UsageTracker, WireFormat};
use tally_llm::StreamEvent;
use tally_store::KeyRecord;
use tally_web::gateway::proxy::{fuzzing as gateway, Route};
use tally_web::gateway::translate::{self, StreamTranslator};
use tally_web::gateway::ModelInfo;

/// A fuzz target: bytes in, panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name, in the order `bench/fuzz.sh` runs them.
pub const TARGETS: [(&str, Target); 5] = [
    ("ingest", ingest),
    ("envelope", envelope),
    ("sse", sse),
    ("gateway_request", gateway_request),
    ("import_report", import_report),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Most events one fuzzed ingest body may hold (the service default is 10,000; fewer keeps
/// each input fast without skipping a code path).
const MAX_BATCH_EVENTS: usize = 256;

fn check_code(what: &str, code: &str, allowed: &[&str], detail: &dyn std::fmt::Debug) {
    assert!(allowed.contains(&code), "{what}: code {code:?} is not one of the stable codes {allowed:?} ({detail:?})");
}

/// A fixed "now", so a run is reproducible from its input alone.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).single().unwrap_or_default()
}

/// Ingest bodies (collector and embedded `/api/ingest`): JSON or NDJSON split into events,
/// each validated. Byte 0 picks the format. An accepted event must also pass the broker-side
/// check (`InferenceEvent::into_usage_event`) and survive the envelope round trip unchanged.
pub fn ingest(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    let format = if mode % 2 == 0 { BodyFormat::Json } else { BodyFormat::Ndjson };
    let events = match batch::split(body, format, MAX_BATCH_EVENTS) {
        Ok(events) => events,
        Err(e) => {
            check_code("ingest body", e.code(), &["invalid_json", "invalid_ndjson", "empty_batch", "too_many_events"], &e);
            return;
        }
    };
    assert!(!events.is_empty() && events.len() <= MAX_BATCH_EVENTS, "split returns 1..=max events, got {}", events.len());
    for raw in events {
        match event::validate(raw, now(), Duration::from_secs(300)) {
            Ok(valid) => check_valid_event(raw, valid),
            Err(r) => check_code(
                "ingest event",
                r.code,
                &[
                    "invalid_event",
                    "invalid_user_id",
                    "invalid_model",
                    "invalid_event_type",
                    "invalid_task",
                    "invalid_idempotency_key",
                    "invalid_occurred_at",
                    "occurred_in_future",
                    "invalid_usage_kind",
                    "invalid_quantity",
                    "quantity_too_large",
                    "negative_quantity",
                    "fractional_tokens",
                    "empty_usage",
                    "invalid_event_id",
                    "invalid_text",
                ],
                &r,
            ),
        }
    }
}

fn check_valid_event(raw: &str, valid: event::ValidEvent) {
    let max = Decimal::from(MAX_QUANTITY);
    for (kind, q) in valid.payload.usage.iter() {
        assert!(!q.is_sign_negative() && !q.is_zero() && *q <= max, "accepted quantity {kind}={q} is within (0, {max}] ({raw})");
        assert!(!kind.is_token() || q.fract().is_zero(), "accepted token count {kind}={q} is whole ({raw})");
    }
    assert!(valid.occurred_at <= now() + chrono::Duration::seconds(300), "accepted event is not in the future ({raw})");
    let env = Envelope::new(valid.event_id, valid.occurred_at, "fuzz", valid.payload.clone());
    let body = match env.encode() {
        Ok(body) => body,
        Err(e) => panic!("an accepted event encodes: {e} ({raw})"),
    };
    match Record::<InferenceEvent>::decode(&body) {
        Ok(Record::One(back)) => assert_eq!(back, env, "an accepted event decodes from the broker unchanged ({raw})"),
        Ok(Record::Many(_)) => panic!("a lone event decodes as a lone event ({raw})"),
        Err(e) => panic!("an accepted event decodes from the broker: {e} ({raw})"),
    }
    if let Err(e) = InferenceEvent::into_usage_event(env) {
        panic!("an event the ingest API accepted is refused by the broker consumer: {} {e} ({raw})", e.code());
    }
}

const ENVELOPE_CODES: [&str; 4] = ["invalid_envelope", "unknown_schema_version", "invalid_compression", "record_too_large"];

/// Kafka record bodies: plain JSON envelopes (one event or a packed batch) and LZ4 frames of
/// them. Byte 0 picks the mode: the rest as the body, the rest packed into an LZ4 frame
/// (exercising unpack on every document), or the LZ4 magic then the rest (a broken frame).
pub fn envelope(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let body: Vec<u8> = match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let framed = lz4_frame(rest);
            match envelope::unpack(&framed) {
                Ok(text) => assert_eq!(&*text, rest, "an LZ4 frame unpacks to what was packed"),
                Err(e) => {
                    assert!(rest.is_empty(), "a frame of {} bytes unpacks (got {})", rest.len(), e.code());
                    check_code("unpack", e.code(), &["invalid_compression"], &e);
                }
            }
            framed
        }
        _ => {
            let mut b = envelope::LZ4_FRAME_MAGIC.to_vec();
            b.extend_from_slice(rest);
            b
        }
    };
    match envelope::unpack(&body) {
        Ok(text) => {
            if !body.starts_with(&envelope::LZ4_FRAME_MAGIC) {
                assert_eq!(&*text, &body[..], "a body without the LZ4 magic is passed through as is");
            }
        }
        Err(e) => check_code("unpack", e.code(), &["invalid_compression", "record_too_large"], &e),
    }
    let prefix_producer = envelope::producer_in_prefix(&body);
    decode_record::<InferenceEvent>(&body, prefix_producer.as_deref(), |event| {
        match InferenceEvent::into_usage_event(event) {
            Ok(u) => {
                for (kind, q) in u.usage.iter() {
                    assert!(!q.is_sign_negative(), "a usage event from the broker has no negative quantity ({kind}={q})");
                }
            }
            Err(e) => check_code(
                "inference event",
                e.code(),
                &["invalid_user_id", "invalid_model", "invalid_task", "empty_usage", "negative_quantity", "fractional_tokens", "invalid_text"],
                &e,
            ),
        }
    });
    decode_record::<ProcessedEvent>(&body, prefix_producer.as_deref(), |event| match event.payload.validate() {
        Ok(()) => {
            let p = &event.payload;
            let sum: Decimal = p.cost.lines.iter().map(|l| l.amount).sum();
            assert_eq!(sum, p.cost_total, "a valid processed event's lines add up to its exact total");
        }
        Err(e) => check_code("processed event", e.code(), &["invalid_user_id", "invalid_model", "inconsistent_cost", "negative_quantity"], &e),
    });
}

fn lz4_frame(data: &[u8]) -> Vec<u8> {
    let mut frame = lz4_flex::frame::FrameEncoder::new(Vec::new());
    match std::io::Write::write_all(&mut frame, data).map_err(lz4_flex::frame::Error::from).and_then(|()| frame.finish()) {
        Ok(f) => f,
        Err(e) => panic!("LZ4 framing into memory does not fail: {e}"),
    }
}

fn decode_record<T>(body: &[u8], prefix_producer: Option<&str>, mut each: impl FnMut(Envelope<T>))
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
{
    let record = match Record::<T>::decode(body) {
        Ok(r) => r,
        Err(e) => {
            check_code("record", e.code(), &ENVELOPE_CODES, &e);
            return;
        }
    };
    let (producer, encoded) = match &record {
        Record::One(env) => (env.producer.clone(), env.encode()),
        Record::Many(env) => (env.producer.clone(), env.encode()),
    };
    if let Some(p) = prefix_producer {
        assert_eq!(p, producer, "the producer read from a record's prefix is the record's producer");
    }
    let encoded = match encoded {
        Ok(b) => b,
        Err(e) => panic!("a decoded record encodes again: {e}"),
    };
    match Record::<T>::decode(&envelope::pack(encoded.clone())) {
        Ok(again) => assert_eq!(again, record, "a decoded record re-encodes (packed) and decodes to itself"),
        Err(e) => panic!("a re-encoded record decodes: {e} ({})", String::from_utf8_lossy(&encoded)),
    }
    for event in record.into_events() {
        each(event);
    }
}

/// Provider SSE streams: the Anthropic and OpenAI stream parsers of the chat providers, and
/// the gateway's frame reader with its usage tracker and OpenAI translation. Byte 0 picks the
/// parser, byte 1 how the body is cut into network chunks; the result must not depend on
/// where the chunks break, and a stream ends exactly once.
pub fn sse(data: &[u8]) {
    let [mode, cut, body @ ..] = data else { return };
    let whole = vec![body.to_vec()];
    let chunks = chunked(body, *cut);
    match mode % 4 {
        0 | 1 => {
            let run = |c: Vec<Vec<u8>>| {
                if mode % 4 == 0 {
                    tally_llm::fuzzing::anthropic_stream(c, "claude-requested")
                } else {
                    tally_llm::fuzzing::openai_stream(c, "gpt-requested")
                }
            };
            let a = run(whole);
            let b = run(chunks);
            check_stream_events(&a);
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "the provider stream parser reads the same events whatever the chunking");
        }
        _ => {
            let format = if mode % 4 == 2 { WireFormat::Anthropic } else { WireFormat::OpenAi };
            let a = tally_llm::fuzzing::gateway_frames(whole, format);
            let b = tally_llm::fuzzing::gateway_frames(chunks, format);
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "the gateway reads the same frames whatever the chunking");
            check_gateway_frames(&a, format);
        }
    }
}

fn chunked(body: &[u8], cut: u8) -> Vec<Vec<u8>> {
    let size = usize::from(cut % 16) + 1;
    body.chunks(size).map(<[u8]>::to_vec).collect()
}

fn check_stream_events(events: &[StreamEvent]) {
    let terminals = events.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "a provider stream ends with exactly one terminal event: {events:?}");
    assert!(events.last().is_some_and(StreamEvent::is_terminal), "the terminal event is the last one: {events:?}");
}

fn check_gateway_frames(items: &[Result<SseFrame, tally_llm::LlmError>], format: WireFormat) {
    let errors = items.iter().filter(|i| i.is_err()).count();
    assert!(errors <= 1, "the gateway frame stream ends with at most one error: {items:?}");
    if errors == 1 {
        assert!(items.last().is_some_and(Result::is_err), "an error ends the frame stream: {items:?}");
    }
    let mut tracker = UsageTracker::new(format);
    let mut translator = StreamTranslator::new("claude-requested", 0, true);
    for frame in items.iter().filter_map(|i| i.as_ref().ok()) {
        // What the gateway sends a client speaking the upstream's own format.
        let resent = frame.to_sse();
        let back = tally_llm::fuzzing::gateway_frames(vec![resent.clone().into_bytes()], format);
        match back.first() {
            Some(Ok(f)) => assert_eq!(f, frame, "a frame re-serialized as SSE ({resent:?}) reads back the same"),
            other => panic!("a frame re-serialized as SSE ({resent:?}) reads back: {other:?}"),
        }
        let plain = gateway::encode_frame(frame, None);
        assert_eq!(plain.len(), 1, "an untranslated frame is passed through as one SSE frame");
        assert!(
            !tracker.finished() && !tracker.failed(),
            "no frame follows the one the usage tracker saw as final: {items:?}"
        );
        tracker.observe(frame);
        if format == WireFormat::Anthropic {
            for bytes in gateway::encode_frame(frame, Some(&mut translator)) {
                let text = std::str::from_utf8(&bytes).unwrap_or_default();
                let json = text.strip_prefix("data: ").and_then(|t| t.strip_suffix("\n\n"));
                match json.map(serde_json::from_str::<Value>) {
                    Some(Ok(v)) => assert!(v.is_object(), "a translated chunk is a JSON object: {text:?}"),
                    _ => panic!("a translated chunk is one `data: <json>` SSE frame: {text:?}"),
                }
            }
        }
    }
    if errors == 0 {
        assert!(
            tracker.finished() || tracker.failed(),
            "a frame stream that ended cleanly ended on a frame the usage tracker sees as final: {items:?}"
        );
    }
}

/// A key that may call every model, for the gateway's request checks.
fn any_model_key() -> KeyRecord {
    KeyRecord {
        key_id: uuid::Uuid::nil(),
        public_id: "fuzz".into(),
        secret_hash: String::new(),
        user_id: "fuzz-user".into(),
        name: "fuzz".into(),
        allowed_models: None,
        expires_at: None,
        rpm_limit: None,
        created_at: now(),
        revoked_at: None,
    }
}

fn gateway_models() -> HashMap<String, ModelInfo> {
    let m = |provider: &str, max: Option<u64>| ModelInfo { provider: provider.into(), max_output_tokens: max };
    HashMap::from([
        ("claude-sonnet-4-5".to_string(), m("anthropic", Some(64_000))),
        ("claude-haiku-4-5".to_string(), m("anthropic", Some(8_192))),
        ("gpt-4o".to_string(), m("openai", Some(16_384))),
        ("gpt-unbounded".to_string(), m("openai", None)),
    ])
}

/// Gateway request bodies (`POST /v1/chat/completions`, `POST /v1/messages`): the checks the
/// handler runs before any budget or upstream is touched, and the OpenAI -> Anthropic request
/// translation. Byte 0 picks the route and whether the key is limited to one model.
pub fn gateway_request(data: &[u8]) {
    let Some((&mode, raw)) = data.split_first() else { return };
    let route = if mode % 2 == 0 { Route::ChatCompletions } else { Route::Messages };
    let mut key = any_model_key();
    if mode & 2 != 0 {
        key.allowed_models = Some(vec!["gpt-4o".into()]);
    }
    let models = gateway_models();
    match gateway::check_request(route, raw, &models, &key) {
        Ok(c) => {
            let info = models.get(&c.model);
            assert!(info.is_some(), "an accepted request names a catalogue model ({})", c.model);
            assert!(c.max_output >= 1, "an accepted request may generate at least one token");
            if let Some(limit) = info.and_then(|i| i.max_output_tokens) {
                assert!(c.max_output <= limit, "max output {} is within the model's {limit}", c.max_output);
            }
            assert!((1..=128).contains(&c.choices), "choices {} within 1..=128", c.choices);
            assert!(c.messages >= 1, "an accepted request has messages");
            if let Some(allowed) = &key.allowed_models {
                assert!(allowed.contains(&c.model), "a limited key only reaches its models");
            }
            if c.translate {
                let b = &c.upstream_body;
                assert_eq!(b.get("model").and_then(Value::as_str), Some(c.model.as_str()), "the translation keeps the model");
                assert_eq!(b.get("max_tokens").and_then(Value::as_u64), Some(c.max_output), "the translation carries max_tokens");
                assert!(b.get("messages").and_then(Value::as_array).is_some(), "the translation has a messages array");
            }
            let text = c.upstream_body.to_string();
            match serde_json::from_str::<Value>(&text) {
                Ok(back) => assert_eq!(back, c.upstream_body, "the upstream body re-serializes and re-parses to itself"),
                Err(e) => panic!("the upstream body re-parses: {e}"),
            }
            if let Err(e) = c.extra_input {
                check_code("gateway input bound", e.code(), &["unbounded_input"], &e);
            }
        }
        Err(e) => {
            check_code(
                "gateway request",
                e.code(),
                &[
                    "invalid_json",
                    "invalid_body",
                    "missing_model",
                    "model_not_found",
                    "model_not_supported_on_route",
                    "model_not_allowed",
                    "invalid_messages",
                    "invalid_parameter",
                    "missing_max_tokens",
                    "max_tokens_too_large",
                    "max_tokens_required",
                    "invalid_tool_arguments",
                    "unsupported_parameter",
                    "unsupported_content",
                ],
                &e,
            );
            assert!(e.status().is_client_error(), "a refused request body is a 4xx, got {} ({e:?})", e.status());
        }
    }
    // The translation on its own, on any JSON (the handler only passes it checked bodies).
    if let Ok(v) = serde_json::from_slice::<Value>(raw) {
        match translate::openai_request_to_anthropic(&v, 4_096) {
            Ok(out) => assert!(out.is_object(), "a translated request is a JSON object"),
            Err(e) => check_code(
                "translation",
                e.code(),
                &["invalid_messages", "invalid_tool_arguments", "unsupported_parameter", "unsupported_content", "invalid_parameter"],
                &e,
            ),
        }
    }
}

/// Provider usage and cost report pages (tally-import): Anthropic's Admin API and OpenAI's
/// organization API. Byte 0 picks the report. Accepted money is an exact non-negative decimal
/// that prints and re-parses to itself; a refused page says `invalid_provider_response`.
pub fn import_report(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let report = ReportPage::ALL[usize::from(mode) % ReportPage::ALL.len()];
    let body = String::from_utf8_lossy(rest);
    match read_page(report, &body) {
        Ok(page) => {
            for c in &page.costs {
                assert!(!c.amount_usd.is_sign_negative() || c.amount_usd.is_zero(), "an imported cost is not negative: {c:?}");
                assert_eq!(Decimal::from_str(&c.amount_usd.to_string()).ok(), Some(c.amount_usd), "an imported cost prints exactly: {c:?}");
                assert_eq!(c.currency, c.currency.to_uppercase(), "currency is upper-cased: {c:?}");
            }
            let mut ids = std::collections::HashSet::new();
            for u in &page.usage {
                assert!(u.quantities.iter().all(|(_, n)| *n > 0), "an imported bucket holds only non-zero quantities: {u:?}");
                assert!(ids.insert(u.event_id()), "bucket event ids are unique in a page: {u:?}");
            }
        }
        Err(e) => check_code("import page", e.code(), &["invalid_provider_response"], &e),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every committed seed runs through its target without breaking an invariant, and every
    /// target has seeds (what the fuzzers start from, and the valid examples of each format).
    #[test]
    fn every_seed_passes_its_target() {
        for (name, target) in TARGETS {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(name);
            let seeds = match driver::load_corpus(&dir) {
                Ok(s) => s,
                Err(e) => panic!("the corpus of {name} is readable: {e}"),
            };
            assert!(seeds.len() >= 3, "{name} has a seed corpus in {}", dir.display());
            for (i, seed) in seeds.iter().enumerate() {
                driver::quiet_panics();
                let outcome = driver::run_one(target, seed);
                assert!(outcome.is_ok(), "seed {i} of {name} passes: {outcome:?}");
            }
        }
    }

    /// The invariant checks fire: a stable code outside the list is caught.
    #[test]
    #[should_panic(expected = "is not one of the stable codes")]
    fn an_unlisted_code_is_a_finding() {
        check_code("test", "made_up", &["invalid_json"], &"detail");
    }

    /// Mutation keeps inputs within the length bound and is reproducible from its seed.
    #[test]
    fn mutation_is_bounded_and_seeded() {
        let seeds = vec![b"{\"a\":1}".to_vec(), vec![0u8; driver::MAX_LEN]];
        let (mut a, mut b) = (driver::Rng::new(7), driver::Rng::new(7));
        for _ in 0..1_000 {
            let x = driver::mutate(&mut a, &seeds[1], &seeds);
            let y = driver::mutate(&mut b, &seeds[1], &seeds);
            assert!(x.len() <= driver::MAX_LEN, "a mutant is at most MAX_LEN bytes");
            assert_eq!(x, y, "the same seed gives the same mutants");
        }
    }
}
