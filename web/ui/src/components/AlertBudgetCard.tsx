import { useState } from 'react';
import { progress, scopeText, thresholdMarks } from '../alerts';
import { deleteAlertBudget, patchAlertBudget, sendTestAlert } from '../api';
import { periodLabel, periodNoun } from '../budget';
import { errorText, formatTime } from '../format';
import { formatUsd } from '../money';
import type { AlertBudget, BudgetCheck, Delivery } from '../types';
import { Confirm } from './Confirm';

interface Props {
  budget: AlertBudget;
  /** The current window, when the check answered. */
  check: BudgetCheck | null;
  onChanged: () => void;
}

/** The tone of the bar: disabled, exceeded, warning (a threshold fired) or ok. */
function tone(b: AlertBudget, c: BudgetCheck | null): string {
  if (!b.enabled) return 'disabled';
  if (c?.status === 'exceeded') return 'exceeded';
  if (c?.status === 'warning') return 'alerted';
  return 'ok';
}

/** One budget: progress of the window with its threshold marks and projection, and its actions. */
export function AlertBudgetCard({ budget: b, check: c, onChanged }: Props) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [sent, setSent] = useState<Delivery[] | null>(null);
  const g = c ? progress(c.spent, b.amount, c.projected_spend) : null;
  const marks = thresholdMarks(b.thresholds, c?.thresholds_fired ?? []);

  const act = async (f: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
      onChanged();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div
      className={`card alert-budget budget tone-${tone(b, c)}`}
      data-testid="alert-budget"
      data-budget-id={b.budget_id}
      data-name={b.name}
      data-status={c?.status ?? ''}
      data-enabled={b.enabled ? 'true' : 'false'}
    >
      <div className="row between">
        <span>
          <strong>{b.name}</strong> <span className="muted small">· {periodLabel(b.period)} · {scopeText(b.scope)}</span>
          {!b.enabled && <span className="badge">disabled</span>}
          {c && b.enabled && <span className={`badge budget-status-${c.status}`} data-testid="alert-budget-status">{c.status}</span>}
        </span>
        <span className="money" data-testid="alert-budget-amount" data-amount={b.amount}>
          {formatUsd(b.amount)}
        </span>
      </div>
      {c && g ? (
        <>
          <div
            className="budget-bar"
            role="img"
            aria-label={`${formatUsd(c.spent)} spent of ${formatUsd(b.amount)}`}
            data-testid="alert-budget-bar"
            data-width={g.width}
            data-percent={c.percent_used ?? ''}
          >
            {g.projected !== null && <span className="projected" style={{ width: `${g.projected}%` }} title={`projected ${formatUsd(c.projected_spend)}`} />}
            <span className="seg seg-spent" style={{ width: `${g.width}%` }} />
            {marks.map((m) => (
              <span
                key={m.threshold}
                className={m.fired ? 'threshold fired' : 'threshold'}
                style={{ left: `${m.left}%` }}
                title={`${m.threshold}%${m.fired ? ' (fired)' : ''}`}
                data-testid="alert-budget-threshold"
                data-threshold={m.threshold}
              />
            ))}
          </div>
          <div className="budget-legend small">
            <span>
              <span className="dot seg-spent" /> spent{' '}
              <span className="money" data-testid="alert-budget-spent" data-amount={c.spent}>
                {formatUsd(c.spent)}
              </span>{' '}
              ({g.percent ?? '—'}%)
            </span>
            <span>
              left <span className="money" data-amount={c.remaining}>{formatUsd(c.remaining)}</span>
            </span>
            <span data-testid="alert-budget-projected" data-amount={c.projected_spend ?? ''}>
              <span className="dot projected" /> projected <span className="money">{formatUsd(c.projected_spend)}</span> by the end of the {periodNoun(b.period)}
            </span>
          </div>
          <div className="muted small">
            {formatTime(c.window_start)} – {formatTime(c.window_end)} ·{' '}
            <span data-testid="alert-budget-breach">{c.projected_breach_date ? <strong className="error">breach projected on {c.projected_breach_date}</strong> : 'no breach projected'}</span>
            {marks.length > 0 && ` · alerts at ${marks.map((m) => `${m.threshold}%${m.fired ? ' ✓' : ''}`).join(', ')}`}
          </div>
        </>
      ) : (
        <p className="muted small">No spend figures for this budget (the check did not include it).</p>
      )}
      <div className="muted small">
        alerts to {[...b.emails, ...(b.webhook_url ? [b.webhook_url] : [])].join(', ') || 'the log only'}
      </div>
      <div className="row budget-actions">
        <button type="button" className="link" disabled={busy} onClick={() => act(() => patchAlertBudget(b.budget_id, { enabled: !b.enabled }))} data-testid="alert-budget-toggle">
          {b.enabled ? 'Disable' : 'Enable'}
        </button>
        <button
          type="button"
          className="link"
          disabled={busy}
          onClick={() =>
            act(async () => {
              setSent((await sendTestAlert(b.budget_id)).deliveries);
            })
          }
          data-testid="alert-budget-test"
        >
          Send test alert
        </button>
        <Confirm
          label="Delete"
          asLink
          danger
          testId="alert-budget-delete"
          question={`Delete the budget “${b.name}”? Its alerts stop.`}
          confirmLabel="Delete budget"
          onConfirm={() => act(() => deleteAlertBudget(b.budget_id))}
        />
      </div>
      {sent && (
        <p className="notice small" data-testid="alert-budget-test-result">
          Test alert: {sent.length === 0 ? 'no channels' : sent.map((d) => `${d.channel} ${d.target ?? ''} ${d.status}`).join(' · ')}
        </p>
      )}
      {error && <p className="error small">{error}</p>}
    </div>
  );
}
