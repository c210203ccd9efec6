//! Entry point for the fuzz targets (`fuzz/`): one report page read as a fetch reads it.
//!
//! Not an API: hidden from the docs. [`read_page`] runs the page envelope checks and the
//! provider's usage or cost parsing on one body, the code `fetch` runs on every page.

use std::collections::HashSet;

use crate::error::ImportError;
use crate::model::{CostItem, UsageBucket};
use crate::page::envelope;
use crate::wire::Obj;
use crate::{anthropic, openai};

/// Which report a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportPage {
    /// Anthropic `usage_report/messages`.
    AnthropicUsage,
    /// Anthropic `cost_report`.
    AnthropicCost,
    /// OpenAI `usage/completions`.
    OpenAiUsage,
    /// OpenAI `costs`.
    OpenAiCost,
}

impl ReportPage {
    /// Every report.
    pub const ALL: [ReportPage; 4] =
        [ReportPage::AnthropicUsage, ReportPage::AnthropicCost, ReportPage::OpenAiUsage, ReportPage::OpenAiCost];

    fn endpoint(self) -> &'static str {
        match self {
            ReportPage::AnthropicUsage => anthropic::USAGE_PATH,
            ReportPage::AnthropicCost => anthropic::COST_PATH,
            ReportPage::OpenAiUsage => openai::USAGE_PATH,
            ReportPage::OpenAiCost => openai::COST_PATH,
        }
    }
}

/// What one page held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// `has_more`.
    pub has_more: bool,
    /// `next_page`.
    pub next_page: Option<String>,
    /// Usage buckets (usage reports).
    pub usage: Vec<UsageBucket>,
    /// Cost items (cost reports).
    pub costs: Vec<CostItem>,
}

/// Read one page `body` of `report`, as a fetch reads each page.
pub fn read_page(report: ReportPage, body: &str) -> Result<Page, ImportError> {
    let endpoint = report.endpoint();
    let page = Obj::body(endpoint, body)?;
    let (has_more, next_page) = envelope(&page)?;
    let mut out = Page { has_more, next_page, ..Page::default() };
    let mut seen = HashSet::new();
    match report {
        ReportPage::AnthropicUsage => anthropic::usage_page(&page, &mut seen, &mut out.usage)?,
        ReportPage::AnthropicCost => anthropic::cost_page(&page, &mut out.costs)?,
        ReportPage::OpenAiUsage => openai::usage_page(&page, &mut seen, &mut out.usage)?,
        ReportPage::OpenAiCost => openai::cost_page(&page, &mut out.costs)?,
    }
    Ok(out)
}
