// analytics queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and `postgres.rs`
// each include it in a `analytics` submodule, so every query is written once and type-checked
// against both backends.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::{write_tx, Conn};
use crate::analytics::{
    AnalyticsFilter, Dim, EventCursor, EventDetail, EventPage, EventPayload, EventQuery, Figures, Group, ListedEvent,
};
use crate::error::StoreError;
use crate::gateway::GatewayCallRecord;
use crate::records::UsageRecord;
use crate::rows::GatewayRequestRow;
use crate::schema::*;
use crate::sql_types::{DbDecimal, DbTime, DbUuid};

/// Events read per step while rebuilding rollups.
const REBUILD_CHUNK: i64 = 20_000;

/// Most events per usage-log page.
const MAX_PAGE: i64 = 1_000;

/// The model ids matching a provider and/or model filter (`None`: no such filter).
fn model_ids_for(
    conn: &mut Conn,
    provider: Option<&str>,
    model: Option<&str>,
) -> Result<Option<Vec<i64>>, StoreError> {
    if provider.is_none() && model.is_none() {
        return Ok(None);
    }
    let mut q = dim_models::table.select(dim_models::model_id).into_boxed();
    if let Some(p) = provider {
        q = q.filter(dim_models::provider.eq(p.to_string()));
    }
    if let Some(m) = model {
        q = q.filter(dim_models::model_name.eq(m.to_string()));
    }
    Ok(Some(q.load(conn)?))
}

/// Model names and providers by id.
fn model_names(conn: &mut Conn) -> Result<HashMap<i64, (String, String)>, StoreError> {
    let rows: Vec<(i64, String, String)> =
        dim_models::table.select((dim_models::model_id, dim_models::model_name, dim_models::provider)).load(conn)?;
    Ok(rows.into_iter().map(|(id, name, provider)| (id, (name, provider))).collect())
}

/// A part of a range read from one span of rollup rows: month bounds (first days, inclusive)
/// and day bounds (inclusive; month rows sit on their month's first day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    span: &'static str,
    months: (chrono::NaiveDate, chrono::NaiveDate),
    days: (chrono::NaiveDate, chrono::NaiveDate),
}

fn first_of_month(d: chrono::NaiveDate) -> chrono::NaiveDate {
    use chrono::Datelike;
    d.with_day(1).unwrap_or(d)
}

fn last_of_month(d: chrono::NaiveDate) -> chrono::NaiveDate {
    first_of_month(d)
        .checked_add_months(chrono::Months::new(1))
        .and_then(|next| next.pred_opt())
        .unwrap_or(d)
}

/// The first days of the months from `a` to `b` (both first days), in order.
fn months_between(a: chrono::NaiveDate, b: chrono::NaiveDate) -> Vec<chrono::NaiveDate> {
    let mut out = Vec::new();
    let mut m = a;
    while m <= b {
        out.push(m);
        match m.checked_add_months(chrono::Months::new(1)) {
            Some(next) => m = next,
            None => break,
        }
    }
    out
}

/// How to read `[from, to]`: month rows for the whole months inside it, day rows for the
/// days at its ends (all day rows when grouping by day).
fn segments(from: chrono::NaiveDate, to: chrono::NaiveDate, by_day: bool) -> Vec<Segment> {
    let day_segment = |a: chrono::NaiveDate, b: chrono::NaiveDate| Segment {
        span: crate::repo::SPAN_DAY,
        months: (first_of_month(a), first_of_month(b)),
        days: (a, b),
    };
    if by_day {
        return vec![day_segment(from, to)];
    }
    let mut out = Vec::new();
    let mut whole: Option<(chrono::NaiveDate, chrono::NaiveDate)> = None;
    let mut m = first_of_month(from);
    while m <= to {
        let end = last_of_month(m);
        if m >= from && end <= to {
            whole = Some((whole.map_or(m, |w| w.0), m));
        } else {
            out.push(day_segment(from.max(m), to.min(end)));
        }
        m = end.succ_opt().unwrap_or(end);
        if m == end {
            break;
        }
    }
    if let Some((a, b)) = whole {
        out.push(Segment { span: crate::repo::SPAN_MONTH, months: (a, b), days: (a, b) });
    }
    out
}

