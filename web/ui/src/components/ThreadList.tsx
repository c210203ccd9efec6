import { formatTime } from '../format';
import { formatUsd } from '../money';
import { Link } from '../router';
import type { Model, Thread } from '../types';

interface Props {
  threads: Thread[];
  loading: boolean;
  error: string | null;
  activeId: string | null;
  models: Model[];
  model: string;
  onModelChange: (model: string) => void;
  onCreate: () => void;
  creating: boolean;
  createError: string | null;
}

/** The user's threads with their running cost, and the new-thread control. */
export function ThreadList(p: Props) {
  return (
    <div className="thread-list-box">
      <div className="new-thread">
        <label className="small">
          Model for a new thread
          <select data-testid="model-select" value={p.model} onChange={(e) => p.onModelChange(e.target.value)}>
            {p.models.map((m) => (
              <option key={m.name} value={m.name}>
                {m.name}
                {m.is_default ? ' (default)' : ''}
                {m.simulated ? ' · simulated' : ''}
              </option>
            ))}
          </select>
        </label>
        <button type="button" data-testid="new-thread-button" onClick={p.onCreate} disabled={p.creating || !p.model}>
          {p.creating ? 'Creating…' : '+ New thread'}
        </button>
        {p.createError && (
          <p className="error" role="alert">
            {p.createError}
          </p>
        )}
      </div>
      <h3>Your threads</h3>
      {p.error && <p className="error">{p.error}</p>}
      {p.loading && <p className="muted">Loading…</p>}
      <ul className="thread-list" data-testid="thread-list">
        {p.threads.map((t) => (
          <li key={t.thread_id}>
            <Link
              href={`/threads/${t.thread_id}`}
              className={`thread-item${t.thread_id === p.activeId ? ' active' : ''}`}
              data-testid="thread-item"
              data-thread-id={t.thread_id}
            >
              <span className="thread-title">{t.title}</span>
              <span className="thread-meta">
                <span className="model-name">{t.model}</span>
                <span className="money" data-testid="thread-item-cost" data-amount={t.total_cost}>
                  {formatUsd(t.total_cost)}
                </span>
              </span>
              <span className="thread-time muted">{formatTime(t.updated_at)}</span>
            </Link>
          </li>
        ))}
        {!p.loading && !p.error && p.threads.length === 0 && <li className="muted">No threads yet.</li>}
      </ul>
    </div>
  );
}
