//! Admin tokens: operator credentials for the management API in `token` mode, stored as hashes.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::error::StoreError;
use crate::sql_types::{DbTime, DbUuid};
use crate::store::{run, Store};

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Admin tokens (`tally admin-token create`): only a hash of the token is stored.
    admin_tokens (token_id) {
        token_id -> UuidKey,
        public_id -> Text,
        secret_hash -> Text,
        name -> Text,
        created_at -> UtcInstant,
        revoked_at -> Nullable<UtcInstant>,
    }
}

/// An admin token as stored (no secret: only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminTokenRecord {
    /// Id (UUIDv7).
    pub token_id: Uuid,
    /// The public part of `tat-<public_id>-<secret>`, unique.
    pub public_id: String,
    /// Hex SHA-256 of the whole token string.
    #[serde(skip)]
    pub secret_hash: String,
    /// Label.
    pub name: String,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Set once revoked (refused from then on).
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An `admin_tokens` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = admin_tokens, treat_none_as_default_value = false)]
pub(crate) struct AdminTokenRow {
    pub token_id: DbUuid,
    pub public_id: String,
    pub secret_hash: String,
    pub name: String,
    pub created_at: DbTime,
    pub revoked_at: Option<DbTime>,
}

impl From<AdminTokenRow> for AdminTokenRecord {
    fn from(r: AdminTokenRow) -> Self {
        AdminTokenRecord {
            token_id: r.token_id.0,
            public_id: r.public_id,
            secret_hash: r.secret_hash,
            name: r.name,
            created_at: r.created_at.get(),
            revoked_at: r.revoked_at.map(DbTime::get),
        }
    }
}

impl Store {
    /// Store a new admin token (its hash). A taken public id: `Conflict`.
    pub fn create_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError> {
        run!(self, write, admin::create_admin_token(token))
    }

    /// One admin token by its public id.
    pub fn admin_token_by_public_id(&self, public_id: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
        run!(self, read, admin::admin_token_by_public_id(public_id))
    }

    /// Every admin token, oldest first.
    pub fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        run!(self, read, admin::list_admin_tokens())
    }

    /// Revoke an admin token by its public id (idempotent). Unknown: `NotFound`.
    pub fn revoke_admin_token(&self, public_id: &str, at: DateTime<Utc>) -> Result<AdminTokenRecord, StoreError> {
        run!(self, write, admin::revoke_admin_token(public_id, at))
    }
}
