import { describe, expect, it } from 'vitest';
import { allowedModelsText, budgetInput, costsDescending, createKeyRequest, draftFromBudget, emptyBudgetDraft, emptyKeyDraft, keyStatus } from './keys';
import type { BudgetView } from './types';

const NOW = Date.parse('2025-06-01T12:00:00Z');

describe('keyStatus', () => {
  it('shows the server status, with expiry as of now', () => {
    expect(keyStatus({ status: 'active', expires_at: null, revoked_at: null }, NOW)).toEqual({ status: 'active', detail: 'never expires', at: null });
    expect(keyStatus({ status: 'active', expires_at: '2025-06-02T00:00:00Z', revoked_at: null }, NOW)).toEqual({
      status: 'active',
      detail: 'expires',
      at: '2025-06-02T00:00:00Z',
    });
    expect(keyStatus({ status: 'revoked', expires_at: null, revoked_at: '2025-05-01T00:00:00Z' }, NOW)).toEqual({
      status: 'revoked',
      detail: 'revoked',
      at: '2025-05-01T00:00:00Z',
    });
    expect(keyStatus({ status: 'expired', expires_at: '2025-05-01T00:00:00Z', revoked_at: null }, NOW).status).toBe('expired');
  });

  it('turns an active key expired once its expiry passes while the page is open', () => {
    expect(keyStatus({ status: 'active', expires_at: '2025-06-01T11:59:59Z', revoked_at: null }, NOW).status).toBe('expired');
  });

  it('treats revocation as final even if expiry also passed', () => {
    expect(keyStatus({ status: 'expired', expires_at: '2025-05-01T00:00:00Z', revoked_at: '2025-05-02T00:00:00Z' }, NOW).status).toBe('revoked');
  });
});

describe('allowedModelsText', () => {
  it('names all models, a short list, or a shortened one', () => {
    expect(allowedModelsText(null)).toBe('all models');
    expect(allowedModelsText([])).toBe('no models');
    expect(allowedModelsText(['a', 'b'])).toBe('a, b');
    expect(allowedModelsText(['a', 'b', 'c', 'd'])).toBe('a, b +2 more');
  });
});

describe('budgetInput', () => {
  it('keeps the amount string and turns the percent threshold into an exact fraction', () => {
    expect(budgetInput({ ...emptyBudgetDraft('daily'), amount: ' $5.00 ', thresholdPercent: '80' })).toEqual({
      ok: { max_budget: '5.00', period: 'daily', alert_threshold: '0.8', enabled: true, timezone: 'UTC' },
    });
    expect(budgetInput({ ...emptyBudgetDraft('weekly'), amount: '0.000001', thresholdPercent: '12.5%' }).ok?.alert_threshold).toBe('0.125');
    expect(budgetInput({ ...emptyBudgetDraft('weekly'), amount: '1', thresholdPercent: '' }).ok?.alert_threshold).toBeNull();
    expect(budgetInput({ ...emptyBudgetDraft('weekly'), amount: '1', thresholdPercent: '100' }).ok?.alert_threshold).toBe('1');
  });

  it('refuses zero, negative or non-decimal amounts and thresholds outside (0, 100]', () => {
    for (const amount of ['', '0', '0.00', '-1', '5,00', 'abc']) {
      expect(budgetInput({ ...emptyBudgetDraft(), amount }).error, amount).toMatch(/positive amount/);
    }
    for (const t of ['0', '-5', '100.01', 'x']) {
      expect(budgetInput({ ...emptyBudgetDraft(), amount: '1', thresholdPercent: t }).error, t).toMatch(/alert threshold/);
    }
  });

  it('fills an edit form from a budget exactly', () => {
    const b = { max_budget: '12.345', period: 'monthly', alert_threshold: '0.75', timezone: 'Europe/Paris', enabled: false } as BudgetView;
    expect(draftFromBudget(b)).toEqual({ amount: '12.345', period: 'monthly', thresholdPercent: '75', timezone: 'Europe/Paris', enabled: false });
    expect(draftFromBudget({ ...b, alert_threshold: null }).thresholdPercent).toBe('');
  });
});

describe('createKeyRequest', () => {
  it('builds the POST /api/keys body', () => {
    const r = createKeyRequest(
      'alice',
      {
        name: '  backend ',
        allModels: false,
        models: ['m1', 'm2'],
        expiresAt: '2025-07-01T00:00:00Z',
        rpm: '60',
        budgets: [
          { ...emptyBudgetDraft('daily'), amount: '5.00' },
          { ...emptyBudgetDraft('monthly'), amount: '100', thresholdPercent: '' },
        ],
      },
      NOW,
    );
    expect(r).toEqual({
      ok: {
        user_id: 'alice',
        name: 'backend',
        allowed_models: ['m1', 'm2'],
        expires_at: '2025-07-01T00:00:00.000Z',
        rpm_limit: 60,
        budgets: [
          { max_budget: '5.00', period: 'daily', alert_threshold: '0.8', enabled: true, timezone: 'UTC' },
          { max_budget: '100', period: 'monthly', alert_threshold: null, enabled: true, timezone: 'UTC' },
        ],
      },
    });
  });

  it('sends null for all models, no expiry and no rate limit', () => {
    expect(createKeyRequest('bob', { ...emptyKeyDraft(), name: 'k', models: ['ignored'] }, NOW).ok).toEqual({
      user_id: 'bob',
      name: 'k',
      allowed_models: null,
      expires_at: null,
      rpm_limit: null,
      budgets: [],
    });
  });

  it('names the first problem', () => {
    const d = { ...emptyKeyDraft(), name: 'k' };
    expect(createKeyRequest('a', { ...d, name: '  ' }, NOW).error).toMatch(/name/);
    expect(createKeyRequest('a', { ...d, name: 'x'.repeat(201) }, NOW).error).toMatch(/at most 200/);
    expect(createKeyRequest('a', { ...d, allModels: false }, NOW).error).toMatch(/at least one model/);
    expect(createKeyRequest('a', { ...d, expiresAt: '2025-05-01T00:00:00Z' }, NOW).error).toMatch(/future/);
    expect(createKeyRequest('a', { ...d, expiresAt: 'tomorrow' }, NOW).error).toMatch(/not a valid/);
    for (const rpm of ['0', '1.5', '-3', 'ten', '1e3']) expect(createKeyRequest('a', { ...d, rpm }, NOW).error, rpm).toMatch(/rate limit/);
    expect(
      createKeyRequest('a', { ...d, budgets: [{ ...emptyBudgetDraft('daily'), amount: '1' }, { ...emptyBudgetDraft('daily'), amount: '2' }] }, NOW).error,
    ).toMatch(/one daily budget/);
    expect(createKeyRequest('a', { ...d, budgets: [{ ...emptyBudgetDraft('daily'), amount: '' }] }, NOW).error).toMatch(/positive amount/);
  });
});

describe('costsDescending', () => {
  it('sorts by exact cost, then name', () => {
    expect(costsDescending({ a: '0.1', b: '0.10000000000000001', c: '0.1', d: '2' })).toEqual([
      ['d', '2'],
      ['b', '0.10000000000000001'],
      ['a', '0.1'],
      ['c', '0.1'],
    ]);
  });
});
