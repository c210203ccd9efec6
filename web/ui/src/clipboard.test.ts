import { afterEach, describe, expect, it, vi } from 'vitest';
import { copyText } from './clipboard';

afterEach(() => {
  vi.unstubAllGlobals();
  // jsdom has no execCommand; tests add one on the document.
  delete (document as unknown as { execCommand?: unknown }).execCommand;
});

describe('copyText', () => {
  it('uses the Clipboard API when it is there', async () => {
    const writeText = vi.fn().mockResolvedValue(undefined);
    vi.stubGlobal('navigator', { clipboard: { writeText } });
    expect(await copyText('tk-abc-secret')).toBe(true);
    expect(writeText).toHaveBeenCalledWith('tk-abc-secret');
  });

  it('falls back to select-and-copy when the Clipboard API refuses', async () => {
    vi.stubGlobal('navigator', { clipboard: { writeText: vi.fn().mockRejectedValue(new Error('denied')) } });
    let selected = '';
    const exec = vi.fn(() => {
      selected = (document.activeElement as HTMLTextAreaElement | null)?.value ?? '';
      return true;
    });
    (document as unknown as { execCommand: unknown }).execCommand = exec;
    expect(await copyText('tk-abc-secret')).toBe(true);
    expect(exec).toHaveBeenCalledWith('copy');
    expect(selected).toBe('tk-abc-secret');
    expect(document.querySelector('textarea'), 'the helper textarea is removed').toBeNull();
  });

  it('falls back without a Clipboard API, and reports failure when nothing works', async () => {
    vi.stubGlobal('navigator', {});
    (document as unknown as { execCommand: unknown }).execCommand = vi.fn(() => false);
    expect(await copyText('x')).toBe(false);
  });
});
