// Shapes of the Tally HTTP API. Money and quantities are decimal strings, never numbers.

/** A decimal amount of US dollars as the API sends it, e.g. "0.0002672". */
export type Money = string;
/** A decimal quantity (tokens, images, pixels...) as the API sends it. */
export type Quantity = string;

export interface ApiErrorBody {
  code: string;
  message: string;
}

export interface User {
  user_id: string;
  username: string | null;
  email: string | null;
  created_at: string;
}

export interface Thread {
  thread_id: string;
  user_id: string;
  title: string;
  model: string;
  created_at: string;
  updated_at: string;
  is_active: boolean;
  total_cost: Money;
}

export interface CostLine {
  kind: string;
  unit: 'tokens' | 'units' | string;
  quantity: Quantity;
  unit_price: Money;
  price_version_id: string;
  amount: Money;
}

export interface Cost {
  lines: CostLine[];
  total: Money;
}

export type Role = 'user' | 'assistant';
export type MessageStatus = 'complete' | 'interrupted' | 'failed';

export interface MessageView {
  message_id: string;
  thread_id: string;
  user_id: string;
  role: Role;
  content: string;
  model: string;
  created_at: string;
  simulated: boolean;
  status: MessageStatus;
  usage: Record<string, Quantity> | null;
  cost: Cost | null;
  cost_by_kind: Record<string, Money>;
  cost_total: Money;
  thread_total_after: Money;
}

export interface ThreadDetail extends Thread {
  messages: MessageView[];
}

export interface History {
  thread_id: string;
  total_cost: Money;
  messages: MessageView[];
}

export interface KindTotal {
  quantity: Quantity;
  amount: Money;
}

export interface CostSummary {
  total_cost: Money;
  invoiced_cost: Money;
  uninvoiced_cost: Money;
  by_kind: Record<string, KindTotal>;
  by_model: Record<string, Money>;
  by_thread: Record<string, Money>;
  by_message: Record<string, Money>;
  event_count: number;
}

export interface Metrics {
  user_id: string;
  thread_id?: string;
  model?: string;
  metrics: CostSummary;
}

export interface InvoiceLine {
  id: string;
  message_id: string | null;
  event_id: string;
  thread_id: string | null;
  kind: string;
  unit: string;
  quantity: Quantity;
  unit_price: Money;
  price_version_id: string;
  amount: Money;
  occurred_at: string;
}

export interface Invoice {
  id: string;
  user_id: string;
  thread_id: string | null;
  period_start: string | null;
  period_end: string | null;
  lines: InvoiceLine[];
  subtotal: Money;
  total: Money;
  status: 'pending' | 'paid' | string;
  created_at: string;
}

/** One priced line of a usage event as the usage log serves it. */
export interface UsageEventLine {
  kind: string;
  quantity: Quantity;
  unit_price: Money;
  amount: Money;
  price_version_id: string;
}

/** One event of the usage log (`GET /api/usage/events`). */
export interface UsageEvent {
  event_id: string;
  event_seq: number;
  user_id: string;
  thread_id: string | null;
  message_id: string | null;
  model: string;
  provider: string | null;
  event_type: string;
  source: string;
  task: string | null;
  key_id: string | null;
  was_successful: boolean;
  idempotency_key: string | null;
  occurred_at: string;
  /** Total of the lines. */
  cost: Money;
  lines: UsageEventLine[];
}

/** A page of the usage log; follow `next_cursor` (null: no more). */
export interface UsageEventPage {
  events: UsageEvent[];
  next_cursor: string | null;
}

export interface PriceVersion {
  id: string;
  model: string;
  kind: string;
  price: Money;
  effective_from: string;
  effective_to: string | null;
  is_current: boolean;
  /** When someone last confirmed the price against the provider's list (null: never; absent on older servers). */
  verified_at?: string | null;
  /** Not verified for the server's stale window (absent on older servers). */
  stale?: boolean;
}

export interface Model {
  /** Surrogate key; threads and prices refer to a model by `name`. */
  model_id: number | string;
  /** API model id, e.g. "claude-3-5-haiku-20241022". */
  name: string;
  provider: string;
  description: string | null;
  is_active: boolean;
  is_default: boolean;
  simulated: boolean;
  prices: PriceVersion[];
}

export interface PriceChange {
  closed: PriceVersion | null;
  created: PriceVersion;
}

// --- POST /api/messages/stream events ---

export interface StreamStart {
  user_message: MessageView;
  assistant_message_id: string;
  model: string;
  simulated: boolean;
}

export interface StreamDelta {
  text: string;
}

/** Live token counts while streaming (numbers here, only for display of counts). */
export interface StreamUsage {
  usage: Record<string, number | string>;
}

export interface StreamDone {
  user_message: MessageView;
  assistant_message: MessageView;
  thread_total: Money;
  simulated: boolean;
  error: string | null;
}

// --- GET /api/dashboard/stream ---