/// The smallest grain that keeps every dimension `dims` group by and `filter` filters on.
fn grain_for(filter: &AnalyticsFilter, dims: &[Dim]) -> &'static str {
    let user = filter.user_id.is_some() || dims.contains(&Dim::User);
    let model = filter.provider.is_some() || filter.model.is_some() || dims.iter().any(|d| matches!(d, Dim::Model | Dim::Provider));
    let key = filter.key_id.is_some() || dims.contains(&Dim::Key);
    let task = filter.task.is_some() || dims.contains(&Dim::Task);
    crate::repo::GRAINS
        .iter()
        .find(|g| (g.user || !user) && (g.model || !model) && (g.key || !key) && (g.task || !task))
        .map_or("full", |g| g.name)
}

/// One grouped rollup row as the database sums it (ungrouped dimensions come back as any
/// one of their values and are ignored).
#[derive(diesel::QueryableByName)]
struct SummedRow {
    #[diesel(sql_type = crate::sql_types::UtcInstant)]
    day: DbTime,
    #[diesel(sql_type = diesel::sql_types::Text)]
    user_id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    model_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    key_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    task: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    requests: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    failed: i64,
    #[diesel(sql_type = crate::sql_types::ExactDecimal)]
    quantity: DbDecimal,
    #[diesel(sql_type = crate::sql_types::ExactDecimal)]
    amount: DbDecimal,
}

/// Rollup figures over `filter`, grouped by `dims`: the database groups and sums (exactly:
/// NUMERIC on PostgreSQL, `tally_dec_sum` over TEXT on SQLite), so only one row per group and
/// kind comes back, however many days and rollup rows the range holds.
pub(crate) fn grouped(conn: &mut Conn, filter: &AnalyticsFilter, dims: &[Dim]) -> Result<Vec<Group>, StoreError> {
    use diesel::sql_types::{BigInt, Text};
    conn.transaction(|conn| {
        let models = model_names(conn)?;
        let model_ids = model_ids_for(conn, filter.provider.as_deref(), filter.model.as_deref())?;
        if model_ids.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let grouped_by = |d: Dim| dims.contains(&d);
        // Group by every key column in key order (masked ones are constant in the grain), so
        // SQLite walks the primary key in group order instead of sorting; rows of one wanted
        // group that differ in other columns (or months) are merged below.
        let by_day = grouped_by(Dim::Day);
        let grain = grain_for(filter, dims);
        let mut rows: Vec<SummedRow> = Vec::new();
        for seg in segments(filter.from_day, filter.to_day, by_day) {
            // Months listed one by one (`IN`, not a range): SQLite then seeks each month and,
            // inside it, the filtered user, model, key or task.
            let months = months_between(seg.months.0, seg.months.1);
            let mut n = 0usize;
            let mut next = || {
                n += 1;
                super::placeholder(n)
            };
            let grain_mark = next();
            let span_mark = next();
            let month_marks: Vec<String> = months.iter().map(|_| next()).collect();
            let mut sql = format!(
                "SELECT {day}, user_id, model_id, key_id, task, kind, CAST(SUM(requests) AS BIGINT) AS requests, \
                 CAST(SUM(failed) AS BIGINT) AS failed, {sum}(quantity) AS quantity, {sum}(amount) AS amount \
                 FROM usage_rollups WHERE grain = {grain_mark} AND span = {span_mark} AND month IN ({}) \
                 AND day >= {} AND day <= {}",
                month_marks.join(", "),
                next(),
                next(),
                day = if by_day { "day" } else { "MIN(day) AS day" },
                sum = super::SUM_DECIMAL,
            );
            if filter.user_id.is_some() {
                sql.push_str(&format!(" AND user_id = {}", next()));
            }
            if let Some(ids) = &model_ids {
                let marks: Vec<String> = ids.iter().map(|_| next()).collect();
                sql.push_str(&format!(" AND model_id IN ({})", marks.join(", ")));
            }
            if filter.key_id.is_some() {
                sql.push_str(&format!(" AND key_id = {}", next()));
            }
            if filter.task.is_some() {
                sql.push_str(&format!(" AND task = {}", next()));
            }
            sql.push_str(" GROUP BY month, user_id, model_id, key_id, task, kind");
            if by_day {
                sql.push_str(", day");
            }
            let at = |d: chrono::NaiveDate| DbTime::new(d.and_time(NaiveTime::MIN).and_utc());
            let mut q = diesel::sql_query(sql)
                .into_boxed::<<Conn as diesel::Connection>::Backend>()
                .bind::<Text, _>(grain)
                .bind::<Text, _>(seg.span);
            for m in &months {
                q = q.bind::<crate::sql_types::UtcInstant, _>(at(*m));
            }
            q = q
                .bind::<crate::sql_types::UtcInstant, _>(at(seg.days.0))
                .bind::<crate::sql_types::UtcInstant, _>(at(seg.days.1));
            if let Some(user) = &filter.user_id {
                q = q.bind::<Text, _>(user.clone());
            }
            for id in model_ids.iter().flatten() {
                q = q.bind::<BigInt, _>(*id);
            }
            if let Some(key) = filter.key_id {
                q = q.bind::<Text, _>(key.to_string());
            }
            if let Some(task) = &filter.task {
                q = q.bind::<Text, _>(task.clone());
            }
            rows.extend(q.load::<SummedRow>(conn)?);
        }
        let mut groups: BTreeMap<Vec<String>, Figures> = BTreeMap::new();
        for r in rows {
            let masked = (String::new(), String::new());
            let (model, provider) = if !(grouped_by(Dim::Model) || grouped_by(Dim::Provider)) {
                &masked
            } else {
                models
                    .get(&r.model_id)
                    .ok_or_else(|| StoreError::Database(format!("rollup row names unknown model id {}", r.model_id)))?
            };
            let group_key: Vec<String> = dims
                .iter()
                .map(|d| match d {
                    Dim::Day => r.day.get().date_naive().to_string(),
                    Dim::User => r.user_id.clone(),
                    Dim::Model => model.clone(),
                    Dim::Provider => provider.clone(),
                    Dim::Key => r.key_id.clone(),
                    Dim::Task => r.task.clone(),
                })
                .collect();
            let figures = groups.entry(group_key).or_default();
            if r.kind.is_empty() {
                figures.requests += r.requests;
                figures.failed += r.failed;
                figures.cost += r.amount.0;
            } else {
                let k = figures.kinds.entry(r.kind).or_default();
                k.requests += r.requests;
                k.quantity += r.quantity.0;
                k.amount += r.amount.0;
            }
        }
        Ok(groups.into_iter().map(|(key, figures)| Group { key, figures }).collect())
    })
}

