// admin-token queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and
// `postgres.rs` each include it in an `admin` submodule.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::{write_tx, Conn};
use crate::admin::{admin_tokens, AdminTokenRecord, AdminTokenRow};
use crate::error::StoreError;
use crate::sql_types::{DbTime, DbUuid};

/// Insert a token; a taken public id is a `Conflict`.
pub(crate) fn create_admin_token(conn: &mut Conn, t: &AdminTokenRecord) -> Result<(), StoreError> {
    let row = AdminTokenRow {
        token_id: DbUuid(t.token_id),
        public_id: t.public_id.clone(),
        secret_hash: t.secret_hash.clone(),
        name: t.name.clone(),
        created_at: DbTime::new(t.created_at),
        revoked_at: t.revoked_at.map(DbTime::new),
    };
    write_tx(conn, |conn| {
        let taken: Option<DbUuid> = admin_tokens::table
            .filter(admin_tokens::public_id.eq(&t.public_id))
            .select(admin_tokens::token_id)
            .first(conn)
            .optional()?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!("admin token {} exists", t.public_id)));
        }
        diesel::insert_into(admin_tokens::table).values(&row).execute(conn)?;
        Ok(())
    })
}

/// One token by public id.
pub(crate) fn admin_token_by_public_id(conn: &mut Conn, public_id: &str) -> Result<Option<AdminTokenRecord>, StoreError> {
    let row: Option<AdminTokenRow> = admin_tokens::table
        .filter(admin_tokens::public_id.eq(public_id))
        .select(AdminTokenRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(AdminTokenRecord::from))
}

/// Every token, oldest first.
pub(crate) fn list_admin_tokens(conn: &mut Conn) -> Result<Vec<AdminTokenRecord>, StoreError> {
    let rows: Vec<AdminTokenRow> = admin_tokens::table
        .select(AdminTokenRow::as_select())
        .order((admin_tokens::created_at.asc(), admin_tokens::token_id.asc()))
        .load(conn)?;
    Ok(rows.into_iter().map(AdminTokenRecord::from).collect())
}

/// Revoke (keeping the first revocation instant).
pub(crate) fn revoke_admin_token(conn: &mut Conn, public_id: &str, at: DateTime<Utc>) -> Result<AdminTokenRecord, StoreError> {
    write_tx(conn, |conn| {
        let row: Option<AdminTokenRow> = admin_tokens::table
            .filter(admin_tokens::public_id.eq(public_id))
            .select(AdminTokenRow::as_select())
            .first(conn)
            .optional()?;
        let Some(mut row) = row else { return Err(StoreError::NotFound(format!("admin token {public_id}"))) };
        if row.revoked_at.is_none() {
            diesel::update(admin_tokens::table.filter(admin_tokens::public_id.eq(public_id)))
                .set(admin_tokens::revoked_at.eq(Some(DbTime::new(at))))
                .execute(conn)?;
            row.revoked_at = Some(DbTime::new(at));
        }
        Ok(row.into())
    })
}