export interface Snapshot {
  generated_at: string;
  total_cost: Money;
  event_count: number;
  events_per_second: string;
  last_event_at: string | null;
  by_user: { user_id: string; cost: Money; events: number }[];
  by_thread: { thread_id: string; user_id: string; cost: Money; events: number }[];
  by_model: { model: string; cost: Money; events: number }[];
  by_kind: { kind: string; unit: string; quantity: Quantity; cost: Money }[];
  /** Gateway spend per virtual key (absent from servers without the gateway). */
  by_key?: KeyCostRow[];
}

/** One gateway key's total on the dashboard. */
export interface KeyCostRow {
  key_id: string;
  /** The key's label, when the server sends it. */
  name?: string | null;
  user_id?: string | null;
  cost: Money;
  /** Calls billed to the key (`requests` on some servers). */
  events?: number;
  requests?: number;
}

export interface DashboardUsage {
  event_id: string;
  user_id: string;
  thread_id: string | null;
  message_id: string | null;
  model: string;
  occurred_at: string;
  committed_at: string;
  cost: Cost;
}

// --- gateway: virtual keys and budgets ---

export type BudgetPeriod = 'daily' | 'weekly' | 'monthly';
export type KeyStatus = 'active' | 'revoked' | 'expired';

/** A budget with its current window, as the server reports it. */
export interface BudgetView {
  budget_id: string;
  scope: 'key' | 'user';
  /** The key id or the user id. */
  scope_id: string;
  period: BudgetPeriod | string;
  max_budget: Money;
  /** Fraction of `max_budget` (e.g. "0.8") past which an alert is sent; null: no alert. */
  alert_threshold: string | null;
  enabled: boolean;
  /** IANA zone of the budget's calendar. */
  timezone: string;
  spent: Money;
  /** Held by calls in flight. */
  reserved: Money;
  /** `max - spent - reserved`, never below zero. */
  remaining: Money;
  period_start: string;
  /** Exclusive: when the window resets. */
  period_end: string;
  alert_state: 'ok' | 'alerted' | 'exceeded' | string;
}

/** A virtual key as listed (never the secret). */
export interface KeyView {
  key_id: string;
  public_id: string;
  user_id: string;
  name: string;
  /** null: every model. */
  allowed_models: string[] | null;
  expires_at: string | null;
  rpm_limit: number | null;
  created_at: string;
  revoked_at: string | null;
  status: KeyStatus | string;
  budgets: BudgetView[];
}

/** The answer to create and rotate: the key with its secret, shown once. */
export interface KeyWithSecret extends KeyView {
  key: string;
}

/** A budget to set (`PUT /api/billing/budget/{key_id}`, or one of a new key's budgets). */
export interface BudgetInput {
  max_budget: Money;
  period: BudgetPeriod;
  alert_threshold?: string | null;
  enabled?: boolean;
  timezone?: string;
}

/** Body of `POST /api/keys`. */
export interface CreateKeyRequest {
  user_id: string;
  name: string;
  allowed_models: string[] | null;
  expires_at: string | null;
  rpm_limit: number | null;
  budgets: BudgetInput[];
}

/** `GET /api/billing/budget/{key_id}`. */
export interface KeyBudgets {
  key_id: string;
  budgets: BudgetView[];
}

/** `GET /api/billing/spend/{key_id}?period=`. */
export interface KeySpend {
  key_id: string;
  period: BudgetPeriod | string;
  period_start: string;
  period_end: string;
  total_cost: Money;
  total_requests: number;
  total_tokens: number;
  by_model: Record<string, Money>;
  by_provider: Record<string, Money>;
}

// --- analytics (docs/analytics-api.md) ---

/** Totals of a set of usage events. Rates and averages are null when there were no requests. */
export interface Figures {
  requests: number;
  failed: number;
  success_rate: string | null;
  cost: Money;
  avg_cost_per_request: Money | null;
  /** Every token kind, "0" when none. */
  tokens: Record<string, Quantity>;
  /** Resource kinds, only when present. */
  resources?: Record<string, Quantity>;
  cost_by_kind: Record<string, Money>;
}

/** Filters of the analytics endpoints (absent or empty: all). */
export interface AnalyticsFilters {
  user_id?: string;
  provider?: string;
  model?: string;
  key_id?: string;
  task?: string;
}

/** A day range (inclusive, UTC) with filters. */
export interface AnalyticsQuery extends AnalyticsFilters {
  date_from: string;
  date_to: string;
}

export interface AnalyticsSummary {
  date_from: string;
  date_to: string;
  filters: Record<string, string | null>;
  figures: Figures;
}

/** One row of a breakdown; which label fields are present depends on the endpoint. */
export interface AnalyticsGroup {
  user_id?: string;
  model?: string;
  provider?: string;
  key_id?: string | null;
  key_name?: string | null;
  task?: string | null;
  figures: Figures;
}

export interface AnalyticsGroups {
  date_from: string;
  date_to: string;
  groups: AnalyticsGroup[];
}

export type TrendPeriod = 'daily' | 'weekly' | 'monthly';

