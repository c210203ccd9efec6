import { useEffect, useState } from 'react';
import { agoText } from '../dashboardState';
import { formatTime } from '../format';

/** Seconds since the dashboard last heard from the server, ticking; stale past the 15 s SLA. */
export function Freshness({ receivedAt, lastEventAt }: { receivedAt: number | null; lastEventAt: string | null }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const id = window.setInterval(() => setNow(Date.now()), 100);
    return () => window.clearInterval(id);
  }, []);
  const age = receivedAt === null ? null : now - receivedAt;
  const stale = age !== null && age > 15_000;
  return (
    <span className={`freshness${stale ? ' stale' : ''}`}>
      <span data-testid="dashboard-updated" data-age-ms={age === null ? '' : String(Math.round(age))}>
        {age === null ? 'no data yet' : `updated ${agoText(age)}`}
      </span>
      {lastEventAt && <span className="muted small"> · last usage {formatTime(lastEventAt)}</span>}
    </span>
  );
}
