// One thread: its messages with per-message costs, the running total, and the composer.

import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { getThread, streamMessage } from '../api';
import { errorText } from '../format';
import { formatUsd } from '../money';
import type { MessageView, PriceVersion, ThreadDetail } from '../types';
import { MessageBubble } from './MessageBubble';
import { StreamingBubble, type LiveReply } from './StreamingBubble';

interface Props {
  threadId: string;
  userId: string;
  priceIndex?: Map<string, PriceVersion>;
  onTurnDone?: () => void;
  /** For tests: a thread to show instead of loading it. */
  initialThread?: ThreadDetail;
}

export function ChatView({ threadId, userId, priceIndex, onTurnDone, initialThread }: Props) {
  const [thread, setThread] = useState<ThreadDetail | null>(initialThread ?? null);
  const [messages, setMessages] = useState<MessageView[]>(initialThread?.messages ?? []);
  const [total, setTotal] = useState<string>(initialThread?.total_cost ?? '0');
  const [loadError, setLoadError] = useState<string | null>(null);
  const [draft, setDraft] = useState('');
  const [live, setLive] = useState<LiveReply | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const bottom = useRef<HTMLDivElement>(null);
  const abort = useRef<AbortController | null>(null);

  const load = async () => {
    try {
      const t = await getThread(threadId);
      setThread(t);
      setMessages(t.messages);
      setTotal(t.total_cost);
      setLoadError(null);
    } catch (e) {
      setLoadError(errorText(e));
    }
  };

  useEffect(() => {
    if (!initialThread) void load();
    return () => abort.current?.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [threadId]);

  useEffect(() => {
    bottom.current?.scrollIntoView?.({ block: 'end' });
  }, [messages.length, live?.text]);

  const send = async (e?: FormEvent) => {
    e?.preventDefault();
    const content = draft.trim();
    if (!content || live) return;
    setDraft('');
    setNotice(null);
    const ctl = new AbortController();
    abort.current = ctl;
    setLive({ userText: content, userMessage: null, text: '', usage: null, simulated: null, model: thread?.model ?? '' });
    let started = false;
    try {
      const done = await streamMessage(
        { threadId, userId, content },
        {
          onStart: (s) => {
            started = true;
            setLive((l) => l && { ...l, userMessage: s.user_message, simulated: s.simulated, model: s.model });
          },
          onDelta: (d) => setLive((l) => l && { ...l, text: l.text + d.text }),
          onUsage: (u) => setLive((l) => l && { ...l, usage: u.usage }),
        },
        ctl.signal,
      );
      setMessages((m) => [...m, done.user_message, done.assistant_message]);
      setTotal(done.thread_total);
      if (done.error) setNotice(`The reply did not finish: ${done.error}. Usage so far was billed.`);
      setLive(null);
      onTurnDone?.();
    } catch (err) {
      if ((err as Error)?.name === 'AbortError') return;
      setLive(null);
      setNotice(`Sending failed: ${errorText(err)}`);
      if (started) {
        // The server stored the message; show what it kept.
        await load();
        onTurnDone?.();
      } else {
        setDraft(content);
      }
    } finally {
      if (abort.current === ctl) abort.current = null;
    }
  };

  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      void send();
    }
  };

  return (
    <div className="chat">
      <div className="chat-head">
        <div>
          <h2 data-testid="thread-title">{thread?.title ?? 'Thread'}</h2>
          <span className="muted small">
            {thread?.model ?? '…'} · {messages.length} messages
          </span>
        </div>
        <div className="thread-total-box">
          <span className="muted small">Thread total</span>
          <strong className="money big" data-testid="thread-total" data-amount={total}>
            {formatUsd(total)}
          </strong>
        </div>
      </div>
      {loadError && (
        <p className="error" role="alert">
          {loadError}
        </p>
      )}
      <div className="messages" data-testid="messages">
        {messages.map((m) => (
          <MessageBubble key={m.message_id} message={m} priceIndex={priceIndex} />
        ))}
        {live && <StreamingBubble live={live} />}
        {messages.length === 0 && !live && !loadError && <p className="muted center">No messages yet. Say hello.</p>}
        <div ref={bottom} />
      </div>
      {notice && (
        <p className="notice" role="status" data-testid="chat-notice">
          {notice}
        </p>
      )}
      <form className="composer" onSubmit={send}>
        <textarea
          data-testid="message-input"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={onKey}
          placeholder="Write a message… (Enter to send, Shift+Enter for a new line)"
          rows={2}
          disabled={!thread}
        />
        <button type="submit" data-testid="send-button" disabled={!draft.trim() || !!live || !thread}>
          {live ? 'Replying…' : 'Send'}
        </button>
      </form>
    </div>
  );
}