type EventTuple = (
    i64,
    DbUuid,
    String,
    Option<DbUuid>,
    Option<DbUuid>,
    String,
    String,
    String,
    DbDecimal,
    String,
    Option<String>,
    DbTime,
    Option<DbUuid>,
    Option<String>,
    bool,
);

macro_rules! event_columns {
    () => {
        (
            api_events::event_seq,
            api_events::event_id,
            api_events::user_id,
            api_events::thread_id,
            api_events::message_id,
            dim_models::model_name,
            dim_models::provider,
            dim_event_types::event_name,
            api_events::cost_total,
            api_events::source,
            api_events::idempotency_key,
            api_events::occurred_at,
            api_events::key_id,
            api_events::task,
            api_events::successful,
        )
    };
}

/// Events with their lines, in the order given.
fn listed(conn: &mut Conn, rows: Vec<EventTuple>) -> Result<Vec<ListedEvent>, StoreError> {
    let ids: Vec<DbUuid> = rows.iter().map(|r| r.1).collect();
    let mut lines = super::lines_by_event(conn, &ids)?;
    Ok(rows
        .into_iter()
        .map(|r| ListedEvent {
            event_seq: r.0,
            provider: r.6,
            usage: UsageRecord {
                event_id: r.1 .0,
                user_id: r.2,
                thread_id: r.3.map(|t| t.0),
                message_id: r.4.map(|m| m.0),
                model: r.5,
                event_type: r.7,
                cost: tally_domain::Cost { lines: lines.remove(&r.1 .0).unwrap_or_default(), total: r.8 .0 },
                source: r.9,
                idempotency_key: r.10,
                occurred_at: r.11.get(),
                key_id: r.12.map(|k| k.0),
                task: r.13,
                successful: r.14,
            },
        })
        .collect())
}

