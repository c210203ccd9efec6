import { useState } from 'react';
import { keySpend } from '../api';
import { PERIODS, periodNoun } from '../budget';
import { errorText, formatTime } from '../format';
import { useAsync } from '../hooks';
import { costsDescending } from '../keys';
import { formatQuantity, formatUsd, ratioUnits, unitsToDecimal } from '../money';
import type { BudgetPeriod } from '../types';

interface Props {
  keyId: string;
  version: number;
}

/** Share of the total in percent with one decimal ("37.5"), exact. */
function share(cost: string, total: string): string {
  const u = ratioUnits(cost, total, 1000n);
  return u === null ? '' : `${unitsToDecimal(u, 1)}%`;
}

function CostList({ title, costs, total, testId }: { title: string; costs: Record<string, string>; total: string; testId: string }) {
  const rows = costsDescending(costs);
  return (
    <>
      <h5>{title}</h5>
      {rows.length === 0 ? (
        <p className="muted small">No calls in this period.</p>
      ) : (
        <table className="cost-table">
          <tbody>
            {rows.map(([name, cost]) => (
              <tr key={name} data-testid={testId} data-key={name}>
                <td>{name}</td>
                <td className="num muted small">{share(cost, total)}</td>
                <td className="num money" data-amount={cost}>
                  {formatUsd(cost)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

/** What a key spent in the current day, week or month, by model and by provider. */
export function KeySpendCard({ keyId, version }: Props) {
  const [period, setPeriod] = useState<BudgetPeriod>('monthly');
  const spend = useAsync(() => keySpend(keyId, period), [keyId, period, version]);
  const s = spend.data?.period === period ? spend.data : undefined;
  return (
    <section className="key-spend" data-testid="key-spend">
      <div className="row between">
        <h5>Spend this {periodNoun(period)}</h5>
        <select value={period} onChange={(e) => setPeriod(e.target.value as BudgetPeriod)} data-testid="key-spend-period" aria-label="spend period">
          {PERIODS.map((p) => (
            <option key={p} value={p}>
              this {periodNoun(p)}
            </option>
          ))}
        </select>
      </div>
      {spend.error ? <p className="error small">{errorText(spend.error)}</p> : null}
      {!s && !spend.error && <p className="muted small">Loading…</p>}
      {s && (
        <>
          <dl className="totals three">
            <div>
              <dt>Cost</dt>
              <dd className="money" data-testid="key-spend-total" data-amount={s.total_cost}>
                <strong>{formatUsd(s.total_cost)}</strong>
              </dd>
            </div>
            <div>
              <dt>Requests</dt>
              <dd data-testid="key-spend-requests">{formatQuantity(String(s.total_requests))}</dd>
            </div>
            <div>
              <dt>Tokens</dt>
              <dd>{formatQuantity(String(s.total_tokens))}</dd>
            </div>
          </dl>
          <p className="muted small">
            {formatTime(s.period_start)} – {formatTime(s.period_end)}
          </p>
          <CostList title="By model" costs={s.by_model} total={s.total_cost} testId="key-spend-model-row" />
          <CostList title="By provider" costs={s.by_provider} total={s.total_cost} testId="key-spend-provider-row" />
        </>
      )}
    </section>
  );
}
