import { PERIODS, periodNoun } from '../budget';
import type { BudgetDraft } from '../keys';
import type { BudgetPeriod } from '../types';

interface Props {
  draft: BudgetDraft;
  onChange: (d: BudgetDraft) => void;
  /** Periods taken by other rows or budgets (not offered). */
  takenPeriods?: string[];
  /** Editing an existing budget: its period is its identity. */
  lockPeriod?: boolean;
  onRemove?: () => void;
}

/** The IANA zones offered: UTC and the browser's own. */
function zones(current: string): string[] {
  let local = 'UTC';
  try {
    local = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    // no Intl time zone support: UTC only
  }
  return [...new Set(['UTC', local, current].filter(Boolean))];
}

/** One budget row: amount per period, period, alert threshold (percent) and calendar zone. */
export function BudgetFields({ draft, onChange, takenPeriods = [], lockPeriod, onRemove }: Props) {
  const set = (patch: Partial<BudgetDraft>) => onChange({ ...draft, ...patch });
  return (
    <div className="budget-fields" data-testid="budget-row">
      <label>
        Max (USD)
        <input
          data-testid="budget-row-amount"
          value={draft.amount}
          onChange={(e) => set({ amount: e.target.value })}
          inputMode="decimal"
          placeholder="5.00"
        />
      </label>
      <label>
        Per
        <select data-testid="budget-row-period" value={draft.period} disabled={lockPeriod} onChange={(e) => set({ period: e.target.value as BudgetPeriod })}>
          {PERIODS.filter((p) => p === draft.period || !takenPeriods.includes(p)).map((p) => (
            <option key={p} value={p}>
              {periodNoun(p)}
            </option>
          ))}
        </select>
      </label>
      <label>
        Alert %
        <input
          data-testid="budget-row-threshold"
          value={draft.thresholdPercent}
          onChange={(e) => set({ thresholdPercent: e.target.value })}
          inputMode="decimal"
          placeholder="none"
        />
      </label>
      <label>
        Calendar
        <select data-testid="budget-row-timezone" value={draft.timezone} onChange={(e) => set({ timezone: e.target.value })}>
          {zones(draft.timezone).map((z) => (
            <option key={z} value={z}>
              {z}
            </option>
          ))}
        </select>
      </label>
      {onRemove && (
        <button type="button" className="link remove" onClick={onRemove} data-testid="budget-row-remove" aria-label="remove this budget">
          remove
        </button>
      )}
    </div>
  );
}
