import { useState } from 'react';
import { copyText } from '../clipboard';

interface Props {
  title: string;
  secret: string;
  onDismiss: () => void;
}

/** A key's secret, shown once after create or rotate, with a copy button. Never stored by the UI. */
export function SecretPanel({ title, secret, onDismiss }: Props) {
  const [copy, setCopy] = useState<'idle' | 'copied' | 'failed'>('idle');

  const onCopy = async () => {
    setCopy((await copyText(secret)) ? 'copied' : 'failed');
  };

  return (
    <section className="card secret-panel" data-testid="key-secret" aria-live="polite">
      <h4>{title}</h4>
      <p className="secret-warning">
        <strong>Copy this secret now: you will not see it again.</strong> Tally keeps only a hash of it. If it is lost, rotate the key to get
        a new one.
      </p>
      <div className="row secret-row">
        <input
          className="secret-value"
          readOnly
          value={secret}
          spellCheck={false}
          aria-label="secret key"
          data-testid="key-secret-value"
          onFocus={(e) => e.currentTarget.select()}
        />
        <button type="button" onClick={onCopy} data-testid="key-secret-copy">
          {copy === 'copied' ? 'Copied' : 'Copy'}
        </button>
      </div>
      {copy === 'copied' && (
        <p className="muted small" role="status" data-testid="key-secret-copied">
          Copied to the clipboard.
        </p>
      )}
      {copy === 'failed' && (
        <p className="error small" role="status" data-testid="key-secret-copy-failed">
          The browser refused to copy: select the text above and copy it by hand.
        </p>
      )}
      <p className="muted small">
        Send it as <code>Authorization: Bearer …</code> or <code>x-api-key</code> to <code>/v1/chat/completions</code> or{' '}
        <code>/v1/messages</code>.
      </p>
      <button type="button" className="secondary" onClick={onDismiss} data-testid="key-secret-dismiss">
        I have stored it
      </button>
    </section>
  );
}
