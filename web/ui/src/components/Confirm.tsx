import { useState, type ReactNode } from 'react';

interface Props {
  /** The button that asks. */
  label: string;
  /** What will happen, shown with the confirm button. */
  question: ReactNode;
  confirmLabel: string;
  onConfirm: () => Promise<void> | void;
  testId: string;
  danger?: boolean;
  disabled?: boolean;
  /** Show the asking button as a text link (in a row of links). */
  asLink?: boolean;
}

/** A button that asks inline before doing something that cannot be undone. */
export function Confirm({ label, question, confirmLabel, onConfirm, testId, danger, disabled, asLink }: Props) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  if (!asking) {
    return (
      <button type="button" className={asLink ? `link${danger ? ' danger-link' : ''}` : danger ? 'danger-outline' : 'secondary'} data-testid={testId} disabled={disabled} onClick={() => setAsking(true)}>
        {label}
      </button>
    );
  }
  const go = async () => {
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      setBusy(false);
      setAsking(false);
    }
  };
  return (
    <div className="confirm" role="group" data-testid={`${testId}-ask`}>
      <span className="small">{question}</span>
      <div className="row">
        <button type="button" className={danger ? 'danger' : ''} data-testid={`${testId}-confirm`} onClick={go} disabled={busy}>
          {busy ? 'Working…' : confirmLabel}
        </button>
        <button type="button" className="secondary" data-testid={`${testId}-cancel`} onClick={() => setAsking(false)} disabled={busy}>
          Cancel
        </button>
      </div>
    </div>
  );
}