/// A page of usage events, newest first.
pub(crate) fn event_page(conn: &mut Conn, query: &EventQuery) -> Result<EventPage, StoreError> {
    conn.transaction(|conn| {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let model_ids = model_ids_for(conn, query.provider.as_deref(), query.model.as_deref())?;
        if model_ids.as_ref().is_some_and(Vec::is_empty) {
            return Ok(EventPage { events: Vec::new(), next: None });
        }
        let mut q = api_events::table
            .inner_join(dim_models::table)
            .inner_join(dim_event_types::table)
            .select(event_columns!())
            .into_boxed();
        if let Some(user) = &query.user_id {
            q = q.filter(api_events::user_id.eq(user.clone()));
        }
        if let Some(thread) = query.thread_id {
            q = q.filter(api_events::thread_id.eq(DbUuid(thread)));
        }
        if let Some(ids) = model_ids {
            q = q.filter(api_events::model_id.eq_any(ids));
        }
        if let Some(key) = query.key_id {
            q = q.filter(api_events::key_id.eq(DbUuid(key)));
        }
        if let Some(task) = &query.task {
            q = q.filter(api_events::task.eq(task.clone()));
        }
        if let Some(ok) = query.successful {
            q = q.filter(api_events::successful.eq(ok));
        }
        if let Some(from) = query.from {
            q = q.filter(api_events::occurred_at.ge(DbTime::new(from)));
        }
        if let Some(to) = query.to {
            q = q.filter(api_events::occurred_at.lt(DbTime::new(to)));
        }
        if let Some(c) = query.after {
            let at = DbTime::new(c.occurred_at);
            q = q.filter(
                api_events::occurred_at
                    .lt(at)
                    .or(api_events::occurred_at.eq(at).and(api_events::event_seq.lt(c.event_seq))),
            );
        }
        // One more than asked: whether a next page exists without a second query.
        let mut rows: Vec<EventTuple> = q
            .order((api_events::occurred_at.desc(), api_events::event_seq.desc()))
            .limit(limit + 1)
            .load(conn)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(|r| EventCursor { occurred_at: r.11.get(), event_seq: r.0 })
        } else {
            None
        };
        Ok(EventPage { events: listed(conn, rows)?, next })
    })
}

/// One usage event in full.
pub(crate) fn event_detail(conn: &mut Conn, event_id: Uuid) -> Result<Option<EventDetail>, StoreError> {
    conn.transaction(|conn| {
        let rows: Vec<EventTuple> = api_events::table
            .inner_join(dim_models::table)
            .inner_join(dim_event_types::table)
            .select(event_columns!())
            .filter(api_events::event_id.eq(DbUuid(event_id)))
            .load(conn)?;
        let Some(event) = listed(conn, rows)?.into_iter().next() else { return Ok(None) };
        let gateway: Option<GatewayRequestRow> = gateway_requests::table
            .filter(gateway_requests::event_id.eq(DbUuid(event_id)))
            .select(GatewayRequestRow::as_select())
            .first(conn)
            .optional()?;
        let payload: Option<(Option<String>, Option<String>)> = event_payloads::table
            .filter(event_payloads::event_id.eq(DbUuid(event_id)))
            .select((event_payloads::request, event_payloads::response))
            .first(conn)
            .optional()?;
        Ok(Some(EventDetail {
            event,
            gateway: gateway.map(|g| GatewayCallRecord {
                event_id: g.event_id.0,
                key_id: g.key_id.0,
                user_id: g.user_id,
                provider: g.provider,
                model: g.model,
                route: g.route,
                status: g.status,
                http_status: g.http_status,
                latency_ms: g.latency_ms,
                upstream_request_id: g.upstream_request_id,
                simulated: g.simulated,
                total_tokens: g.total_tokens,
                occurred_at: g.occurred_at.get(),
            }),
            payload: payload.map(|(request, response)| EventPayload { event_id, request, response }),
        }))
    })
}

