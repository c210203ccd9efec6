import type { Session } from '../auth';
import { canAdmin } from '../auth';
import { Link } from '../router';

interface Props {
  route: string;
  /** The user the chat acts as (picked, or the signed-in user's own). */
  userId: string | null;
  /** Null while signed out (token mode): only the brand is shown. */
  session: Session | null;
  onSwitchUser: () => void;
  onSignOut: () => void;
}

/** The top bar: app name, navigation (admin-only pages only for admins), the current user and who is signed in. */
export function Header({ route, userId, session, onSwitchUser, onSignOut }: Props) {
  const admin = canAdmin(session);
  const pinned = session?.mode === 'token' && session.caller === 'user';
  return (
    <header className="topbar">
      <Link href="/" className="brand">
        Tally
      </Link>
      {session && (
        <nav>
          <Link href="/" className={route === 'home' || route === 'thread' ? 'active' : ''} data-testid="nav-chat">
            Chat
          </Link>
          <Link href="/dashboard" className={route === 'dashboard' ? 'active' : ''} data-testid="nav-dashboard">
            Dashboard
          </Link>
          <Link href="/analytics" className={route === 'analytics' ? 'active' : ''} data-testid="nav-analytics">
            Analytics
          </Link>
          {admin && (
            <Link href="/budgets" className={route === 'budgets' ? 'active' : ''} data-testid="nav-budgets">
              Budgets
            </Link>
          )}
          {admin && (
            <Link href="/reconciliation" className={route === 'reconciliation' ? 'active' : ''} data-testid="nav-reconciliation">
              Reconciliation
            </Link>
          )}
        </nav>
      )}
      <div className="spacer" />
      {userId && !pinned && (
        <div className="whoami">
          <span>
            user <strong data-testid="current-user">{userId}</strong>
          </span>
          <button type="button" className="link" onClick={onSwitchUser} data-testid="switch-user">
            switch user
          </button>
        </div>
      )}
      {session?.mode === 'token' && (
        <div className="whoami" data-testid="signed-in" data-caller={session.caller}>
          <span>
            signed in as{' '}
            {session.caller === 'admin' ? (
              <strong data-testid="signed-in-as">admin</strong>
            ) : (
              // A user's key acts as its user only: the signed-in user is the chat's user.
              <>
                user{' '}
                <strong data-testid="signed-in-as">
                  <span data-testid="current-user">{session.userId}</span>
                </strong>
              </>
            )}
          </span>
          <button type="button" className="link" onClick={onSignOut} data-testid="sign-out">
            sign out
          </button>
        </div>
      )}
    </header>
  );
}
