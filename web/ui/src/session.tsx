// The signed-in session, shared with every component that hides admin-only things.

import { createContext, useContext } from 'react';
import { canAdmin, pinnedUser, type Session } from './auth';

/** Outside a provider (component tests) the UI behaves as in open mode: everything visible. */
const OPEN: Session = { mode: 'open', legacy: false };

export const SessionContext = createContext<Session>(OPEN);

export function useSession(): Session {
  return useContext(SessionContext);
}

/** Whether admin-only pages and actions are shown. */
export function useCanAdmin(): boolean {
  return canAdmin(useContext(SessionContext));
}

/** The user a signed-in user's key belongs to (their data only), or null when any user may be picked. */
export function usePinnedUser(): string | null {
  return pinnedUser(useContext(SessionContext));
}
