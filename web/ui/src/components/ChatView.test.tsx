import { act, cleanup, fireEvent, render, screen, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { THREAD_ID, USER_ID, assistantMessage, threadDetail, userMessage } from '../fixtures';
import { ChatView } from './ChatView';

afterEach(cleanup);

describe('ChatView', () => {
  it('shows each kind with tokens, unit price, cost and price version, the message total and the simulated badge', () => {
    render(<ChatView threadId={THREAD_ID} userId={USER_ID} initialThread={threadDetail()} />);

    const messages = screen.getAllByTestId('message');
    expect(messages.map((m) => m.getAttribute('data-role'))).toEqual(['user', 'assistant']);

    const reply = messages[1];
    expect(within(reply).getByTestId('simulated-badge').textContent).toBe('simulated');
    expect(within(messages[0]).queryByTestId('simulated-badge')).toBeNull();
    expect(within(messages[0]).queryByTestId('message-cost')).toBeNull();

    const rows = within(reply).getAllByTestId('message-kind-row');
    expect(rows.map((r) => r.getAttribute('data-kind'))).toEqual(['input_tokens', 'output_tokens', 'cache_read_tokens', 'images']);
    const out = rows[1];
    expect(out.textContent).toContain('Output');
    expect(within(out).getByTestId('message-kind-quantity').textContent).toBe('64 tok');
    expect(within(out).getByTestId('message-kind-unit-price').textContent).toBe('$4.00 / MTok');
    expect(within(out).getByTestId('message-kind-amount').textContent).toBe('$0.000256');
    expect(within(out).getByTestId('message-kind-version').getAttribute('data-version')).toBe('pv-output-0001');
    expect(within(rows[0]).getByTestId('message-kind-amount').textContent).toBe('$0.0000112');
    expect(within(rows[2]).getByTestId('message-kind-quantity').textContent).toBe('1,000 tok');
    expect(within(rows[3]).getByTestId('message-kind-unit-price').textContent).toBe('$0.04 / unit');

    const total = within(reply).getByTestId('message-cost');
    expect(total.textContent).toBe('$0.0803472');
    expect(total.getAttribute('data-amount')).toBe('0.0803472');
    expect(screen.getByTestId('thread-total').textContent).toBe('$0.0803472');
  });

  it('names the price version by its start when the version is known', () => {
    const idx = new Map([
      ['pv-output-0001', { id: 'pv-output-0001', model: 'm', kind: 'output_tokens', price: '4', effective_from: '2024-11-04T00:00:00Z', effective_to: null, is_current: true }],
    ]);
    render(<ChatView threadId={THREAD_ID} userId={USER_ID} initialThread={threadDetail()} priceIndex={idx} />);
    const row = screen.getAllByTestId('message-kind-row')[1];
    expect(within(row).getByTestId('message-kind-version').textContent).toMatch(/from 2024-11-0[34]/);
  });

  it('marks interrupted replies and hides the badge for real replies', () => {
    const real = assistantMessage({ simulated: false, status: 'interrupted' });
    render(<ChatView threadId={THREAD_ID} userId={USER_ID} initialThread={threadDetail([userMessage(), real])} />);
    expect(screen.queryByTestId('simulated-badge')).toBeNull();
    expect(screen.getByTestId('message-status').textContent).toBe('interrupted');
  });

  it('streams a reply token by token and then shows its cost and the new thread total', async () => {
    const enc = new TextEncoder();
    let push!: (s: string) => void;
    let close!: () => void;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        push = (s) => c.enqueue(enc.encode(s));
        close = () => c.close();
      },
    });
    const fetchMock = vi.fn().mockResolvedValue(new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } }));
    vi.stubGlobal('fetch', fetchMock);
    const onDone = vi.fn();

    const u2 = userMessage({ message_id: 'u2', content: 'Next question' });
    const a2 = assistantMessage({ message_id: 'a2', content: 'Hello world', cost_total: '0.0002672', thread_total_after: '0.0806144' });
    render(<ChatView threadId={THREAD_ID} userId={USER_ID} initialThread={threadDetail()} onTurnDone={onDone} />);

    fireEvent.change(screen.getByTestId('message-input'), { target: { value: 'Next question' } });
    fireEvent.click(screen.getByTestId('send-button'));

    const req = fetchMock.mock.calls[0];
    expect(req[0]).toBe('/api/messages/stream');
    expect(JSON.parse(req[1].body)).toEqual({ thread_id: THREAD_ID, user_id: USER_ID, content: 'Next question' });

    await act(async () => {
      push(`event: start\ndata: ${JSON.stringify({ user_message: u2, assistant_message_id: 'a2', model: 'm', simulated: true })}\n\n`);
      push('event: delta\ndata: {"text":"Hel"}\n\nevent: del');
      push('ta\ndata: {"text":"lo"}\n\n');
    });
    expect((await screen.findByTestId('streaming-text')).textContent).toContain('Hello');
    expect(screen.getAllByTestId('message').filter((m) => m.getAttribute('data-streaming') === 'true')).toHaveLength(2);

    await act(async () => {
      push('event: usage\ndata: {"usage":{"input_tokens":12,"output_tokens":5}}\n\n');
    });
    expect(screen.getByTestId('live-usage').textContent).toContain('Output 5');

    await act(async () => {
      push(`event: done\ndata: ${JSON.stringify({ user_message: u2, assistant_message: a2, thread_total: '0.0806144', simulated: true, error: null })}\n\n`);
      close();
    });
    await vi.waitFor(() => expect(onDone).toHaveBeenCalled());
    const messages = screen.getAllByTestId('message');
    expect(messages).toHaveLength(4);
    expect(messages.some((m) => m.getAttribute('data-streaming') === 'true')).toBe(false);
    expect(within(messages[3]).getByTestId('message-cost').textContent).toBe('$0.0002672');
    expect(screen.getByTestId('thread-total').textContent).toBe('$0.0806144');
  });

  it('shows an API error and keeps the draft when sending is refused', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn().mockResolvedValue(new Response(JSON.stringify({ code: 'thread_not_found', message: 'no such thread' }), { status: 404 })),
    );
    render(<ChatView threadId={THREAD_ID} userId={USER_ID} initialThread={threadDetail()} />);
    fireEvent.change(screen.getByTestId('message-input'), { target: { value: 'hi' } });
    fireEvent.click(screen.getByTestId('send-button'));
    expect((await screen.findByTestId('chat-notice')).textContent).toContain('thread_not_found');
    expect((screen.getByTestId('message-input') as HTMLTextAreaElement).value).toBe('hi');
  });
});