/// Keep a prompt and response with an event; a second write for the same event is ignored.
pub(crate) fn store_payload(conn: &mut Conn, p: &EventPayload) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        diesel::insert_into(event_payloads::table)
            .values((
                event_payloads::event_id.eq(DbUuid(p.event_id)),
                event_payloads::request.eq(p.request.clone()),
                event_payloads::response.eq(p.response.clone()),
                event_payloads::created_at.eq(DbTime::now()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        Ok(())
    })
}

/// A value from `store_meta`.
pub(crate) fn meta(conn: &mut Conn, key: &str) -> Result<Option<String>, StoreError> {
    Ok(store_meta::table
        .filter(store_meta::meta_key.eq(key))
        .select(store_meta::meta_value)
        .first(conn)
        .optional()?)
}

/// Set a value in `store_meta`.
pub(crate) fn set_meta(conn: &mut Conn, key: &str, value: &str) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        diesel::delete(store_meta::table.filter(store_meta::meta_key.eq(key))).execute(conn)?;
        diesel::insert_into(store_meta::table)
            .values((store_meta::meta_key.eq(key), store_meta::meta_value.eq(value)))
            .execute(conn)?;
        Ok(())
    })
}

/// An event as the rebuild reads it.
type RebuildTuple = (i64, DbUuid, String, i64, DbDecimal, DbTime, Option<DbUuid>, Option<String>, bool);

/// Recompute every rollup row from the events, in one write transaction.
pub(crate) fn rebuild_rollups(conn: &mut Conn) -> Result<u64, StoreError> {
    write_tx(conn, |conn| {
        super::lock_rollups(conn)?;
        // Months whose events were archived keep their rollups (the events are no longer here to
        // recount; late events of those months were added to them as they came).
        let archived: Vec<crate::sql_types::DbTime> = archive_months::table
            .filter(archive_months::status.eq(crate::archive::ArchiveStatus::Archived.as_str()))
            .select(archive_months::month)
            .load::<String>(conn)?
            .iter()
            .map(|m| {
                chrono::NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
                    .map(|d| crate::sql_types::DbTime::new(d.and_time(chrono::NaiveTime::MIN).and_utc()))
                    .map_err(|e| StoreError::Invalid(format!("archive month {m:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let archived_set: std::collections::HashSet<i64> = archived.iter().map(|t| t.get().timestamp_micros()).collect();
        diesel::delete(usage_rollups::table.filter(usage_rollups::month.ne_all(archived.clone()))).execute(conn)?;
        let mut deltas = crate::repo::RollupDeltas::new();
        let mut after: i64 = i64::MIN;
        let mut events: u64 = 0;
        loop {
            let rows: Vec<RebuildTuple> =
                api_events::table
                    .filter(api_events::event_seq.gt(after))
                    .order(api_events::event_seq.asc())
                    .limit(REBUILD_CHUNK)
                    .select((
                        api_events::event_seq,
                        api_events::event_id,
                        api_events::user_id,
                        api_events::model_id,
                        api_events::cost_total,
                        api_events::occurred_at,
                        api_events::key_id,
                        api_events::task,
                        api_events::successful,
                    ))
                    .load(conn)?;
            let Some(last) = rows.last() else { break };
            after = last.0;
            let ids: Vec<DbUuid> = rows.iter().map(|r| r.1).collect();
            let lines = super::lines_by_event(conn, &ids)?;
            for (_, id, user, model_id, total, at, key, task, ok) in &rows {
                let day = crate::repo::utc_day(at.get());
                if archived_set.contains(&crate::repo::month_of(day).get().timestamp_micros()) {
                    continue;
                }
                let of_event = lines.get(&id.0).map(Vec::as_slice).unwrap_or_default();
                crate::repo::add_event_to_rollups(
                    &mut deltas,
                    crate::repo::utc_day(at.get()),
                    user,
                    *model_id,
                    key.map(|k| k.0),
                    task.as_deref(),
                    *ok,
                    &of_event.iter().map(|l| (l.kind.as_str().to_string(), l.quantity, l.amount)).collect::<Vec<_>>(),
                    total.0,
                );
                events += 1;
            }
        }
        super::add_rollup_deltas(conn, &deltas)?;
        Ok(events)
    })
}
