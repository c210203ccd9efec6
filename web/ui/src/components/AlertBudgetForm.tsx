import { useState } from 'react';
import { draftToInput, EMPTY_DRAFT, type AlertBudgetDraft } from '../alerts';
import { ApiError, createAlertBudget } from '../api';
import { PERIODS, periodLabel } from '../budget';
import type { AlertBudget, AlertScopeKind, BudgetPeriod, Model } from '../types';

interface Props {
  models: Model[];
  onCreated: (b: AlertBudget) => void;
  onCancel: () => void;
}

const SCOPES: AlertScopeKind[] = ['all', 'provider', 'model', 'user', 'key'];

/** Create a budget with alerts: amount per period over a scope, thresholds and where alerts go. */
export function AlertBudgetForm({ models, onCreated, onCancel }: Props) {
  const [d, setD] = useState<AlertBudgetDraft>(EMPTY_DRAFT);
  const [error, setError] = useState<{ code: string; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (patch: Partial<AlertBudgetDraft>) => setD({ ...d, ...patch });

  const submit = async () => {
    const r = draftToInput(d);
    if ('error' in r) {
      setError({ code: 'invalid_form', message: r.error });
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onCreated(await createAlertBudget(r.input));
      setD(EMPTY_DRAFT);
    } catch (e) {
      setError(e instanceof ApiError ? { code: e.code, message: e.message } : { code: 'error', message: String(e) });
    } finally {
      setBusy(false);
    }
  };

  const suggestions =
    d.scopeKind === 'provider' ? [...new Set(models.map((m) => m.provider))] : d.scopeKind === 'model' ? models.map((m) => m.name) : [];

  return (
    <form
      className="card key-form"
      data-testid="budget-form"
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      <h4>New budget</h4>
      <div className="two-col">
        <label>
          Name
          <input value={d.name} onChange={(e) => set({ name: e.target.value })} data-testid="budget-form-name" placeholder="team monthly" />
        </label>
        <label>
          Amount (USD)
          <input value={d.amount} inputMode="decimal" onChange={(e) => set({ amount: e.target.value })} data-testid="budget-form-amount" placeholder="100.00" />
        </label>
        <label>
          Period
          <select value={d.period} onChange={(e) => set({ period: e.target.value as BudgetPeriod })} data-testid="budget-form-period">
            {PERIODS.map((p) => (
              <option key={p} value={p}>
                {periodLabel(p)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Thresholds (% of the amount)
          <input value={d.thresholds} onChange={(e) => set({ thresholds: e.target.value })} data-testid="budget-form-thresholds" placeholder="50, 80, 100" />
        </label>
        <label>
          Scope
          <select value={d.scopeKind} onChange={(e) => set({ scopeKind: e.target.value as AlertScopeKind })} data-testid="budget-form-scope-kind">
            {SCOPES.map((s) => (
              <option key={s} value={s}>
                {s === 'all' ? 'all usage' : s}
              </option>
            ))}
          </select>
        </label>
        <label>
          {d.scopeKind === 'key' ? 'Key id' : d.scopeKind === 'user' ? 'User id' : d.scopeKind === 'all' ? 'Scope value' : `${periodLabel(d.scopeKind)} name`}
          <input
            value={d.scopeKind === 'all' ? '' : d.scopeValue}
            disabled={d.scopeKind === 'all'}
            list="budget-scope-values"
            onChange={(e) => set({ scopeValue: e.target.value })}
            data-testid="budget-form-scope-value"
          />
          <datalist id="budget-scope-values">
            {suggestions.map((s) => (
              <option key={s} value={s} />
            ))}
          </datalist>
        </label>
      </div>
      <label>
        Emails (comma separated)
        <input value={d.emails} onChange={(e) => set({ emails: e.target.value })} data-testid="budget-form-emails" placeholder="ops@example.com" />
      </label>
      <label>
        Webhook URL
        <input value={d.webhookUrl} onChange={(e) => set({ webhookUrl: e.target.value })} data-testid="budget-form-webhook" placeholder="https://hooks.example.com/tally" />
      </label>
      <label className="check">
        <input type="checkbox" checked={d.enabled} onChange={(e) => set({ enabled: e.target.checked })} data-testid="budget-form-enabled" /> enabled
      </label>
      {error && (
        <p className="error" data-testid="budget-form-error" data-code={error.code}>
          <code>{error.code}</code> {error.message}
        </p>
      )}
      <div className="row">
        <button type="submit" disabled={busy} data-testid="budget-form-submit">
          {busy ? 'Creating…' : 'Create budget'}
        </button>
        <button type="button" className="secondary" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
      </div>
    </form>
  );
}
