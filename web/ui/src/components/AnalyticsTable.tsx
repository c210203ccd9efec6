import type { Breakdown } from '../api';
import { groupKey, groupsCsv, percentText, sumCost } from '../analytics';
import { downloadCsv } from '../csv';
import { shortId } from '../format';
import { formatQuantity, formatUsd } from '../money';
import type { AnalyticsGroup } from '../types';

interface Props {
  kind: Breakdown;
  title: string;
  groups: AnalyticsGroup[] | undefined;
  error: string | null;
  /** For the CSV file name. */
  range: { date_from: string; date_to: string };
  /** Filter on a row's value (absent: rows are not clickable). */
  onPick?: (g: AnalyticsGroup) => void;
}

function labelCell(kind: Breakdown, g: AnalyticsGroup) {
  switch (kind) {
    case 'by-user':
      return g.user_id;
    case 'by-model':
      return (
        <>
          {g.model}
          <div className="muted small">{g.provider}</div>
        </>
      );
    case 'by-provider':
      return g.provider;
    case 'by-key':
      return g.key_id ? (
        <>
          {g.key_name ?? '—'} <code title={g.key_id}>{shortId(g.key_id)}</code>
        </>
      ) : (
        <span className="muted">not via gateway</span>
      );
    case 'top-tasks':
      return g.task ?? <span className="muted">no task</span>;
  }
}

const HEADS: Record<Breakdown, string> = { 'by-user': 'User', 'by-model': 'Model', 'by-provider': 'Provider', 'by-key': 'Key', 'top-tasks': 'Task' };

/** One breakdown of the range: a row per group with its figures, the exact total, and CSV export. */
export function AnalyticsTable({ kind, title, groups, error, range, onPick }: Props) {
  const testId = `analytics-${kind}`;
  const exportCsv = () => groups && downloadCsv(`tally-${kind}-${range.date_from}-${range.date_to}.csv`, groupsCsv(kind, groups));
  return (
    <section className="card dash-card" data-testid={testId}>
      <div className="row between">
        <h4>{title}</h4>
        <button type="button" className="secondary small-button" onClick={exportCsv} disabled={!groups || groups.length === 0} data-testid={`${testId}-csv`}>
          Export CSV
        </button>
      </div>
      {error && <p className="error">{error}</p>}
      {groups && groups.length === 0 && <p className="muted">No usage in this range.</p>}
      {groups && groups.length > 0 && (
        <table className="cost-table">
          <thead>
            <tr>
              <th>{HEADS[kind]}</th>
              <th className="num">Requests</th>
              <th className="num">Success</th>
              <th className="num">Tokens in / out</th>
              <th className="num">Avg / request</th>
              <th className="num">Cost</th>
            </tr>
          </thead>
          <tbody>
            {groups.map((g) => {
              const f = g.figures;
              return (
                <tr
                  key={groupKey(kind, g)}
                  data-testid={`${testId}-row`}
                  data-key={groupKey(kind, g)}
                  className={onPick ? 'clickable' : undefined}
                  onClick={onPick ? () => onPick(g) : undefined}
                  title={onPick ? 'filter on this' : undefined}
                >
                  <td>{labelCell(kind, g)}</td>
                  <td className="num">
                    {f.requests}
                    {f.failed > 0 && <span className="muted small"> ({f.failed} failed)</span>}
                  </td>
                  <td className="num">{percentText(f.success_rate)}</td>
                  <td className="num small">
                    {formatQuantity(f.tokens.input_tokens)} / {formatQuantity(f.tokens.output_tokens)}
                  </td>
                  <td className="num money">{f.avg_cost_per_request === null ? '—' : formatUsd(f.avg_cost_per_request)}</td>
                  <td className="num money" data-testid={`${testId}-cost`} data-amount={f.cost}>
                    {formatUsd(f.cost)}
                  </td>
                </tr>
              );
            })}
          </tbody>
          {kind !== 'top-tasks' && (
            <tfoot>
              <tr>
                <td colSpan={5} className="muted">
                  Total
                </td>
                <td className="num money" data-testid={`${testId}-sum`} data-amount={sumCost(groups)}>
                  {formatUsd(sumCost(groups))}
                </td>
              </tr>
            </tfoot>
          )}
        </table>
      )}
    </section>
  );
}
