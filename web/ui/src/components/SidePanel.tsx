import { useState } from 'react';
import type { Model } from '../types';
import { BillingTab } from './BillingTab';
import { DataTab } from './DataTab';
import { KeysTab } from './KeysTab';
import { SettingsTab } from './SettingsTab';

type Tab = 'billing' | 'keys' | 'data' | 'settings';

interface Props {
  userId: string;
  threadId: string | null;
  threadModel: string | null;
  models: Model[];
  newThreadModel: string;
  onNewThreadModel: (m: string) => void;
  version: number;
  onChanged: () => void;
}

/** The tabs beside the chat: Billing, Keys, Data, Settings. */
export function SidePanel(p: Props) {
  const [tab, setTab] = useState<Tab>('billing');
  const tabs: [Tab, string][] = [
    ['billing', 'Billing'],
    ['keys', 'Keys'],
    ['data', 'Data'],
    ['settings', 'Settings'],
  ];
  return (
    <div className="side-panel">
      <div className="tabs" role="tablist">
        {tabs.map(([id, label]) => (
          <button
            key={id}
            type="button"
            role="tab"
            aria-selected={tab === id}
            className={tab === id ? 'tab active' : 'tab'}
            data-testid={`tab-${id}`}
            onClick={() => setTab(id)}
          >
            {label}
          </button>
        ))}
      </div>
      <div className="tab-body" role="tabpanel">
        {tab === 'billing' && <BillingTab userId={p.userId} threadId={p.threadId} version={p.version} onChanged={p.onChanged} />}
        {tab === 'keys' && <KeysTab userId={p.userId} models={p.models} />}
        {tab === 'data' && <DataTab userId={p.userId} version={p.version} />}
        {tab === 'settings' && (
          <SettingsTab
            models={p.models}
            newThreadModel={p.newThreadModel}
            onNewThreadModel={p.onNewThreadModel}
            threadModel={p.threadModel}
            onChanged={p.onChanged}
          />
        )}
      </div>
    </div>
  );
}
