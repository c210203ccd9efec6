// Provider connections of the Reconciliation page: the stored connections (admin key masked,
// last run, status and error), adding one, deleting one, "Import now" and the recent runs.
// The admin key typed in the form is sent once and cleared; the page never shows it again.

import { useState, type FormEvent } from 'react';
import { ApiError, createProviderConnection, deleteProviderConnection, importProviderNow, listImportRuns } from '../api';
import { errorText, formatTimeShort, shortId } from '../format';
import { useAsync } from '../hooks';
import { importWindow, IMPORT_NOW_HOURS, PROVIDERS, runSummary } from '../reconciliation';
import type { ImportRun, ProviderConnection, ProviderName } from '../types';
import { Confirm } from './Confirm';

/** Runs listed under a connection. */
const RUNS_SHOWN = 10;

function statusBadge(status: string | null) {
  return <span className={`badge status-${status ?? 'none'}`}>{status ?? 'never run'}</span>;
}

/** The failed run an error answer carries (502 provider_error), if any. */
function runOf(e: unknown): ImportRun | null {
  if (!(e instanceof ApiError) || !e.body || typeof e.body !== 'object') return null;
  const run = (e.body as { run?: unknown }).run;
  return run && typeof run === 'object' && 'run_id' in run ? (run as ImportRun) : null;
}

