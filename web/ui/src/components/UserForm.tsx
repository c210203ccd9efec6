import { useState, type FormEvent } from 'react';
import { ensureUser } from '../api';
import { errorText } from '../format';
import { useSession } from '../session';

const USER_ID = /^[A-Za-z0-9_.@-]{1,64}$/;

interface Props {
  onUser: (userId: string) => void;
}

/** Enter a user id (no login). The user is created if it does not exist yet. */
export function UserForm({ onUser }: Props) {
  const [value, setValue] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const session = useSession();

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const id = value.trim();
    if (!USER_ID.test(id)) {
      setError("A user id is 1-64 letters, digits, '_', '.', '@' or '-'.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await ensureUser(id);
      onUser(id);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="card user-form" onSubmit={submit}>
      <h2>Who is chatting?</h2>
      <p className="muted">
        {session.mode === 'token'
          ? 'Signed in as admin, you may act as any user: a new id creates a user, a known one picks it up again.'
          : 'Enter a user id. There is no login: a new id creates a user, a known one picks it up again.'}
      </p>
      <label>
        User id
        <input
          data-testid="user-id-input"
          value={value}
          onChange={(e) => setValue(e.target.value)}
          placeholder="e.g. alice"
          autoFocus
          maxLength={64}
        />
      </label>
      <button type="submit" data-testid="user-id-submit" disabled={busy}>
        {busy ? 'Checking…' : 'Continue'}
      </button>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
