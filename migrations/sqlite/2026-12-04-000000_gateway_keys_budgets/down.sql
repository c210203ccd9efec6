DROP TABLE budget_alerts;
DROP TABLE gateway_requests;
DROP TABLE budgets;
DROP TABLE virtual_keys;
