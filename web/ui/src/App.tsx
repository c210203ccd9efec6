// Top level: who is calling (whoami: open mode, sign-in, admin or a user), header, user
// identification and the routes.

import { useCallback, useEffect, useState } from 'react';
import { ADMIN_ROUTES, canAdmin, onUnauthorized, pinnedUser } from './auth';
import { signOut, startSession, unauthorizedState, type AuthState } from './authFlow';
import { AnalyticsPage } from './components/AnalyticsPage';
import { BudgetsPage } from './components/BudgetsPage';
import { Dashboard } from './components/Dashboard';
import { Header } from './components/Header';
import { ReconciliationPage } from './components/ReconciliationPage';
import { SignIn } from './components/SignIn';
import { UserForm } from './components/UserForm';
import { Workspace } from './components/Workspace';
import { Link, matchRoute, usePath } from './router';
import { SessionContext } from './session';
import { USER_KEY, useStoredString } from './storage';

export const OPEN_MODE_TEXT = 'Open mode: anyone who can reach this port can act as any user. Start with --auth token to require keys.';

export function App() {
  const path = usePath();
  const route = matchRoute(path);
  const [storedUserId, setUserId] = useStoredString(USER_KEY);
  const [auth, setAuth] = useState<AuthState>({ phase: 'checking' });
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    setAuth({ phase: 'checking' });
    startSession().then((s) => {
      if (live) setAuth(s);
    });
    return () => {
      live = false;
    };
  }, [attempt]);

  // A 401 from any call (expired, revoked or rotated credential): back to sign-in, saying why.
  useEffect(() => onUnauthorized((err) => setAuth(unauthorizedState(err))), []);

  const onSignOut = useCallback(() => setAuth(signOut()), []);

  const session = auth.phase === 'ready' ? auth.session : null;
  // A user's key acts only as its own user; the user-id entry is for open mode and the admin.
  const pinned = pinnedUser(session);
  const userId = pinned ?? storedUserId;

  let body;
  if (auth.phase === 'checking') {
    body = (
      <main className="page narrow">
        <p className="muted" data-testid="auth-checking">
          Connecting…
        </p>
      </main>
    );
  } else if (auth.phase === 'failed') {
    body = (
      <main className="page narrow">
        <p className="error" role="alert" data-testid="auth-failed">
          {auth.message}
        </p>
        <button type="button" onClick={() => setAttempt((a) => a + 1)} data-testid="auth-retry">
          Try again
        </button>
      </main>
    );
  } else if (auth.phase === 'signin') {
    body = <SignIn message={auth.message} onSignedIn={setAuth} />;
  } else if (ADMIN_ROUTES.includes(route.name) && !canAdmin(session)) {
    body = (
      <main className="page narrow" data-testid="admin-only">
        <h2>Admins only</h2>
        <p>
          This page needs the admin token; you are signed in with a user&apos;s key. <Link href="/">Go to the chat</Link>.
        </p>
      </main>
    );
  } else if (route.name === 'dashboard') {
    body = <Dashboard />;
  } else if (route.name === 'analytics') {
    body = <AnalyticsPage />;
  } else if (route.name === 'budgets') {
    body = <BudgetsPage />;
  } else if (route.name === 'reconciliation') {
    body = <ReconciliationPage />;
  } else if (route.name === 'notFound') {
    body = (
      <main className="page narrow">
        <h2>Not found</h2>
        <p>
          Nothing lives at <code>{path}</code>. <Link href="/">Go to the chat</Link>.
        </p>
      </main>
    );
  } else if (!userId) {
    body = (
      <main className="page narrow">
        <UserForm onUser={setUserId} />
      </main>
    );
  } else {
    body = <Workspace userId={userId} threadId={route.name === 'thread' ? route.threadId : null} />;
  }

  return (
    <SessionContext.Provider value={session ?? { mode: 'open', legacy: false }}>
      <div className="app">
        <Header route={route.name} userId={session ? userId : null} session={session} onSwitchUser={() => setUserId(null)} onSignOut={onSignOut} />
        {session?.mode === 'open' && (
          <div className="notice open-banner" role="note" data-testid="open-mode-banner">
            {OPEN_MODE_TEXT}
          </div>
        )}
        {body}
      </div>
    </SessionContext.Provider>
  );
}
