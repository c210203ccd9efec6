//! Drift alerts: after an import, every day and model whose reconciliation is beyond tolerance
//! raises one alert through the alert channels (once per provider, day and model: a durable
//! mark, so re-runs and other nodes stay quiet).

use chrono::{NaiveTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use tally_actors::notify::{Alert, Notifier};
use uuid::Uuid;

use super::{ProviderImports, ReconciliationView};
use crate::routes::providers::DEFAULT_TOLERANCE_PCT;

/// Days back that are checked after each scheduled import (late data settles within hours).
pub const DRIFT_DAYS: i64 = 2;

/// `source` of drift alerts.
pub const SOURCE_RECONCILIATION: &str = "reconciliation";

/// The id drift marks are kept under for a provider (stable, so marks hold across restarts).
fn subject(provider: &str) -> Uuid {
    match provider {
        "anthropic" => Uuid::from_u128(0x7a11_7a11_0000_4000_8000_0000_0000_0001),
        _ => Uuid::from_u128(0x7a11_7a11_0000_4000_8000_0000_0000_0002),
    }
}

fn describe(r: &ReconciliationView) -> String {
    format!(
        "{} {}: reported cost {}, Tally-priced {}, metered {}; beyond tolerance: {}",
        r.date,
        r.model.as_deref().unwrap_or("(no model)"),
        r.reported_cost.as_deref().unwrap_or("none"),
        r.tally_priced_cost,
        r.metered_cost,
        r.flags.join(", ")
    )
}

/// Check the last [`DRIFT_DAYS`] of `provider` and alert once for each flagged day and model.
/// Returns how many alerts went out.
pub async fn alert_drift(imports: &ProviderImports, notifier: &Notifier, provider: &str) -> Result<usize, String> {
    let to = Utc::now().date_naive();
    let from = to - TimeDelta::days(DRIFT_DAYS - 1);
    let rows = imports.reconciliation(provider, from, to, DEFAULT_TOLERANCE_PCT).await.map_err(|e| e.to_string())?;
    let mut sent = 0;
    for r in rows.iter().filter(|r| r.flagged) {
        let Ok(day) = chrono::NaiveDate::parse_from_str(&r.date, "%Y-%m-%d") else { continue };
        let threshold = format!("drift:{}", r.model.as_deref().unwrap_or(""));
        let store = imports.store().clone();
        let at = day.and_time(NaiveTime::MIN).and_utc();
        let id = subject(provider);
        let diff: Decimal = r.cost_diff.as_deref().and_then(|d| d.parse().ok()).unwrap_or_default();
        let first = actix_web::web::block(move || store.mark_fired(id, at, &threshold, diff))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if !first {
            continue;
        }
        notifier
            .send(Alert {
                source: SOURCE_RECONCILIATION.to_string(),
                subject_id: Some(provider.to_string()),
                kind: "drift".to_string(),
                title: format!("Tally: {provider} usage differs from Tally's metering on {}", r.date),
                text: describe(r),
                data: serde_json::json!({"provider": provider, "row": r}),
                emails: Vec::new(),
                webhook_url: None,
            })
            .await;
        sent += 1;
    }
    Ok(sent)
}

