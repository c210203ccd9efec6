import { Bar, CartesianGrid, ComposedChart, Legend, ReferenceLine, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { axisUsd, seriesColor, signedDomain } from '../chart';
import { formatUsd } from '../money';
import { diffUsd, type DriftDay } from '../reconciliation';

/** Tooltip text from the day's exact strings (the numbers only place the bars). */
function DriftTooltip({ active, payload }: { active?: boolean; payload?: { payload?: DriftDay }[] }) {
  const d = payload?.[0]?.payload;
  if (!active || !d) return null;
  return (
    <div className="chart-tip small">
      <strong>{d.date}</strong>
      {d.rows === 0 ? (
        <div className="muted">nothing reported or metered</div>
      ) : (
        <>
          <div>metered − reported {diffUsd(d.costDiff)}</div>
          <div>Tally price − reported {diffUsd(d.priceDiff)}</div>
          <div className="muted">
            reported {formatUsd(d.reported)} · Tally price {formatUsd(d.priced)} · metered {formatUsd(d.metered)}
          </div>
          {d.flagged > 0 && <div className="error">{d.flagged} flagged</div>}
        </>
      )}
    </div>
  );
}

/** Daily drift as two bar series around zero: metered minus reported, Tally-priced minus reported. */
export function DriftChart({ days }: { days: DriftDay[] }) {
  const domain = signedDomain(days.flatMap((d) => [d.costDrift, d.priceDrift]));
  return (
    <div
      className="chart"
      style={{ height: 240 }}
      data-testid="reconciliation-drift-chart"
      data-days={days.length}
      data-drift-days={days.filter((d) => d.costDiff !== null).length}
    >
      <ResponsiveContainer width="100%" height="100%">
        <ComposedChart data={days} margin={{ left: 0, right: 8, top: 8, bottom: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e4e7ee" />
          <XAxis dataKey="label" tick={{ fontSize: 10 }} minTickGap={16} />
          <YAxis tick={{ fontSize: 10 }} width={72} domain={domain} tickFormatter={axisUsd} />
          <Tooltip content={<DriftTooltip />} />
          <Legend />
          <ReferenceLine y={0} stroke="#6b7384" />
          <Bar dataKey="costDrift" name="metered − reported" fill={seriesColor('cost_drift')} isAnimationActive={false} />
          <Bar dataKey="priceDrift" name="Tally price − reported" fill={seriesColor('price_drift')} isAnimationActive={false} />
        </ComposedChart>
      </ResponsiveContainer>
    </div>
  );
}
