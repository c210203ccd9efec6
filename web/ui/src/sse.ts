// Server-sent events parsing for streams read with fetch (EventSource cannot POST).
//
// Follows the WHATWG event-stream rules: lines end in CRLF, LF or CR; `:` starts
// a comment; `field: value` with one optional space; a blank line dispatches
// the event if it carried data; several `data` lines are joined with "\n".
// Chunks may split anywhere, even between the CR and LF of one line ending.

export interface SseEvent {
  /** The `event` field, "message" when absent. */
  event: string;
  /** The `data` lines joined with "\n". */
  data: string;
  /** The last `id` seen, if any. */
  id?: string;
  /** The `retry` field in ms, when the event set one. */
  retry?: number;
}

export class SseParser {
  private buffer = '';
  private eventType = '';
  private dataLines: string[] = [];
  private hasData = false;
  private lastId: string | undefined;
  private retry: number | undefined;

  /** Feed a chunk of decoded text; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const out: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      if (c === '\r') {
        // A CR at the very end may be the first half of CRLF: wait for more.
        if (i + 1 === this.buffer.length) break;
        this.line(this.buffer.slice(start, i), out);
        if (this.buffer[i + 1] === '\n') i++;
      } else {
        this.line(this.buffer.slice(start, i), out);
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** The stream ended: a trailing lone CR ends a line; an unterminated event is dropped (per spec). */
  end(): SseEvent[] {
    const out: SseEvent[] = [];
    if (this.buffer.endsWith('\r')) {
      this.line(this.buffer.slice(0, -1), out);
    }
    this.buffer = '';
    this.reset();
    return out;
  }

  private reset(): void {
    this.eventType = '';
    this.dataLines = [];
    this.hasData = false;
    this.retry = undefined;
  }

  private line(line: string, out: SseEvent[]): void {
    if (line === '') {
      if (this.hasData) {
        const ev: SseEvent = { event: this.eventType || 'message', data: this.dataLines.join('\n') };
        if (this.lastId !== undefined) ev.id = this.lastId;
        if (this.retry !== undefined) ev.retry = this.retry;
        out.push(ev);
      }
      this.reset();
      return;
    }
    if (line.startsWith(':')) return; // comment, e.g. keep-alive
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.eventType = value;
        break;
      case 'data':
        this.dataLines.push(value);
        this.hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = parseInt(value, 10);
        break;
      default:
        break; // unknown fields are ignored
    }
  }
}

/** Parse a whole event-stream text at once (handy in tests and for short bodies). */
export function parseSse(text: string): SseEvent[] {
  const p = new SseParser();
  return [...p.push(text), ...p.end()];
}

/**
 * Read an event stream from a fetch body, calling `onEvent` for each event as it completes.
 * Resolves when the stream ends; rejects if reading fails (including abort).
 */
export async function readSseStream(
  body: ReadableStream<Uint8Array>,
  onEvent: (ev: SseEvent) => void,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  const parser = new SseParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const ev of parser.push(decoder.decode(value, { stream: true }))) onEvent(ev);
    }
    for (const ev of parser.push(decoder.decode())) onEvent(ev);
    for (const ev of parser.end()) onEvent(ev);
  } finally {
    reader.releaseLock();
  }
}
