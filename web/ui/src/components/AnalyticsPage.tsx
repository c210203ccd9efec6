// Spend analytics at /analytics: a day range with filters, summary figures, cost trends
// with the 30-day forecast, and breakdowns by user, model, provider, key and task.

import { useMemo, useState } from 'react';
import { analyticsGroups, analyticsSummary, analyticsTrends, ApiError, getForecast, type Breakdown } from '../api';
import { forecastScope, percentText, presetRange, rangeDays, trendRows } from '../analytics';
import { errorText, formatTime } from '../format';
import { useAsync } from '../hooks';
import { useCanAdmin, usePinnedUser } from '../session';
import { kindLabel, kindOrder } from '../kinds';
import { formatQuantity, formatUsd } from '../money';
import type { AnalyticsFilters, AnalyticsGroup, AnalyticsQuery, TrendPeriod } from '../types';
import { AnalyticsTable } from './AnalyticsTable';
import { TrendChart } from './TrendChart';

/** Days of the forecast drawn after the history. */
const HORIZON = 30;
/** The preset ranges, in days. */
const PRESETS = [7, 30, 90];
const FILTERS: { key: keyof AnalyticsFilters; label: string }[] = [
  { key: 'user_id', label: 'User' },
  { key: 'provider', label: 'Provider' },
  { key: 'model', label: 'Model' },
  { key: 'key_id', label: 'Key id' },
  { key: 'task', label: 'Task' },
];
const TABLES: { kind: Breakdown; title: string; filter?: (g: AnalyticsGroup) => AnalyticsFilters | null }[] = [
  { kind: 'by-user', title: 'By user', filter: (g) => (g.user_id ? { user_id: g.user_id } : null) },
  { kind: 'by-model', title: 'By model', filter: (g) => (g.model ? { model: g.model } : null) },
  { kind: 'by-provider', title: 'By provider', filter: (g) => (g.provider ? { provider: g.provider } : null) },
  { kind: 'by-key', title: 'By key', filter: (g) => (g.key_id ? { key_id: g.key_id } : null) },
  { kind: 'top-tasks', title: 'Top tasks', filter: (g) => (g.task ? { task: g.task } : null) },
];

function clean(f: AnalyticsFilters): AnalyticsFilters {
  const out: AnalyticsFilters = {};
  for (const { key } of FILTERS) {
    const v = f[key]?.trim();
    if (v) out[key] = v;
  }
  return out;
}