export interface TrendBucket {
  /** First day of the bucket (clipped to the range). */
  start: string;
  /** Last day, inclusive. */
  end: string;
  figures: Figures;
  split?: Record<string, Figures>;
}

export interface Trends {
  period: TrendPeriod;
  date_from: string;
  date_to: string;
  buckets: TrendBucket[];
}

// --- forecasts ---

export interface ForecastPoint {
  date: string;
  mean: Money;
  lower_80: Money;
  upper_80: Money;
  lower_95: Money;
  upper_95: Money;
}

export interface Forecast {
  scope: string;
  horizon: number;
  method: string;
  trained_at: string;
  data_from: string;
  data_to: string;
  history_days: number;
  history: { date: string; cost: Money }[];
  points: ForecastPoint[];
  total_mean: Money;
  total_lower_95: Money;
  total_upper_95: Money;
}

// --- budgets with alerts ---

export type AlertScopeKind = 'all' | 'provider' | 'model' | 'user' | 'key';

/** Body of `POST /api/budgets`. */
export interface AlertBudgetInput {
  name: string;
  amount: Money;
  period: BudgetPeriod;
  scope: { kind: AlertScopeKind; value: string | null };
  /** Percentages of the amount at which to alert. */
  thresholds: number[];
  emails: string[];
  webhook_url: string | null;
  enabled: boolean;
}

export interface AlertBudget extends Omit<AlertBudgetInput, 'thresholds' | 'period' | 'scope'> {
  budget_id: string;
  period: BudgetPeriod | string;
  scope: { kind: AlertScopeKind | string; value: string | null };
  /** Numbers or decimal strings, as the server sends them. */
  thresholds: (number | string)[];
  created_at: string;
  updated_at: string;
}

export type BudgetStatus = 'ok' | 'warning' | 'exceeded';

/** A budget's current window (`GET /api/budgets/check`). */
export interface BudgetCheck {
  budget: AlertBudget;
  window_start: string;
  window_end: string;
  spent: Money;
  percent_used: string | null;
  remaining: Money;
  projected_spend: Money | null;
  projected_breach_date: string | null;
  thresholds_fired: string[];
  status: BudgetStatus | string;
}

export interface BudgetCheckReport {
  checked_at: string;
  budgets: BudgetCheck[];
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface Delivery {
  delivery_id: string;
  source: 'budget' | 'key_budget' | 'price' | 'test' | string;
  subject_id: string | null;
  alert_kind: string;
  channel: 'email' | 'webhook' | 'log' | string;
  target: string | null;
  status: DeliveryStatus | string;
  attempts: number;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}

// --- provider connections and reconciliation (issue 14) ---

/** A provider whose usage and cost reports Tally imports. */
export type ProviderName = 'anthropic' | 'openai';

/** A provider connection as the API shows it: the admin key masked (`sk-...abcd`), never in clear. */
export interface ProviderConnection {
  connection_id: string;
  provider: ProviderName | string;
  name: string;
  base_url: string;
  /** Masked: `sk-...abcd`. */
  admin_key: string;
  created_at: string;
  last_run_at: string | null;
  /** `success` / `failed` / null before the first run. */
  last_status: string | null;
  last_error: string | null;
  enabled: boolean;
}

/** Body of `POST /api/providers`. */
export interface ProviderConnectionInput {
  provider: ProviderName;
  name: string;
  admin_key: string;
  base_url?: string;
}

/** One import run of a connection. */
export interface ImportRun {
  run_id: string;
  connection_id: string;
  /** `schedule`, `manual` or `backfill`. */
  trigger: string;
  range_from: string;
  range_to: string;
  started_at: string;
  finished_at: string | null;
  /** `running`, `success` or `failed`. */
  status: string;
  pages: number;
  buckets: number;
  events_new: number;
  events_revised: number;
  events_unchanged: number;
  skipped: number;
  costs: number;
  error: string | null;
}

/** One day and model of a reconciliation: provider-reported against Tally-metered. */
export interface ReconciliationRow {
  date: string;
  /** null: provider cost Tally could not attribute to a model. */
  model: string | null;
  reported_tokens: Record<string, string>;
  metered_tokens: Record<string, string>;
  /** Metered minus reported, by kind. */
  token_diff: Record<string, string>;
  /** Percent of the reported, by kind (null when nothing of that kind was reported). */
  token_diff_pct: Record<string, string | null>;
  reported_cost: Money | null;
  /** Tally's price for the reported usage. */
  tally_priced_cost: Money;
  metered_cost: Money;
  /** Metered minus reported cost. */
  cost_diff: Money | null;
  cost_diff_pct: string | null;
  /** Tally's price minus the reported cost. */
  price_diff: Money | null;
  price_diff_pct: string | null;
  reported_events: number;
  metered_events: number;
  /** What is beyond tolerance: `tokens:KIND`, `cost`. */
  flags: string[];
  flagged: boolean;
}

export interface Reconciliation {
  provider: string;
  from: string;
  to: string;
  granularity: string;
  tolerance_pct: string;
  rows: ReconciliationRow[];
}
