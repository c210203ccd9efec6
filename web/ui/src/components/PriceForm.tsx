import { useState, type FormEvent } from 'react';
import { addPrice } from '../api';
import { errorText } from '../format';
import { RESOURCE_KINDS, TOKEN_KINDS, isTokenKind, kindLabel } from '../kinds';
import { formatUnitPrice, isDecimal } from '../money';
import type { Model } from '../types';

interface Props {
  models: Model[];
  model: string;
  onModel: (m: string) => void;
  knownKinds: string[];
  onSaved: () => void;
}

const OTHER = '__other__';

/** Add a new price version for a model and kind (closes the current one). */
export function PriceForm({ models, model, onModel, knownKinds, onSaved }: Props) {
  const [kind, setKind] = useState('output_tokens');
  const [otherKind, setOtherKind] = useState('');
  const [price, setPrice] = useState('');
  const [from, setFrom] = useState('');
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);

  const resources = [...new Set([...RESOURCE_KINDS, ...knownKinds.filter((k) => !isTokenKind(k))])];
  const effectiveKind = kind === OTHER ? otherKind.trim() : kind;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const p = price.trim();
    if (!isDecimal(p)) {
      setResult({ ok: false, text: 'Enter the price as a decimal number, e.g. 4.50.' });
      return;
    }
    setBusy(true);
    setResult(null);
    try {
      let effectiveFrom: string | undefined;
      if (from) {
        const d = new Date(from);
        if (Number.isNaN(d.getTime())) throw new Error('invalid start time');
        effectiveFrom = d.toISOString();
      }
      const change = await addPrice({ model, kind: effectiveKind, price: p, effective_from: effectiveFrom });
      const unit = isTokenKind(change.created.kind) ? 'tokens' : 'units';
      setResult({
        ok: true,
        text: `Saved: ${kindLabel(change.created.kind)} now ${formatUnitPrice(change.created.price, unit)}${
          change.closed ? ` (was ${formatUnitPrice(change.closed.price, unit)})` : ''
        }.`,
      });
      setPrice('');
      onSaved();
    } catch (err) {
      setResult({ ok: false, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="price-form" onSubmit={submit}>
      <h4>New price version</h4>
      <label>
        Model
        <select data-testid="price-form-model" value={model} onChange={(e) => onModel(e.target.value)}>
          {models.map((m) => (
            <option key={m.name} value={m.name}>
              {m.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Kind
        <select data-testid="price-form-kind" value={kind} onChange={(e) => setKind(e.target.value)}>
          <optgroup label="Tokens (per million)">
            {TOKEN_KINDS.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </optgroup>
          <optgroup label="Resources (per unit)">
            {resources.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
            <option value={OTHER}>other resource…</option>
          </optgroup>
        </select>
      </label>
      {kind === OTHER && (
        <label>
          Resource name
          <input data-testid="price-form-other-kind" value={otherKind} onChange={(e) => setOtherKind(e.target.value)} placeholder="e.g. videos" />
        </label>
      )}
      <label>
        Price (USD {isTokenKind(effectiveKind) ? 'per million tokens' : 'per unit'})
        <input data-testid="price-form-price" value={price} onChange={(e) => setPrice(e.target.value)} inputMode="decimal" placeholder="4.50" />
      </label>
      <label>
        Effective from (blank = now)
        <input data-testid="price-form-from" type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} />
      </label>
      <button type="submit" data-testid="price-form-submit" disabled={busy || !model || !effectiveKind || !price.trim()}>
        {busy ? 'Saving…' : 'Add price version'}
      </button>
      {result && (
        <p className={result.ok ? 'notice' : 'error'} role="status" data-testid="price-form-result">
          {result.text}
        </p>
      )}
    </form>
  );
}
