// Budgets with alerts at /budgets: each budget's window (spent, thresholds, projection),
// create, enable/disable, delete, test alerts, and the log of alert deliveries.

import { useState } from 'react';
import { ApiError, checkAlertBudgets, listAlertBudgets, listDeliveries, listModels } from '../api';
import { errorText, formatTimeShort, shortId } from '../format';
import { useAsync } from '../hooks';
import { AlertBudgetCard } from './AlertBudgetCard';
import { AlertBudgetForm } from './AlertBudgetForm';

/** Deliveries shown in the log. */
const LOG_LIMIT = 50;

export function BudgetsPage() {
  const [version, setVersion] = useState(0);
  const changed = () => setVersion((v) => v + 1);
  const [creating, setCreating] = useState(false);
  const [logBudget, setLogBudget] = useState('');
  const models = useAsync(listModels, []);
  const list = useAsync(listAlertBudgets, [version]);
  const check = useAsync(checkAlertBudgets, [version]);
  const log = useAsync(() => listDeliveries({ budget_id: logBudget || undefined, limit: LOG_LIMIT }), [version, logBudget]);

  const budgets = [...(list.data?.budgets ?? [])].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  const checks = new Map((check.data?.budgets ?? []).map((c) => [c.budget.budget_id, c]));
  const names = new Map(budgets.map((b) => [b.budget_id, b.name]));
  const missingApi = list.error instanceof ApiError && list.error.status === 404;

  return (
    <main className="page budgets-page" data-testid="budgets">
      <div className="dash-head">
        <h2>Budgets</h2>
        <span className="muted small">Spend limits per period with alerts by email and webhook</span>
        {!creating && (
          <button type="button" className="topn-button" onClick={() => setCreating(true)} disabled={missingApi} data-testid="new-budget-button">
            New budget
          </button>
        )}
      </div>
      <div className="budgets-grid">
        <div>
          {creating && (
            <AlertBudgetForm
              models={models.data ?? []}
              onCreated={() => {
                setCreating(false);
                changed();
              }}
              onCancel={() => setCreating(false)}
            />
          )}
          {missingApi ? (
            <p className="error" data-testid="budgets-unavailable">
              This server has no budgets API: <code>GET /api/budgets</code> answered 404.
            </p>
          ) : list.error ? (
            <p className="error">{errorText(list.error)}</p>
          ) : null}
          {check.error && !missingApi ? <p className="error small">Budget check failed: {errorText(check.error)}</p> : null}
          {list.data && budgets.length === 0 && <p className="muted card">No budgets yet.</p>}
          <div data-testid="budget-list">
            {budgets.map((b) => (
              <AlertBudgetCard key={b.budget_id} budget={b} check={checks.get(b.budget_id) ?? null} onChanged={changed} />
            ))}
          </div>
          {check.data && <p className="muted small">Checked {formatTimeShort(check.data.checked_at)}.</p>}
        </div>

        <section className="card" data-testid="delivery-log">
          <div className="row between">
            <h4>Alert deliveries</h4>
            <div className="row">
              <select value={logBudget} onChange={(e) => setLogBudget(e.target.value)} data-testid="delivery-log-budget">
                <option value="">all budgets</option>
                {budgets.map((b) => (
                  <option key={b.budget_id} value={b.budget_id}>
                    {b.name}
                  </option>
                ))}
              </select>
              <button type="button" className="secondary small-button" onClick={changed} data-testid="delivery-log-refresh">
                Refresh
              </button>
            </div>
          </div>
          {log.error ? <p className="error">{errorText(log.error)}</p> : null}
          {log.data && log.data.deliveries.length === 0 && <p className="muted">No alerts sent yet.</p>}
          {log.data && log.data.deliveries.length > 0 && (
            <table className="cost-table">
              <thead>
                <tr>
                  <th>When</th>
                  <th>Alert</th>
                  <th>Channel</th>
                  <th>Status</th>
                  <th className="num">Tries</th>
                </tr>
              </thead>
              <tbody>
                {log.data.deliveries.map((d) => (
                  <tr key={d.delivery_id} data-testid="delivery-row" data-delivery-id={d.delivery_id} data-status={d.status} data-source={d.source}>
                    <td className="small">{formatTimeShort(d.created_at)}</td>
                    <td className="small">
                      {d.alert_kind} <span className="muted">· {d.source}</span>
                      <div className="muted">{d.subject_id ? names.get(d.subject_id) ?? shortId(d.subject_id) : '—'}</div>
                    </td>
                    <td className="small">
                      {d.channel}
                      <div className="muted wrap">{d.target ?? ''}</div>
                    </td>
                    <td>
                      <span className={`badge status-${d.status}`}>{d.status}</span>
                      {d.last_error && <div className="error small wrap">{d.last_error}</div>}
                    </td>
                    <td className="num">{d.attempts}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      </div>
    </main>
  );
}
