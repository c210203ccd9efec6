// The chat page: threads on the left, the chat in the middle, tabs on the right.

import { useCallback, useMemo, useState } from 'react';
import { createThread, listModels, listPrices, listThreads } from '../api';
import { errorText } from '../format';
import { useAsync } from '../hooks';
import { navigate } from '../router';
import { MODEL_KEY, useStoredString } from '../storage';
import type { PriceVersion } from '../types';
import { ChatView } from './ChatView';
import { SidePanel } from './SidePanel';
import { ThreadList } from './ThreadList';

interface Props {
  userId: string;
  threadId: string | null;
}

export function Workspace({ userId, threadId }: Props) {
  // Bumped whenever something billable changed, so the panels reload.
  const [version, setVersion] = useState(0);
  const bump = useCallback(() => setVersion((v) => v + 1), []);

  const models = useAsync(listModels, []);
  const threads = useAsync(() => listThreads(userId), [userId, version]);
  const [storedModel, setStoredModel] = useStoredString(MODEL_KEY);
  const [createError, setCreateError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);

  const activeModels = useMemo(() => (models.data ?? []).filter((m) => m.is_active), [models.data]);
  const defaultModel = activeModels.find((m) => m.is_default)?.name ?? activeModels[0]?.name ?? '';
  const newThreadModel = activeModels.some((m) => m.name === storedModel) ? (storedModel as string) : defaultModel;

  const current = threads.data?.find((t) => t.thread_id === threadId) ?? null;
  const threadModel = current?.model ?? null;

  // Every price version of the thread's model, to name the version each cost line used.
  const prices = useAsync<PriceVersion[]>(
    () => (threadModel ? listPrices({ model: threadModel, history: true }) : Promise.resolve([])),
    [threadModel, version],
  );
  const priceIndex = useMemo(() => new Map((prices.data ?? []).map((p) => [p.id, p])), [prices.data]);

  const onCreate = async () => {
    setCreating(true);
    setCreateError(null);
    try {
      const t = await createThread(userId, newThreadModel || undefined);
      bump();
      navigate(`/threads/${t.thread_id}`);
    } catch (e) {
      setCreateError(errorText(e));
    } finally {
      setCreating(false);
    }
  };

  return (
    <main className="workspace">
      <aside className="threads-pane">
        <ThreadList
          threads={threads.data ?? []}
          loading={threads.loading && !threads.data}
          error={threads.error ? errorText(threads.error) : null}
          activeId={threadId}
          models={activeModels}
          model={newThreadModel}
          onModelChange={setStoredModel}
          onCreate={onCreate}
          creating={creating}
          createError={createError}
        />
      </aside>
      <section className="chat-pane">
        {threadId ? (
          <ChatView
            key={threadId}
            threadId={threadId}
            userId={userId}
            priceIndex={priceIndex}
            onTurnDone={bump}
          />
        ) : (
          <div className="empty-chat">
            <h2>Start chatting</h2>
            <p className="muted">Create a new thread on the left, or rejoin one of yours.</p>
          </div>
        )}
      </section>
      <aside className="side-pane">
        <SidePanel
          userId={userId}
          threadId={threadId}
          threadModel={threadModel}
          models={models.data ?? []}
          newThreadModel={newThreadModel}
          onNewThreadModel={setStoredModel}
          version={version}
          onChanged={bump}
        />
      </aside>
    </main>
  );
}
