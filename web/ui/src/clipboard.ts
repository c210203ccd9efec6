// Copy text to the clipboard: the async Clipboard API where the page may use it, else
// the old select-and-copy on a hidden textarea (plain-HTTP pages have no Clipboard API).

/** Copy `text`; resolves true when one of the two ways reported success. */
export async function copyText(text: string): Promise<boolean> {
  const clip = typeof navigator !== 'undefined' ? navigator.clipboard : undefined;
  if (clip?.writeText && (typeof window === 'undefined' || window.isSecureContext !== false)) {
    try {
      await clip.writeText(text);
      return true;
    } catch {
      // refused (no permission, page not focused): try the fallback
    }
  }
  return copyWithSelection(text);
}

function copyWithSelection(text: string): boolean {
  if (typeof document === 'undefined' || typeof document.execCommand !== 'function') return false;
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.top = '-1000px';
  area.style.opacity = '0';
  document.body.appendChild(area);
  const previous = document.activeElement as HTMLElement | null;
  try {
    area.focus();
    area.select();
    return document.execCommand('copy');
  } catch {
    return false;
  } finally {
    area.remove();
    previous?.focus?.();
  }
}
