// Reconciliation at /reconciliation: the provider's own usage and cost reports against what
// Tally metered, per UTC day and model, with differences beyond a tolerance flagged, the daily
// drift as a chart, CSV export, and the provider connections that import the reports.

import { useMemo, useState } from 'react';
import { ApiError, getReconciliation, listProviderConnections } from '../api';
import { presetRange, rangeDays } from '../analytics';
import { downloadCsv } from '../csv';
import { errorText } from '../format';
import { useAsync } from '../hooks';
import { kindLabel } from '../kinds';
import { formatQuantity, formatUsd } from '../money';
import {
  diffQuantity,
  diffUsd,
  driftSeries,
  flaggedKinds,
  flagLabel,
  MAX_RANGE_DAYS,
  pctText,
  PROVIDERS,
  reconciliationCsv,
  reconciliationTotals,
  rowKey,
  rowKinds,
  sortedFlags,
  toleranceError,
} from '../reconciliation';
import type { ProviderName, ReconciliationRow } from '../types';
import { DriftChart } from './DriftChart';
import { ProviderConnections } from './ProviderConnections';

/** The preset ranges, in days. */
const PRESETS = [7, 30, 90];
/** Tolerance the page starts with, in percent (the API's default). */
const DEFAULT_TOLERANCE = '1';

function TokenCell({ row, kind, flagged }: { row: ReconciliationRow; kind: string; flagged: boolean }) {
  const rep = row.reported_tokens[kind];
  const met = row.metered_tokens[kind];
  if (rep === undefined && met === undefined) return <td className="num muted">—</td>;
  return (
    <td className={`num tokens${flagged ? ' flagged-cell' : ''}`} data-kind={kind} data-reported={rep ?? '0'} data-metered={met ?? '0'} data-diff={row.token_diff[kind] ?? ''}>
      <div title="reported by the provider">{formatQuantity(rep ?? '0')}</div>
      <div title="metered by Tally">{formatQuantity(met ?? '0')}</div>
      <div className="muted" title="metered minus reported">
        {diffQuantity(row.token_diff[kind])} <span>({pctText(row.token_diff_pct[kind])})</span>
      </div>
    </td>
  );
}

function DiffCell({ diff, pct, flagged, testId }: { diff: string | null; pct: string | null; flagged?: boolean; testId: string }) {
  return (
    <td className={`num money${flagged ? ' flagged-cell' : ''}`} data-testid={testId} data-amount={diff ?? ''} data-pct={pct ?? ''}>
      {diffUsd(diff)}
      <div className="muted">{pctText(pct)}</div>
    </td>
  );
}