export function AnalyticsPage() {
  const [range, setRange] = useState(() => presetRange(30, new Date()));
  const [draft, setDraft] = useState<AnalyticsFilters>({});
  const [filters, setFilters] = useState<AnalyticsFilters>({});
  const [period, setPeriod] = useState<TrendPeriod>('daily');

  // A user's key sees its own usage only (the server scopes it too): the user filter is fixed.
  const pinned = usePinnedUser();
  const query: AnalyticsQuery = useMemo(() => ({ ...range, ...filters, ...(pinned ? { user_id: pinned } : {}) }), [range, filters, pinned]);
  const qKey = JSON.stringify(query);
  const badRange = rangeDays(range.date_from, range.date_to) === 0;

  const summary = useAsync(() => (badRange ? Promise.reject(new Error('the range ends before it starts')) : analyticsSummary(query)), [qKey]);
  const tables = useAsync(
    () => (badRange ? Promise.resolve(null) : Promise.allSettled(TABLES.map((t) => analyticsGroups(t.kind, query)))),
    [qKey],
  );
  const trends = useAsync(() => (badRange ? Promise.resolve(null) : analyticsTrends(query, period)), [qKey, period]);
  // Forecasts are admin-only on the server: a user's key does not ask for them.
  const admin = useCanAdmin();
  const scope = admin ? forecastScope(filters) : null;
  const forecast = useAsync(() => (scope ? getForecast(scope, HORIZON) : Promise.resolve(null)), [scope]);

  const rows = useMemo(
    () => (trends.data ? trendRows(trends.data.buckets, forecast.data?.points ?? null, period) : []),
    [trends.data, forecast.data, period],
  );

  const apply = (next: AnalyticsFilters) => {
    const c = clean(next);
    setDraft(c);
    setFilters(c);
  };
  const pick = (f: AnalyticsFilters | null) => f && apply({ ...filters, ...f });

  const fig = summary.data?.figures;
  const kinds = fig ? [...Object.entries(fig.tokens), ...Object.entries(fig.resources ?? {})].sort((a, b) => kindOrder(a[0], b[0])) : [];
  const activePreset = PRESETS.find((d) => {
    const p = presetRange(d, new Date());
    return p.date_from === range.date_from && p.date_to === range.date_to;
  });

  let forecastNote: JSX.Element | null = null;
  if (!admin) {
    forecastNote = <p className="muted small" data-testid="analytics-forecast-note" data-code="admin_only">Forecasts are shown to admins only.</p>;
  } else if (!scope) {
    forecastNote = <p className="muted small" data-testid="analytics-forecast-note">No forecast for this combination of filters (forecasts cover the total or one user, provider, model or key).</p>;
  } else if (forecast.error) {
    const e = forecast.error;
    const text =
      e instanceof ApiError && e.code === 'insufficient_history'
        ? `Not enough history for a forecast yet: ${e.message}`
        : e instanceof ApiError && e.status === 404
          ? 'This server has no forecasts (GET /api/forecasts answered 404).'
          : `Forecast unavailable: ${errorText(e)}`;
    forecastNote = (
      <p className="muted small" data-testid="analytics-forecast-note" data-code={e instanceof ApiError ? e.code : ''}>
        {text}
      </p>
    );
  } else if (forecast.data) {
    const f = forecast.data;
    forecastNote = (
      <p className="small" data-testid="analytics-forecast-total" data-amount={f.total_mean}>
        Next {f.horizon} days ({f.scope}): <strong className="money">{formatUsd(f.total_mean)}</strong>{' '}
        <span className="muted">
          (95%: {formatUsd(f.total_lower_95)} – {formatUsd(f.total_upper_95)}) · {f.method}, {f.history_days} days of history, trained {formatTime(f.trained_at)}
        </span>
      </p>
    );
  }

  return (
    <main className="page analytics" data-testid="analytics">
      <div className="dash-head">
        <h2>Analytics</h2>
        <span className="muted small">UTC days, inclusive</span>
      </div>

      <section className="card filters" data-testid="analytics-filters">
        <div className="filter-row">
          <label>
            From
            <input type="date" value={range.date_from} max={range.date_to} onChange={(e) => e.target.value && setRange({ ...range, date_from: e.target.value })} data-testid="analytics-from" />
          </label>
          <label>
            To
            <input type="date" value={range.date_to} min={range.date_from} onChange={(e) => e.target.value && setRange({ ...range, date_to: e.target.value })} data-testid="analytics-to" />
          </label>
          <div className="presets">
            {PRESETS.map((d) => (
              <button
                key={d}
                type="button"
                className={activePreset === d ? 'tab active' : 'tab'}
                onClick={() => setRange(presetRange(d, new Date()))}
                data-testid={`analytics-preset-${d}`}
              >
                {d} days
              </button>
            ))}
          </div>
        </div>
        <form
          className="filter-row"
          onSubmit={(e) => {
            e.preventDefault();
            apply(draft);
          }}
        >
          {FILTERS.map(({ key, label }) => (
            <label key={key}>
              {label}
              <input
                value={key === 'user_id' && pinned ? pinned : (draft[key] ?? '')}
                placeholder="all"
                disabled={key === 'user_id' && !!pinned}
                onChange={(e) => setDraft({ ...draft, [key]: e.target.value })}
                data-testid={`analytics-filter-${key}`}
              />
            </label>
          ))}
          <button type="submit" data-testid="analytics-apply">
            Apply
          </button>
          <button type="button" className="secondary" onClick={() => apply({})} disabled={Object.keys(filters).length === 0 && Object.keys(clean(draft)).length === 0} data-testid="analytics-clear">
            Clear
          </button>
        </form>
        {Object.keys(filters).length > 0 && (
          <p className="small muted" data-testid="analytics-active-filters">
            Filtered by{' '}
            {Object.entries(filters)
              .map(([k, v]) => `${k} = ${v}`)
              .join(', ')}
          </p>
        )}
      </section>

      {summary.error ? <p className="error" data-testid="analytics-error">{errorText(summary.error)}</p> : null}

      <div className="stat-row five">
        <div className="stat card">
          <span className="muted small">Total cost</span>
          <strong className="money big" data-testid="analytics-total-cost" data-amount={fig?.cost ?? ''}>
            {fig ? formatUsd(fig.cost) : '—'}
          </strong>
        </div>
        <div className="stat card">
          <span className="muted small">Requests</span>
          <strong className="big" data-testid="analytics-requests">
            {fig ? fig.requests : '—'}
          </strong>
          {fig && fig.failed > 0 && <span className="small muted">{fig.failed} failed</span>}
        </div>
        <div className="stat card">
          <span className="muted small">Success rate</span>
          <strong className="big" data-testid="analytics-success-rate">
            {fig ? percentText(fig.success_rate) : '—'}
          </strong>
        </div>
        <div className="stat card">
          <span className="muted small">Avg cost / request</span>
          <strong className="money big" data-testid="analytics-avg-cost" data-amount={fig?.avg_cost_per_request ?? ''}>
            {fig && fig.avg_cost_per_request !== null ? formatUsd(fig.avg_cost_per_request) : '—'}
          </strong>
        </div>
        <div className="stat card">
          <span className="muted small">Tokens and resources</span>
          <table className="cost-table compact" data-testid="analytics-tokens">
            <tbody>
              {kinds.map(([k, q]) => (
                <tr key={k} data-kind={k}>
                  <td>{kindLabel(k)}</td>
                  <td className="num" data-quantity={q}>
                    {formatQuantity(q)}
                  </td>
                  <td className="num money muted">{fig?.cost_by_kind[k] ? formatUsd(fig.cost_by_kind[k]) : ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </div>

      <section className="card" data-testid="analytics-trends">
        <div className="row between">
          <h4>Cost trends</h4>
          <div className="presets">
            {(['daily', 'weekly', 'monthly'] as TrendPeriod[]).map((p) => (
              <button key={p} type="button" className={period === p ? 'tab active' : 'tab'} onClick={() => setPeriod(p)} data-testid={`analytics-period-${p}`}>
                {p}
              </button>
            ))}
          </div>
        </div>
        {trends.error ? <p className="error">{errorText(trends.error)}</p> : null}
        {rows.length > 0 && <TrendChart rows={rows} />}
        {forecastNote}
        {period !== 'daily' && forecast.data && (
          <p className="muted small">Weekly and monthly forecast bands add up the daily bands, so they are wider than the true interval.</p>
        )}
      </section>

      <div className="dash-grid">
        {TABLES.map((t, i) => {
          const r = tables.data?.[i];
          return (
            <AnalyticsTable
              key={t.kind}
              kind={t.kind}
              title={t.title}
              groups={r?.status === 'fulfilled' ? r.value.groups : undefined}
              error={r?.status === 'rejected' ? errorText(r.reason) : tables.error ? errorText(tables.error) : null}
              range={range}
              onPick={t.filter ? (g) => pick(t.filter!(g)) : undefined}
            />
          );
        })}
      </div>
    </main>
  );
}
