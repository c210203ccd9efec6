import { Cell, Pie, PieChart, ResponsiveContainer, Tooltip } from 'recharts';
import { chartNumber, seriesColor } from '../chart';
import { formatUsd } from '../money';
import type { Snapshot } from '../types';

/** Cost by model: a pie (geometry) and a table (exact strings). */
export function ModelCosts({ models }: { models: Snapshot['by_model'] }) {
  const data = models.map((m) => ({ name: m.model, value: chartNumber(m.cost), costText: m.cost }));
  return (
    <section className="card dash-card" data-testid="dashboard-by-model">
      <h4>Cost by model</h4>
      {models.length === 0 ? (
        <p className="muted">No usage yet.</p>
      ) : (
        <>
          <div className="chart" style={{ height: 160 }}>
            <ResponsiveContainer width="100%" height="100%">
              <PieChart>
                <Pie data={data} dataKey="value" nameKey="name" innerRadius={35} outerRadius={65} isAnimationActive={false}>
                  {data.map((d) => (
                    <Cell key={d.name} fill={seriesColor(d.name)} />
                  ))}
                </Pie>
                <Tooltip formatter={(_v, _n, item) => [formatUsd((item?.payload as { costText?: string })?.costText), 'cost']} />
              </PieChart>
            </ResponsiveContainer>
          </div>
          <table className="cost-table">
            <tbody>
              {models.map((m) => (
                <tr key={m.model} data-testid="dashboard-model-row">
                  <td>
                    <span className="swatch" style={{ background: seriesColor(m.model) }} /> {m.model}
                  </td>
                  <td className="num muted small">{m.events} ev</td>
                  <td className="num money" data-amount={m.cost}>
                    {formatUsd(m.cost)}
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
