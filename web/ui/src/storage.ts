// Small persisted settings (localStorage), safe where storage is unavailable.

import { useCallback, useState } from 'react';

export const USER_KEY = 'tally.userId';
export const MODEL_KEY = 'tally.newThreadModel';

export function readStored(key: string): string | null {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function writeStored(key: string, value: string | null): void {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    // storage disabled: keep it in memory only
  }
}

/** A string state mirrored into localStorage. */
export function useStoredString(key: string): [string | null, (v: string | null) => void] {
  const [value, setValue] = useState<string | null>(() => readStored(key));
  const set = useCallback(
    (v: string | null) => {
      writeStored(key, v);
      setValue(v);
    },
    [key],
  );
  return [value, set];
}
