// Top level: header, user identification and the routes.

import { AnalyticsPage } from './components/AnalyticsPage';
import { BudgetsPage } from './components/BudgetsPage';
import { Dashboard } from './components/Dashboard';
import { Header } from './components/Header';
import { ReconciliationPage } from './components/ReconciliationPage';
import { UserForm } from './components/UserForm';
import { Workspace } from './components/Workspace';
import { Link, matchRoute, usePath } from './router';
import { USER_KEY, useStoredString } from './storage';

export function App() {
  const path = usePath();
  const route = matchRoute(path);
  const [userId, setUserId] = useStoredString(USER_KEY);

  let body;
  if (route.name === 'dashboard') {
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
    <div className="app">
      <Header route={route.name} userId={userId} onSwitchUser={() => setUserId(null)} />
      {body}
    </div>
  );
}
