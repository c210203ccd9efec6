//! Cursor pagination shared by both providers: the same query again with `page=<next_page>`
//! while `has_more` is true (reference §1.4, §2.4). No pause between pages: both providers
//! allow a short burst for paginated reads.

use crate::error::ImportError;
use crate::http::Client;
use crate::wire::{invalid, Obj};

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
