// Fake API objects for component tests.
import type { MessageView, Snapshot, ThreadDetail } from './types';

export const THREAD_ID = '0192f000-0000-7000-8000-00000000a001';
export const USER_ID = 'alice';

export function userMessage(over: Partial<MessageView> = {}): MessageView {
  return {
    message_id: '0192f000-0000-7000-8000-0000000000u1',
    thread_id: THREAD_ID,
    user_id: USER_ID,
    role: 'user',
    content: 'Hello there',
    model: 'claude-3-5-haiku-20241022',
    created_at: '2025-01-02T03:04:05Z',
    simulated: false,
    status: 'complete',
    usage: null,
    cost: null,
    cost_by_kind: {},
    cost_total: '0',
    thread_total_after: '0',
    ...over,
  };
}

export function assistantMessage(over: Partial<MessageView> = {}): MessageView {
  return {
    message_id: '0192f000-0000-7000-8000-0000000000a1',
    thread_id: THREAD_ID,
    user_id: USER_ID,
    role: 'assistant',
    content: 'Hi! How can I help?',
    model: 'claude-3-5-haiku-20241022',
    created_at: '2025-01-02T03:04:06Z',
    simulated: true,
    status: 'complete',
    usage: { input_tokens: '14', output_tokens: '64', cache_read_tokens: '1000', images: '2' },
    cost: {
      lines: [
        { kind: 'input_tokens', unit: 'tokens', quantity: '14', unit_price: '0.80', price_version_id: 'pv-input-0001', amount: '0.0000112' },
        { kind: 'output_tokens', unit: 'tokens', quantity: '64', unit_price: '4', price_version_id: 'pv-output-0001', amount: '0.000256' },
        { kind: 'cache_read_tokens', unit: 'tokens', quantity: '1000', unit_price: '0.08', price_version_id: 'pv-cread-0001', amount: '0.00008' },
        { kind: 'images', unit: 'units', quantity: '2', unit_price: '0.04', price_version_id: 'pv-images-0001', amount: '0.08' },
      ],
      total: '0.0803472',
    },
    cost_by_kind: { input_tokens: '0.0000112', output_tokens: '0.000256', cache_read_tokens: '0.00008', images: '0.08' },
    cost_total: '0.0803472',
    thread_total_after: '0.0803472',
    ...over,
  };
}

export function threadDetail(messages: MessageView[] = [userMessage(), assistantMessage()]): ThreadDetail {
  return {
    thread_id: THREAD_ID,
    user_id: USER_ID,
    title: 'Test thread',
    model: 'claude-3-5-haiku-20241022',
    created_at: '2025-01-02T03:04:00Z',
    updated_at: '2025-01-02T03:04:06Z',
    is_active: true,
    total_cost: '0.0803472',
    messages,
  };
}

export function snapshot(over: Partial<Snapshot> = {}): Snapshot {
  return {
    generated_at: new Date().toISOString(),
    total_cost: '12345.0000001',
    event_count: 42,
    events_per_second: '12.5',
    last_event_at: '2025-01-02T03:04:06Z',
    by_user: [
      { user_id: 'alice', cost: '12000.0000001', events: 30 },
      { user_id: 'bob', cost: '345', events: 12 },
    ],
    by_thread: [
      { thread_id: THREAD_ID, user_id: 'alice', cost: '12000.0000001', events: 30 },
      { thread_id: '0192f000-0000-7000-8000-00000000b002', user_id: 'bob', cost: '345', events: 12 },
    ],
    by_model: [{ model: 'claude-3-5-haiku-20241022', cost: '12345.0000001', events: 42 }],
    by_kind: [
      { kind: 'output_tokens', unit: 'tokens', quantity: '1000000', cost: '4' },
      { kind: 'input_tokens', unit: 'tokens', quantity: '2500', cost: '0.002' },
      { kind: 'images', unit: 'images', quantity: '3', cost: '0.12' },
    ],
    ...over,
  };
}
