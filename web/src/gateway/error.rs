//! GatewayError: what the gateway answers when it refuses or fails a call, in the provider's own error shape.
//!
//! OpenAI routes answer `{"error":{"message","type","param","code"}}`; `/v1/messages`
//! answers `{"type":"error","error":{"type","message"}}`. Tally's stable code goes in
//! `code` (OpenAI) and `type` (Anthropic), so SDKs surface it as the error's type.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

/// Which wire format an error is answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// OpenAI's error object.
    OpenAi,
    /// Anthropic's error object.
    Anthropic,
}

/// A refused or failed gateway call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// Bad body or parameter (400).
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
        /// The offending field, when one is to blame.
        param: Option<String>,
    },
    /// Missing, unknown, revoked or expired key (401).
    #[error("{message}")]
    Unauthorized {
        /// Stable code.
        code: &'static str,
        /// Explanation (never contains the key).
        message: String,
    },
    /// A budget cannot hold the request's upper-bound cost (402).
    #[error("Budget exceeded: the {period} budget of {max} USD has {remaining} USD left (requested up to {requested} USD); it resets at {resets_at}.")]
    BudgetExceeded {
        /// The budget's period.
        period: String,
        /// Its limit.
        max: Decimal,
        /// What is left (never negative).
        remaining: Decimal,
        /// The request's upper-bound cost.
        requested: Decimal,
        /// When the window ends.
        resets_at: DateTime<Utc>,
    },
    /// The key may not use this model (403).
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// Unknown model (404).
    #[error("The model `{0}` does not exist or is not in Tally's catalogue.")]
    UnknownModel(String),
    /// Body too large (413).
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// Over the key's requests-per-minute limit (429).
    #[error("Rate limit of {limit} requests per minute reached for this key.")]
    RateLimited {
        /// The limit.
        limit: i64,
        /// Seconds until the next minute.
        retry_after_secs: u64,
    },
    /// The upstream could not be reached or failed without an answer (502).
    #[error("{0}")]
    Upstream(String),
    /// A dependency of the gateway (budget store, database) is down: fail closed (503).
    #[error("{message}")]
    Unavailable {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A bug (500).
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    /// 400 with a code and the field to blame.
    pub fn invalid(code: &'static str, message: impl Into<String>, param: Option<&str>) -> Self {
        GatewayError::Invalid { code, message: message.into(), param: param.map(str::to_string) }
    }

    /// HTTP status, one arm per variant.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Invalid { .. } => StatusCode::BAD_REQUEST,
            GatewayError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::BudgetExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
            GatewayError::Forbidden { .. } => StatusCode::FORBIDDEN,
            GatewayError::UnknownModel(_) => StatusCode::NOT_FOUND,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Invalid { code, .. }
            | GatewayError::Unauthorized { code, .. }
            | GatewayError::Forbidden { code, .. }
            | GatewayError::Unavailable { code, .. } => code,
            GatewayError::BudgetExceeded { .. } => "budget_exceeded",
            GatewayError::UnknownModel(_) => "model_not_found",
            GatewayError::TooLarge(_) => "payload_too_large",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::Upstream(_) => "upstream_unavailable",
            GatewayError::Internal(_) => "internal",
        }
    }

    /// OpenAI's `type` for this error.
    fn openai_type(&self) -> &'static str {
        match self {
            GatewayError::Invalid { .. } | GatewayError::UnknownModel(_) | GatewayError::TooLarge(_) => {
                "invalid_request_error"
            }
            GatewayError::Unauthorized { .. } => "authentication_error",
            GatewayError::BudgetExceeded { .. } => "budget_exceeded",
            GatewayError::Forbidden { .. } => "permission_error",
            GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::Upstream(_) | GatewayError::Unavailable { .. } | GatewayError::Internal(_) => "api_error",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::Invalid { param, .. } => param.as_deref(),
            GatewayError::UnknownModel(_) => Some("model"),
            _ => None,
        }
    }

    /// The JSON body in the given shape.
    pub fn body(&self, shape: ErrorShape) -> serde_json::Value {
        match shape {
            ErrorShape::OpenAi => json!({
                "error": {
                    "message": self.to_string(),
                    "type": self.openai_type(),
                    "param": self.param(),
                    "code": self.code(),
                }
            }),
            ErrorShape::Anthropic => json!({
                "type": "error",
                "error": { "type": self.code(), "message": self.to_string() }
            }),
        }
    }

    /// The full HTTP answer in the given shape, with `Retry-After` and budget headers where they apply.
    pub fn response(&self, shape: ErrorShape) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status());
        match self {
            GatewayError::BudgetExceeded { remaining, resets_at, max, period, .. } => {
                resp.insert_header(("x-tally-budget-remaining", remaining.to_string()))
                    .insert_header(("x-tally-budget-limit", max.to_string()))
                    .insert_header(("x-tally-budget-period", period.clone()))
                    .insert_header(("x-tally-budget-reset", resets_at.to_rfc3339()));
            }
            GatewayError::RateLimited { retry_after_secs, .. } => {
                resp.insert_header(("retry-after", retry_after_secs.to_string()));
            }
            GatewayError::Unavailable { .. } => {
                resp.insert_header(("retry-after", "1"));
            }
            _ => {}
        }
        resp.json(self.body(shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_exceeded_bodies_name_the_code_in_both_shapes() {
        let e = GatewayError::BudgetExceeded {
            period: "daily".into(),
            max: Decimal::new(5, 0),
            remaining: Decimal::new(1, 2),
            requested: Decimal::new(3, 2),
            resets_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        assert_eq!(e.status(), StatusCode::PAYMENT_REQUIRED, "over budget is 402, not 429");
        let o = e.body(ErrorShape::OpenAi);
        assert_eq!(o["error"]["code"], "budget_exceeded", "OpenAI body carries the code");
        assert_eq!(o["error"]["type"], "budget_exceeded", "OpenAI body carries the type");
        assert!(o["error"]["message"].as_str().is_some_and(|m| m.contains("0.01")), "remaining is in the message");
        let a = e.body(ErrorShape::Anthropic);
        assert_eq!(a["type"], "error", "Anthropic envelope");
        assert_eq!(a["error"]["type"], "budget_exceeded", "Anthropic body carries the code as its type");
    }

    #[test]
    fn invalid_names_its_param() {
        let e = GatewayError::invalid("invalid_max_tokens", "max_tokens must be positive", Some("max_tokens"));
        assert_eq!(e.body(ErrorShape::OpenAi)["error"]["param"], "max_tokens", "param is set");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "400");
    }
}
