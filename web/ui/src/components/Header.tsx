import { Link } from '../router';

interface Props {
  route: string;
  userId: string | null;
  onSwitchUser: () => void;
}

/** The top bar: app name, navigation and the current user. */
export function Header({ route, userId, onSwitchUser }: Props) {
  return (
    <header className="topbar">
      <Link href="/" className="brand">
        Tally
      </Link>
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
        <Link href="/budgets" className={route === 'budgets' ? 'active' : ''} data-testid="nav-budgets">
          Budgets
        </Link>
        <Link href="/reconciliation" className={route === 'reconciliation' ? 'active' : ''} data-testid="nav-reconciliation">
          Reconciliation
        </Link>
      </nav>
      <div className="spacer" />
      {userId && (
        <div className="whoami">
          <span>
            user <strong data-testid="current-user">{userId}</strong>
          </span>
          <button type="button" className="link" onClick={onSwitchUser} data-testid="switch-user">
            switch user
          </button>
        </div>
      )}
    </header>
  );
}
