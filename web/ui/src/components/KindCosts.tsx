import { Bar, BarChart, Cell, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { chartNumber, seriesColor } from '../chart';
import { kindLabel, kindOrder } from '../kinds';
import { formatQuantity, formatUsd } from '../money';
import type { Snapshot } from '../types';

/** Usage and cost by kind: tokens and non-token resources (images, pixels, …). */
export function KindCosts({ kinds }: { kinds: Snapshot['by_kind'] }) {
  const sorted = [...kinds].sort((a, b) => kindOrder(a.kind, b.kind));
  const resources = sorted.filter((k) => k.unit !== 'tokens');
  const data = sorted.map((k) => ({ name: kindLabel(k.kind), kind: k.kind, value: chartNumber(k.cost), costText: k.cost }));
  return (
    <section className="card dash-card" data-testid="dashboard-by-kind">
      <h4>Cost by usage kind</h4>
      {sorted.length === 0 ? (
        <p className="muted">No usage yet.</p>
      ) : (
        <div className="chart" style={{ height: 180 }}>
          <ResponsiveContainer width="100%" height="100%">
            <BarChart data={data} margin={{ left: 0, right: 8, top: 4, bottom: 4 }}>
              <XAxis dataKey="name" tick={{ fontSize: 10 }} interval={0} />
              <YAxis hide />
              <Tooltip formatter={(_v, _n, item) => [formatUsd((item?.payload as { costText?: string })?.costText), 'cost']} />
              <Bar dataKey="value" isAnimationActive={false}>
                {data.map((d) => (
                  <Cell key={d.kind} fill={seriesColor(d.kind)} />
                ))}
              </Bar>
            </BarChart>
          </ResponsiveContainer>
        </div>
      )}
      <table className="cost-table">
        <thead>
          <tr>
            <th>Kind</th>
            <th className="num">Quantity</th>
            <th className="num">Cost</th>
          </tr>
        </thead>
        <tbody>
          {sorted.map((k) => (
            <tr key={k.kind} data-testid="dashboard-kind-row" data-kind={k.kind} data-unit={k.unit}>
              <td>{kindLabel(k.kind)}</td>
              <td className="num">
                {formatQuantity(k.quantity)} {k.unit === 'tokens' ? 'tok' : k.unit}
              </td>
              <td className="num money" data-amount={k.cost}>
                {formatUsd(k.cost)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h5>Resources (non-token)</h5>
      {resources.length === 0 ? (
        <p className="muted small" data-testid="dashboard-no-resources">
          No images, pixels or other resources used yet.
        </p>
      ) : (
        <ul className="plain" data-testid="dashboard-resources">
          {resources.map((r) => (
            <li key={r.kind}>
              {kindLabel(r.kind)}: {formatQuantity(r.quantity)} {r.unit} · <span className="money">{formatUsd(r.cost)}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