export function ReconciliationPage() {
  const [provider, setProvider] = useState<ProviderName>('anthropic');
  const [range, setRange] = useState(() => presetRange(30, new Date()));
  const [tolerance, setTolerance] = useState(DEFAULT_TOLERANCE);
  const [version, setVersion] = useState(0);
  const changed = () => setVersion((v) => v + 1);

  const days = rangeDays(range.date_from, range.date_to);
  const rangeError = days === 0 ? 'the range ends before it starts' : days > MAX_RANGE_DAYS ? `the range is at most ${MAX_RANGE_DAYS} days` : null;
  const tolError = toleranceError(tolerance);
  const tol = tolerance.trim();

  const connections = useAsync(listProviderConnections, [version]);
  const recon = useAsync(
    () => (rangeError || tolError ? Promise.resolve(null) : getReconciliation({ provider, from: range.date_from, to: range.date_to, tolerance_pct: tol })),
    [provider, range.date_from, range.date_to, tol, !!tolError, !!rangeError, version],
  );
  const data = recon.data;
  const rows = useMemo(() => data?.rows ?? [], [data]);
  const kinds = useMemo(() => {
    const k = rowKinds(rows);
    return k.length ? k : ['input_tokens', 'output_tokens'];
  }, [rows]);
  const drift = useMemo(() => (data ? driftSeries(rows, data.from, data.to) : []), [rows, data]);
  const totals = useMemo(() => reconciliationTotals(rows), [rows]);
  const missingApi = recon.error instanceof ApiError && recon.error.status === 404;
  const activePreset = PRESETS.find((d) => {
    const p = presetRange(d, new Date());
    return p.date_from === range.date_from && p.date_to === range.date_to;
  });
  const providerConnections = (connections.data?.providers ?? []).filter((c) => c.provider === provider);

  const exportCsv = () => data && downloadCsv(`tally-reconciliation-${data.provider}-${data.from}-${data.to}.csv`, reconciliationCsv(rows));

  return (
    <main className="page reconciliation" data-testid="reconciliation">
      <div className="dash-head">
        <h2>Reconciliation</h2>
        <span className="muted small">The provider's own usage and cost reports against what Tally metered · UTC days, inclusive</span>
      </div>

      <section className="card filters" data-testid="reconciliation-filters">
        <div className="filter-row">
          <label>
            Provider
            <select value={provider} onChange={(e) => setProvider(e.target.value as ProviderName)} data-testid="reconciliation-provider">
              {PROVIDERS.map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
            </select>
          </label>
          <label>
            From
            <input type="date" value={range.date_from} max={range.date_to} onChange={(e) => e.target.value && setRange({ ...range, date_from: e.target.value })} data-testid="reconciliation-from" />
          </label>
          <label>
            To
            <input type="date" value={range.date_to} min={range.date_from} onChange={(e) => e.target.value && setRange({ ...range, date_to: e.target.value })} data-testid="reconciliation-to" />
          </label>
          <div className="presets">
            {PRESETS.map((d) => (
              <button
                key={d}
                type="button"
                className={activePreset === d ? 'tab active' : 'tab'}
                onClick={() => setRange(presetRange(d, new Date()))}
                data-testid={`reconciliation-preset-${d}`}
              >
                {d} days
              </button>
            ))}
          </div>
          <label>
            Tolerance %
            <input className="tolerance" inputMode="decimal" value={tolerance} onChange={(e) => setTolerance(e.target.value)} data-testid="reconciliation-tolerance" />
          </label>
          <button type="button" className="secondary" onClick={changed} data-testid="reconciliation-refresh">
            Refresh
          </button>
        </div>
        {(rangeError || tolError) && (
          <p className="error small" data-testid="reconciliation-input-error">
            {rangeError ?? tolError}
          </p>
        )}
        <p className="muted small">
          Differences are metered minus reported (token counts and cost) and Tally's price for the reported usage minus the reported cost; a row is flagged when a
          difference is beyond the tolerance of the reported figure.
        </p>
      </section>

      {missingApi ? (
        <p className="error" data-testid="reconciliation-unavailable">
          This server has no reconciliation API: <code>GET /api/reconciliation</code> answered 404.
        </p>
      ) : recon.error ? (
        <p className="error" data-testid="reconciliation-error" data-code={recon.error instanceof ApiError ? recon.error.code : ''}>
          {errorText(recon.error)}
        </p>
      ) : null}

      <div className="reconciliation-grid">
        <div>
          <div className="stat-row" data-testid="reconciliation-totals">
            <div className="stat card">
              <span className="muted small">Reported by {data?.provider ?? provider}</span>
              <strong className="money big" data-testid="reconciliation-total-reported" data-amount={totals.reported ?? ''}>
                {data ? formatUsd(totals.reported) : '—'}
              </strong>
            </div>
            <div className="stat card">
              <span className="muted small">Tally's price for it</span>
              <strong className="money big" data-testid="reconciliation-total-priced" data-amount={data ? totals.priced : ''}>
                {data ? formatUsd(totals.priced) : '—'}
              </strong>
              <span className="small muted">{data && totals.priceDiff !== null ? `${diffUsd(totals.priceDiff)} vs reported` : data ? 'no reported cost to compare' : ''}</span>
            </div>
            <div className="stat card">
              <span className="muted small">Metered by Tally</span>
              <strong className="money big" data-testid="reconciliation-total-metered" data-amount={data ? totals.metered : ''}>
                {data ? formatUsd(totals.metered) : '—'}
              </strong>
              <span className="small muted">{data && totals.costDiff !== null ? `${diffUsd(totals.costDiff)} vs reported` : data ? 'no reported cost to compare' : ''}</span>
            </div>
            <div className="stat card">
              <span className="muted small">Flagged rows</span>
              <strong className={`big${totals.flagged ? ' error' : ''}`} data-testid="reconciliation-flagged-count">
                {data ? `${totals.flagged} / ${rows.length}` : '—'}
              </strong>
              <span className="small muted">{data ? `tolerance ${data.tolerance_pct}%` : ''}</span>
            </div>
          </div>
          <section className="card" data-testid="reconciliation-drift">
            <h4>Daily drift</h4>
            {data && <DriftChart days={drift} />}
            <p className="muted small" data-testid="reconciliation-drift-note">
              {data && drift.every((d) => d.costDiff === null)
                ? 'No reported cost in this range yet, so there is no drift to draw: import the provider’s cost report first.'
                : 'Days and models without a reported cost add nothing to the drift.'}
            </p>
          </section>
        </div>
        <ProviderConnections connections={connections.data?.providers} error={connections.error} onChanged={changed} />
      </div>

      <section className="card reconciliation-table-card" data-testid="reconciliation-table-card">
        <div className="row between">
          <h4>
            By day and model{data && <span className="muted small"> · {data.provider}, {data.from} – {data.to}</span>}
          </h4>
          <button type="button" className="secondary small-button" onClick={exportCsv} disabled={!data || rows.length === 0} data-testid="reconciliation-csv">
            Export CSV
          </button>
        </div>
        {recon.loading && !data && <p className="muted small">Loading…</p>}
        {data && rows.length === 0 && (
          <p className="muted" data-testid="reconciliation-empty">
            Nothing to reconcile for {data.provider} from {data.from} to {data.to}: no usage was imported from the provider and none of its models was metered in this
            range.
            {providerConnections.length === 0 ? ' Add a connection to import the provider’s reports.' : ' Run an import to fetch the provider’s reports.'}
          </p>
        )}
        {data && rows.length > 0 && (
          <div className="table-scroll">
            <table className="cost-table reconciliation-table" data-testid="reconciliation-table">
              <thead>
                <tr>
                  <th>Day</th>
                  <th>Model</th>
                  {kinds.map((k) => (
                    <th key={k} className="num" title="reported / metered / difference">
                      {kindLabel(k)}
                      <div className="muted small">rep. / met. / Δ</div>
                    </th>
                  ))}
                  <th className="num">Reported cost</th>
                  <th className="num">Tally price</th>
                  <th className="num">Metered cost</th>
                  <th className="num" title="metered minus reported cost">
                    Metered − reported
                  </th>
                  <th className="num" title="Tally's price for the reported usage minus the reported cost">
                    Tally price − reported
                  </th>
                  <th className="num" title="imported / metered events">
                    Events
                  </th>
                  <th>Flags</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => {
                  const fk = flaggedKinds(r);
                  const costFlag = r.flags.includes('cost');
                  return (
                    <tr
                      key={rowKey(r)}
                      className={r.flagged ? 'flagged' : ''}
                      data-testid="reconciliation-row"
                      data-date={r.date}
                      data-model={r.model ?? ''}
                      data-flagged={String(r.flagged)}
                      data-flags={r.flags.join(' ')}
                    >
                      <td className="small nowrap">{r.date}</td>
                      <td className="small">{r.model ?? <span className="muted" title="provider cost Tally could not attribute to a model">not attributable</span>}</td>
                      {kinds.map((k) => (
                        <TokenCell key={k} row={r} kind={k} flagged={fk.has(k)} />
                      ))}
                      <td className="num money" data-testid="reconciliation-reported-cost" data-amount={r.reported_cost ?? ''}>
                        {formatUsd(r.reported_cost)}
                      </td>
                      <td className="num money" data-testid="reconciliation-priced-cost" data-amount={r.tally_priced_cost}>
                        {formatUsd(r.tally_priced_cost)}
                      </td>
                      <td className="num money" data-testid="reconciliation-metered-cost" data-amount={r.metered_cost}>
                        {formatUsd(r.metered_cost)}
                      </td>
                      <DiffCell diff={r.cost_diff} pct={r.cost_diff_pct} flagged={costFlag} testId="reconciliation-cost-diff" />
                      <DiffCell diff={r.price_diff} pct={r.price_diff_pct} testId="reconciliation-price-diff" />
                      <td className="num small">
                        {r.reported_events} / {r.metered_events}
                      </td>
                      <td className="small" data-testid="reconciliation-flags">
                        {r.flags.length === 0 ? (
                          <span className="muted">within tolerance</span>
                        ) : (
                          sortedFlags(r.flags).map((f) => (
                            <span key={f} className="badge flag" data-flag={f}>
                              {flagLabel(f)}
                            </span>
                          ))
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </main>
  );
}
