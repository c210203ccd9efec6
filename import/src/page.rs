//! Cursor pagination shared by both providers: the same query again with `page=<next_page>`
//! while `has_more` is true (reference §1.4, §2.4). No pause between pages: both providers
//! allow a short burst for paginated reads.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ImportError;
use crate::http::Client;
use crate::model::{CostItem, UsageBucket};
use crate::wire::{invalid, Obj};

/// One report bucket: its start, its end (after the start) and its result objects.
pub(crate) type Bucket<'a> = (DateTime<Utc>, DateTime<Utc>, Vec<Obj<'a>>);

/// How a provider reads one result object of a bucket (given the bucket's start and end).
pub(crate) type ReadItem<T> = for<'r, 'a> fn(&'r Obj<'a>, DateTime<Utc>, DateTime<Utc>) -> Result<T, ImportError>;

/// The usage items of a page's buckets (read by the provider's `item`), appended to `usage`;
/// a group that `seen` already holds (the same bucket and group twice in one report) is an error.
pub(crate) fn push_usage(
    buckets: Vec<Bucket<'_>>,
    seen: &mut HashSet<Uuid>,
    usage: &mut Vec<UsageBucket>,
    item: ReadItem<Option<UsageBucket>>,
) -> Result<(), ImportError> {
    for (start, end, results) in buckets {
        for r in results {
            if let Some(u) = item(&r, start, end)? {
                if !seen.insert(u.event_id()) {
                    return Err(invalid(r.endpoint(), r.path(), format!("repeats group {} of the bucket", u.group_key())));
                }
                usage.push(u);
            }
        }
    }
    Ok(())
}

/// The cost items of a page's buckets (read by the provider's `item`), appended to `costs`.
pub(crate) fn push_costs(
    buckets: Vec<Bucket<'_>>,
    costs: &mut Vec<CostItem>,
    item: ReadItem<CostItem>,
) -> Result<(), ImportError> {
    for (start, end, results) in buckets {
        for r in results {
            costs.push(item(&r, start, end)?);
        }
    }
    Ok(())
}

/// Pages one report may have at most: a cursor that never ends is an error, not a loop.
pub const MAX_PAGES: usize = 10_000;

/// Percent-encode a query value (cursors are opaque; base64 may hold `+`, `/`, `=`).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The envelope of a page: `has_more` (a boolean), `next_page` (present, string or null), and
/// `data` checked to be an array.
pub(crate) fn envelope(page: &Obj<'_>) -> Result<(bool, Option<String>), ImportError> {
    let has_more = page.boolean("has_more")?;
    let next = page.nullable_string("next_page")?;
    page.array("data")?;
    Ok((has_more, next))
}

/// Read every page of `endpoint?query`; `each` gets the envelope of each page (its `data` is
/// checked to be an array, `has_more` a boolean, `next_page` present). Returns the page count.
pub(crate) async fn read_all(
    client: &Client,
    endpoint: &'static str,
    query: &str,
    mut each: impl FnMut(&Obj<'_>) -> Result<(), ImportError>,
) -> Result<usize, ImportError> {
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path_and_query = match &cursor {
            Some(c) => format!("{endpoint}?{query}&page={}", encode(c)),
            None => format!("{endpoint}?{query}"),
        };
        let body = client.get(endpoint, &path_and_query).await?;
        pages += 1;
        // Errors name the page after the first, so a bad page 7 is found quickly.
        let label = if pages == 1 { endpoint.to_string() } else { format!("{endpoint} (page {pages})") };
        let page = Obj::body(&label, &body)?;
        let (has_more, next) = envelope(&page)?;
        each(&page)?;
        match (has_more, next) {
            (false, _) => return Ok(pages),
            (true, Some(next)) if !next.is_empty() => cursor = Some(next),
            (true, _) => return Err(invalid(&label, "next_page", "is empty while has_more is true")),
        }
        if pages >= MAX_PAGES {
            return Err(invalid(endpoint, "next_page", format!("still has_more after {MAX_PAGES} pages")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_percent_encoded() {
        assert_eq!(encode("page_MjAyNS0wNS0xNFQwMDowMDowMFo="), "page_MjAyNS0wNS0xNFQwMDowMDowMFo%3D", "padding is encoded");
        assert_eq!(encode("a+b/c d"), "a%2Bb%2Fc%20d", "plus, slash and space are encoded");
    }
}
