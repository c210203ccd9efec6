import { describe, expect, it } from 'vitest';
import { SseParser, parseSse, readSseStream, type SseEvent } from './sse';

const STREAM =
  'event: start\ndata: {"assistant_message_id":"a1","simulated":true}\n\n' +
  ': keep-alive\n\n' +
  'event: delta\ndata: {"text":"Hel"}\n\n' +
  'event: delta\ndata: {"text":"lo ☃ 日本"}\n\n' +
  'event: usage\ndata: {"usage":{"input_tokens":12,"output_tokens":5}}\n\n' +
  'event: done\ndata: {"thread_total":"0.0002672","error":null}\n\n';

function feedInPieces(text: string, sizes: number[]): SseEvent[] {
  const p = new SseParser();
  const out: SseEvent[] = [];
  let i = 0;
  let k = 0;
  while (i < text.length) {
    const n = sizes[k++ % sizes.length];
    out.push(...p.push(text.slice(i, i + n)));
    i += n;
  }
  out.push(...p.end());
  return out;
}

describe('SseParser', () => {
  it('parses a whole stream', () => {
    const evs = parseSse(STREAM);
    expect(evs.map((e) => e.event)).toEqual(['start', 'delta', 'delta', 'usage', 'done']);
    expect(JSON.parse(evs[4].data)).toEqual({ thread_total: '0.0002672', error: null });
  });

  it('gives the same events whatever the chunk boundaries', () => {
    const whole = parseSse(STREAM);
    for (const sizes of [[1], [2], [3], [5, 1, 7], [13], [64], [STREAM.length]]) {
      expect(feedInPieces(STREAM, sizes)).toEqual(whole);
    }
  });

  it('handles CRLF split between chunks and lone CR line ends', () => {
    const crlf = STREAM.replace(/\n/g, '\r\n');
    expect(feedInPieces(crlf, [1])).toEqual(parseSse(STREAM));
    const p = new SseParser();
    expect(p.push('data: a\r')).toEqual([]);
    expect(p.push('\n')).toEqual([]);
    expect(p.push('\r')).toEqual([]);
    expect(p.push('\n')).toEqual([{ event: 'message', data: 'a' }]);
    expect(parseSse('data: x\r\rdata: y\r\r')).toEqual([
      { event: 'message', data: 'x' },
      { event: 'message', data: 'y' },
    ]);
  });

  it('joins multi-line data, strips one leading space, ignores comments and unknown fields', () => {
    const evs = parseSse(': hi\nfoo: bar\nevent: delta\ndata:  two spaces\ndata:none\ndata\n\n');
    expect(evs).toEqual([{ event: 'delta', data: ' two spaces\nnone\n' }]);
  });

  it('does not dispatch events without data, and drops an unterminated one at the end', () => {
    expect(parseSse('event: ping\n\n')).toEqual([]);
    expect(parseSse('event: delta\ndata: {"text":"x"}')).toEqual([]);
  });

  it('keeps id and retry', () => {
    expect(parseSse('id: 7\nretry: 3000\ndata: x\n\n')).toEqual([{ event: 'message', data: 'x', id: '7', retry: 3000 }]);
  });

  it('reads a byte stream split inside a multi-byte character', async () => {
    const bytes = new TextEncoder().encode(STREAM);
    const cut = STREAM.indexOf('☃');
    const at = new TextEncoder().encode(STREAM.slice(0, cut)).length + 1; // inside the 3-byte snowman
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.slice(0, at));
        c.enqueue(bytes.slice(at, at + 1));
        c.enqueue(bytes.slice(at + 1));
        c.close();
      },
    });
    const got: SseEvent[] = [];
    await readSseStream(body, (e) => got.push(e));
    expect(got).toEqual(parseSse(STREAM));
    expect(JSON.parse(got[2].data).text).toBe('lo ☃ 日本');
  });
});
