import { describe, expect, it } from 'vitest';
import { csvField, toCsv } from './csv';

describe('csvField', () => {
  it('keeps plain values exactly as served', () => {
    expect(csvField('0.0002672'), 'a decimal string is not reformatted').toBe('0.0002672');
    expect(csvField('-12345.600'), 'trailing zeros and signs stay').toBe('-12345.600');
    expect(csvField(12), 'numbers are written as they are').toBe('12');
  });
  it('writes null and undefined as empty fields', () => {
    expect(csvField(null)).toBe('');
    expect(csvField(undefined)).toBe('');
  });
  it('quotes commas, quotes, line breaks and edge spaces', () => {
    expect(csvField('a,b'), 'a comma needs quotes').toBe('"a,b"');
    expect(csvField('say "hi"'), 'quotes are doubled').toBe('"say ""hi"""');
    expect(csvField('two\nlines'), 'a newline needs quotes').toBe('"two\nlines"');
    expect(csvField('cr\rhere')).toBe('"cr\rhere"');
    expect(csvField(' padded'), 'a leading space is kept by quoting').toBe('" padded"');
  });
});

describe('toCsv', () => {
  it('joins rows with CRLF and ends with one', () => {
    expect(toCsv(['a', 'b'], [['1', null], ['x,y', '2']]), 'header, rows, CRLF').toBe('a,b\r\n1,\r\n"x,y",2\r\n');
  });
});