function ConnectionForm({ onCreated, onCancel }: { onCreated: (c: ProviderConnection) => void; onCancel: () => void }) {
  const [provider, setProvider] = useState<ProviderName>('anthropic');
  const [name, setName] = useState('');
  const [adminKey, setAdminKey] = useState('');
  const [baseUrl, setBaseUrl] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<{ code: string; text: string } | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const url = baseUrl.trim();
      const created = await createProviderConnection({ provider, name: name.trim(), admin_key: adminKey, ...(url ? { base_url: url } : {}) });
      // The key is gone from the page as soon as the server has it.
      setAdminKey('');
      setName('');
      setBaseUrl('');
      onCreated(created);
    } catch (err) {
      setError({ code: err instanceof ApiError ? err.code : 'error', text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="connection-form" onSubmit={submit} data-testid="connection-form" autoComplete="off">
      <div className="two-col">
        <label>
          Provider
          <select value={provider} onChange={(e) => setProvider(e.target.value as ProviderName)} data-testid="connection-form-provider">
            {PROVIDERS.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} placeholder="e.g. anthropic-prod" data-testid="connection-form-name" />
        </label>
      </div>
      <label>
        Admin key
        <input
          type="password"
          value={adminKey}
          onChange={(e) => setAdminKey(e.target.value)}
          autoComplete="new-password"
          spellCheck={false}
          placeholder={provider === 'anthropic' ? 'sk-ant-admin…' : 'sk-admin-…'}
          data-testid="connection-form-key"
        />
      </label>
      <label>
        Base URL (optional)
        <input value={baseUrl} onChange={(e) => setBaseUrl(e.target.value)} placeholder="the provider's API" data-testid="connection-form-base-url" />
      </label>
      <p className="muted small">The key is stored encrypted and only ever shown masked. It needs read access to the organization's usage and cost reports.</p>
      {error && (
        <p className="error small" data-testid="connection-form-error" data-code={error.code}>
          {error.text}
        </p>
      )}
      <div className="row">
        <button type="submit" disabled={busy} data-testid="connection-form-submit">
          {busy ? 'Saving…' : 'Add connection'}
        </button>
        <button type="button" className="secondary" onClick={onCancel} disabled={busy} data-testid="connection-form-cancel">
          Cancel
        </button>
      </div>
    </form>
  );
}

function RunsTable({ runs }: { runs: ImportRun[] }) {
  if (runs.length === 0) return <p className="muted small">No runs yet.</p>;
  return (
    <table className="cost-table compact runs" data-testid="connection-runs">
      <thead>
        <tr>
          <th>Started</th>
          <th>Trigger</th>
          <th>Status</th>
          <th className="num">New</th>
          <th className="num">Rev.</th>
          <th className="num">Same</th>
          <th className="num">Skip</th>
          <th className="num">Costs</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr key={r.run_id} data-testid="connection-run-row" data-run-id={r.run_id} data-status={r.status}>
            <td className="small" title={`${r.range_from} – ${r.range_to}`}>
              {formatTimeShort(r.started_at)}
              {r.error && <div className="error small wrap">{r.error}</div>}
            </td>
            <td className="small">{r.trigger}</td>
            <td>{statusBadge(r.status)}</td>
            <td className="num">{r.events_new}</td>
            <td className="num">{r.events_revised}</td>
            <td className="num">{r.events_unchanged}</td>
            <td className="num">{r.skipped}</td>
            <td className="num">{r.costs}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function ConnectionItem({ c, onChanged }: { c: ProviderConnection; onChanged: () => void }) {
  const [showRuns, setShowRuns] = useState(false);
  const [runsVersion, setRunsVersion] = useState(0);
  const [importing, setImporting] = useState(false);
  const [result, setResult] = useState<{ ok: true; run: ImportRun } | { ok: false; code: string; text: string; run: ImportRun | null } | null>(null);
  const [deleteError, setDeleteError] = useState<string | null>(null);
  const runs = useAsync(() => (showRuns ? listImportRuns(c.connection_id, RUNS_SHOWN) : Promise.resolve(null)), [showRuns, runsVersion, c.connection_id]);

  const importNow = async () => {
    setImporting(true);
    setResult(null);
    const w = importWindow(new Date());
    try {
      setResult({ ok: true, run: await importProviderNow(c.connection_id, w.from, w.to) });
    } catch (e) {
      setResult({ ok: false, code: e instanceof ApiError ? e.code : 'error', text: errorText(e), run: runOf(e) });
    } finally {
      setImporting(false);
      setRunsVersion((v) => v + 1);
      onChanged();
    }
  };

  const remove = async () => {
    setDeleteError(null);
    try {
      await deleteProviderConnection(c.connection_id);
      onChanged();
    } catch (e) {
      setDeleteError(errorText(e));
    }
  };

  return (
    <li className="connection" data-testid="provider-connection" data-connection-id={c.connection_id} data-name={c.name} data-provider={c.provider} data-status={c.last_status ?? ''}>
      <div className="row between">
        <strong>{c.name}</strong>
        <span>
          <span className="badge">{c.provider}</span>
          {!c.enabled && <span className="badge">disabled</span>}
        </span>
      </div>
      <dl className="kv small">
        <dt>Admin key</dt>
        <dd>
          <code data-testid="connection-key">{c.admin_key}</code>
        </dd>
        <dt>Base URL</dt>
        <dd className="wrap">{c.base_url}</dd>
        <dt>Last run</dt>
        <dd data-testid="connection-last-run">
          {formatTimeShort(c.last_run_at)} {statusBadge(c.last_status)}
        </dd>
        {c.last_error && (
          <>
            <dt>Last error</dt>
            <dd className="error wrap" data-testid="connection-last-error">
              {c.last_error}
            </dd>
          </>
        )}
      </dl>
      <div className="row connection-actions">
        <button type="button" className="small-button" onClick={importNow} disabled={importing} title={`Import the last ${IMPORT_NOW_HOURS} hours now`} data-testid="connection-import">
          {importing ? 'Importing…' : 'Import now'}
        </button>
        <button type="button" className="link small" onClick={() => setShowRuns((s) => !s)} data-testid="connection-runs-toggle">
          {showRuns ? 'Hide runs' : 'Recent runs'}
        </button>
        <Confirm
          label="Delete"
          asLink
          danger
          question={
            <>
              Delete <strong>{c.name}</strong>? Its runs and reported costs go; usage already imported stays billed.
            </>
          }
          confirmLabel="Delete connection"
          onConfirm={remove}
          testId="connection-delete"
        />
      </div>
      {deleteError && <p className="error small">{deleteError}</p>}
      {result?.ok && (
        <p className="small" data-testid="connection-import-result" data-status={result.run.status} data-run-id={result.run.run_id}>
          Imported the last {IMPORT_NOW_HOURS} h: {runSummary(result.run)}
          {result.run.error && <span className="muted wrap"> — {result.run.error}</span>}
        </p>
      )}
      {result && !result.ok && (
        <p className="error small wrap" data-testid="connection-import-error" data-code={result.code} data-run-id={result.run?.run_id ?? ''}>
          Import failed: {result.text}
          {result.run && <span className="muted"> (run {shortId(result.run.run_id)} recorded as {result.run.status})</span>}
        </p>
      )}
      {showRuns && (
        <div className="connection-runs">
          {runs.error ? <p className="error small">{errorText(runs.error)}</p> : null}
          {runs.data && <RunsTable runs={runs.data.runs} />}
        </div>
      )}
    </li>
  );
}

interface Props {
  connections: ProviderConnection[] | undefined;
  error: unknown;
  /** A connection was added, deleted or imported: reload the list and the reconciliation. */
  onChanged: () => void;
}

/** The provider connections card. */
export function ProviderConnections({ connections, error, onChanged }: Props) {
  const [adding, setAdding] = useState(false);
  const missingApi = error instanceof ApiError && error.status === 404;
  return (
    <section className="card provider-connections" data-testid="provider-connections">
      <div className="row between">
        <h4>Provider connections</h4>
        {!adding && (
          <button type="button" className="secondary small-button" onClick={() => setAdding(true)} disabled={missingApi} data-testid="connection-add">
            Add connection
          </button>
        )}
      </div>
      {adding && (
        <ConnectionForm
          onCreated={() => {
            setAdding(false);
            onChanged();
          }}
          onCancel={() => setAdding(false)}
        />
      )}
      {missingApi ? (
        <p className="error small" data-testid="providers-unavailable">
          This server has no provider import API: <code>GET /api/providers</code> answered 404.
        </p>
      ) : error ? (
        <p className="error small">{errorText(error)}</p>
      ) : null}
      {connections && connections.length === 0 && !adding && (
        <p className="muted small" data-testid="connections-empty">
          No connections yet. Add an Anthropic or OpenAI admin key to import the provider's own usage and cost reports.
        </p>
      )}
      <ul className="plain connection-list" data-testid="connection-list">
        {(connections ?? []).map((c) => (
          <ConnectionItem key={c.connection_id} c={c} onChanged={onChanged} />
        ))}
      </ul>
    </section>
  );
}
