import { Area, Bar, CartesianGrid, ComposedChart, Legend, Line, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import type { TrendRow } from '../analytics';
import { formatUsd } from '../money';

/** Tooltip text from the rows' exact strings (the numbers only place the marks). */
function TrendTooltip({ active, payload }: { active?: boolean; payload?: { payload?: TrendRow }[] }) {
  const row = payload?.[0]?.payload;
  if (!active || !row) return null;
  return (
    <div className="chart-tip small">
      <strong>{row.start}</strong>
      {row.costText !== undefined && (
        <div>
          cost {formatUsd(row.costText)} · {row.requests ?? 0} req
        </div>
      )}
      {row.forecast && (
        <>
          <div>
            forecast {formatUsd(row.forecast.mean)} ({row.forecast.days} day{row.forecast.days === 1 ? '' : 's'})
          </div>
          <div className="muted">
            80% {formatUsd(row.forecast.lower_80)} – {formatUsd(row.forecast.upper_80)}
          </div>
          <div className="muted">
            95% {formatUsd(row.forecast.lower_95)} – {formatUsd(row.forecast.upper_95)}
          </div>
        </>
      )}
    </div>
  );
}

/** Recorded cost per bucket as bars, then the forecast mean as a line inside its 80% and 95% bands. */
export function TrendChart({ rows }: { rows: TrendRow[] }) {
  const withForecast = rows.some((r) => r.forecast);
  return (
    <div
      className="chart"
      style={{ height: 260 }}
      data-testid="analytics-trend-chart"
      data-rows={rows.length}
      data-forecast-rows={rows.filter((r) => r.forecast).length}
      data-forecast-only={rows.filter((r) => r.costText === undefined).length}
    >
      <ResponsiveContainer width="100%" height="100%">
        <ComposedChart data={rows} margin={{ left: 0, right: 8, top: 8, bottom: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="#e4e7ee" />
          <XAxis dataKey="label" tick={{ fontSize: 10 }} minTickGap={16} />
          <YAxis tick={{ fontSize: 10 }} width={56} />
          <Tooltip content={<TrendTooltip />} />
          <Legend />
          {withForecast && <Area dataKey="band95" name="forecast 95%" stroke="none" fill="#ff8a3d" fillOpacity={0.15} isAnimationActive={false} connectNulls={false} />}
          {withForecast && <Area dataKey="band80" name="forecast 80%" stroke="none" fill="#ff8a3d" fillOpacity={0.3} isAnimationActive={false} connectNulls={false} />}
          <Bar dataKey="cost" name="cost" fill="#4f7cff" isAnimationActive={false} />
          {withForecast && <Line dataKey="mean" name="forecast mean" stroke="#e8590c" strokeDasharray="4 3" dot={false} isAnimationActive={false} connectNulls={false} />}
        </ComposedChart>
      </ResponsiveContainer>
    </div>
  );
}
