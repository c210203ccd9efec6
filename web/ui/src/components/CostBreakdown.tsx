import { kindLabel, kindOrder } from '../kinds';
import { compareDecimal, formatQuantity, formatUsd } from '../money';
import type { CostSummary } from '../types';
import { shortId } from '../format';

interface Props {
  title: string;
  summary: CostSummary;
  /** Show the per-thread and per-model split (user level). */
  showThreads?: boolean;
  testId?: string;
}

/** Totals, invoiced / not yet invoiced, and the split by kind (and by model and thread). */
export function CostBreakdown({ title, summary: s, showThreads, testId }: Props) {
  const kinds = Object.entries(s.by_kind).sort(([a], [b]) => kindOrder(a, b));
  const models = Object.entries(s.by_model).sort(([, a], [, b]) => compareDecimal(b, a));
  const threads = Object.entries(s.by_thread).sort(([, a], [, b]) => compareDecimal(b, a));
  return (
    <section className="card breakdown" data-testid={testId}>
      <h4>{title}</h4>
      <dl className="totals">
        <div>
          <dt>Total</dt>
          <dd className="money" data-testid={testId ? `${testId}-total` : undefined} data-amount={s.total_cost}>
            {formatUsd(s.total_cost)}
          </dd>
        </div>
        <div>
          <dt>Invoiced</dt>
          <dd className="money">{formatUsd(s.invoiced_cost)}</dd>
        </div>
        <div>
          <dt>Not invoiced</dt>
          <dd className="money">{formatUsd(s.uninvoiced_cost)}</dd>
        </div>
        <div>
          <dt>Events</dt>
          <dd>{s.event_count}</dd>
        </div>
      </dl>
      {kinds.length > 0 && (
        <table className="cost-table">
          <thead>
            <tr>
              <th>Kind</th>
              <th className="num">Quantity</th>
              <th className="num">Cost</th>
            </tr>
          </thead>
          <tbody>
            {kinds.map(([k, v]) => (
              <tr key={k} data-kind={k}>
                <td>{kindLabel(k)}</td>
                <td className="num">{formatQuantity(v.quantity)}</td>
                <td className="num money">{formatUsd(v.amount)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {showThreads && models.length > 0 && (
        <table className="cost-table">
          <thead>
            <tr>
              <th>Model</th>
              <th className="num">Cost</th>
            </tr>
          </thead>
          <tbody>
            {models.map(([m, a]) => (
              <tr key={m}>
                <td>{m}</td>
                <td className="num money">{formatUsd(a)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {showThreads && threads.length > 0 && (
        <table className="cost-table">
          <thead>
            <tr>
              <th>Thread</th>
              <th className="num">Cost</th>
            </tr>
          </thead>
          <tbody>
            {threads.map(([t, a]) => (
              <tr key={t}>
                <td>
                  <code title={t}>{shortId(t)}</code>
                </td>
                <td className="num money">{formatUsd(a)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
