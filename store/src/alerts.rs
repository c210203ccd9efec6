//! Budget-alert records: alert budgets, fired marks and the delivery log.
