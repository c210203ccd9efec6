import { budgetBar, budgetTone, periodLabel, resetText } from '../budget';
import { formatTime } from '../format';
import { formatUsd } from '../money';
import type { BudgetView } from '../types';

interface Props {
  budget: BudgetView;
  now: number;
}

/** One budget window: a bar of spent / reserved / remaining out of the limit, with the amounts and the reset time. */
export function BudgetBar({ budget: b, now }: Props) {
  const g = budgetBar(b);
  const tone = budgetTone(b);
  return (
    <div className={`budget tone-${tone}`} data-testid="key-budget" data-period={b.period} data-budget-id={b.budget_id} data-alert-state={b.alert_state}>
      <div className="row between">
        <span>
          <strong>{periodLabel(b.period)}</strong> <span className="money" data-testid="key-budget-max" data-amount={b.max_budget}>{formatUsd(b.max_budget)}</span>
          {!b.enabled && <span className="badge">disabled</span>}
          {tone === 'alerted' && <span className="badge status-pending">alert sent</span>}
          {tone === 'exceeded' && <span className="badge status-failed">exhausted</span>}
        </span>
        <span className="muted small">{g.usedPercent === null ? '' : `${g.usedPercent}% used`}</span>
      </div>
      <div
        className="budget-bar"
        role="img"
        aria-label={`${formatUsd(b.spent)} spent, ${formatUsd(b.reserved)} reserved, ${formatUsd(b.remaining)} left of ${formatUsd(b.max_budget)}`}
        data-testid="key-budget-bar"
        data-spent-pct={g.spent}
        data-reserved-pct={g.reserved}
        data-remaining-pct={g.remaining}
      >
        <span className="seg seg-spent" style={{ width: `${g.spent}%` }} />
        <span className="seg seg-reserved" style={{ width: `${g.reserved}%` }} />
        <span className="seg seg-remaining" style={{ width: `${g.remaining}%` }} />
        {g.threshold !== null && <span className="threshold" style={{ left: `${g.threshold}%` }} title={`alert at ${g.threshold}%`} />}
      </div>
      <div className="budget-legend small">
        <span>
          <span className="dot seg-spent" /> spent{' '}
          <span className="money" data-testid="key-budget-spent" data-amount={b.spent}>
            {formatUsd(b.spent)}
          </span>
        </span>
        <span>
          <span className="dot seg-reserved" /> reserved{' '}
          <span className="money" data-testid="key-budget-reserved" data-amount={b.reserved}>
            {formatUsd(b.reserved)}
          </span>
        </span>
        <span>
          <span className="dot seg-remaining" /> left{' '}
          <span className="money" data-testid="key-budget-remaining" data-amount={b.remaining}>
            {formatUsd(b.remaining)}
          </span>
        </span>
      </div>
      <div className="muted small" title={`${formatTime(b.period_start)} – ${formatTime(b.period_end)} (${b.timezone})`}>
        {resetText(b.period_end, now)} · {formatTime(b.period_end)} {b.timezone !== 'UTC' ? `(${b.timezone} calendar)` : '(UTC calendar)'}
        {b.alert_threshold ? ` · alert at ${g.threshold}%` : ''}
      </div>
    </div>
  );
}
