import { useEffect, useState } from 'react';
import { Area, AreaChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { seriesColor } from '../chart';
import { seriesRows, type Bucket } from '../dashboardState';
import { isTokenKind, kindLabel, kindOrder } from '../kinds';

/** Token usage by kind per second over the last minute, from live usage events. */
export function UsageOverTime({ buckets, kinds }: { buckets: Bucket[]; kinds: string[] }) {
  const [nowSecond, setNowSecond] = useState(() => Math.floor(Date.now() / 1000));
  useEffect(() => {
    const id = window.setInterval(() => setNowSecond(Math.floor(Date.now() / 1000)), 1000);
    return () => window.clearInterval(id);
  }, []);
  const tokenKinds = kinds.filter(isTokenKind).sort(kindOrder);
  const rows = seriesRows(buckets, tokenKinds, nowSecond, 60);
  return (
    <section className="card dash-card wide" data-testid="dashboard-usage-over-time">
      <h4>Tokens per second by kind (last minute)</h4>
      {tokenKinds.length === 0 ? (
        <p className="muted">Waiting for usage events…</p>
      ) : (
        <div className="chart" style={{ height: 220 }}>
          <ResponsiveContainer width="100%" height="100%">
            <AreaChart data={rows} margin={{ left: 0, right: 8, top: 8, bottom: 0 }}>
              <CartesianGrid strokeDasharray="3 3" stroke="#e4e7ee" />
              <XAxis dataKey="label" tick={{ fontSize: 10 }} minTickGap={24} />
              <YAxis tick={{ fontSize: 10 }} width={48} />
              <Tooltip />
              <Legend formatter={(v: string) => kindLabel(v)} />
              {tokenKinds.map((k) => (
                <Area
                  key={k}
                  type="monotone"
                  dataKey={k}
                  name={k}
                  stackId="tokens"
                  stroke={seriesColor(k)}
                  fill={seriesColor(k)}
                  fillOpacity={0.35}
                  isAnimationActive={false}
                />
              ))}
            </AreaChart>
          </ResponsiveContainer>
        </div>
      )}
    </section>
  );
}
