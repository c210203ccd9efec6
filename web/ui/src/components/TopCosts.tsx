import { Bar, BarChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { chartNumber } from '../chart';
import { shortId } from '../format';
import { formatUsd } from '../money';

export interface CostRow {
  key: string;
  label: string;
  sub?: string;
  cost: string;
  events: number;
}

interface Props {
  title: string;
  rows: CostRow[];
  testId: string;
  shortKeys?: boolean;
}

/** A top-N list of costs: a bar chart (geometry from numbers) and a table (text from the exact strings). */
export function TopCosts({ title, rows, testId, shortKeys }: Props) {
  const data = rows.map((r) => ({ name: shortKeys ? shortId(r.label) : r.label, value: chartNumber(r.cost), costText: r.cost }));
  return (
    <section className="card dash-card" data-testid={testId}>
      <h4>{title}</h4>
      {rows.length === 0 ? (
        <p className="muted">No usage yet.</p>
      ) : (
        <>
          <div className="chart" style={{ height: Math.max(80, rows.length * 24 + 20) }}>
            <ResponsiveContainer width="100%" height="100%">
              <BarChart data={data} layout="vertical" margin={{ left: 8, right: 16, top: 4, bottom: 4 }}>
                <XAxis type="number" hide />
                <YAxis type="category" dataKey="name" width={shortKeys ? 80 : 130} tick={{ fontSize: 11 }} />
                <Tooltip formatter={(_v, _n, item) => [formatUsd((item?.payload as { costText?: string })?.costText), 'cost']} />
                <Bar dataKey="value" fill="#4f7cff" isAnimationActive={false} />
              </BarChart>
            </ResponsiveContainer>
          </div>
          <table className="cost-table">
            <tbody>
              {rows.map((r) => (
                <tr key={r.key} data-testid={`${testId}-row`} data-key={r.key}>
                  <td>
                    {shortKeys ? <code title={r.label}>{shortId(r.label)}</code> : r.label}
                    {r.sub && <span className="muted small"> · {r.sub}</span>}
                  </td>
                  <td className="num muted small">{r.events} ev</td>
                  <td className="num money" data-amount={r.cost}>
                    {formatUsd(r.cost)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
