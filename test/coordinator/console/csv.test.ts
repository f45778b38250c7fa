/** The console's CSV cells (issue 13 item 10): no text cell a spreadsheet would evaluate as a formula. */
import { describe, expect, it } from 'vitest'
import { csvField } from '../../../coordinator/console/format.ts'

describe('csvField', () => {
  it('quotes and neutralises every text cell starting with =, +, -, @, tab or CR, including ones that look like negative numbers', () => {
    expect(csvField("-1+cmd|' /C calc'!A0")).toBe(`"'-1+cmd|' /C calc'!A0"`)
    expect(csvField('-2')).toBe(`"'-2"`) // text from a client, not a number the code wrote
    expect(csvField('=HYPERLINK("http://x","y")')).toBe(`"'=HYPERLINK(""http://x"",""y"")"`)
    expect(csvField('+1+1')).toBe(`"'+1+1"`)
    expect(csvField('@SUM(A1)')).toBe(`"'@SUM(A1)"`)
    expect(csvField('\t=1')).toBe(`"'\t=1"`)
    expect(csvField('\r=1')).toBe(`"'\r=1"`)
  })

  it('keeps numbers the code writes, and plain text, as they are; quotes commas, quotes and line breaks', () => {
    expect(csvField(-5)).toBe('-5')
    expect(csvField(1.5)).toBe('1.5')
    expect(csvField(-3n)).toBe('-3')
    expect(csvField('2026-12-03T09:00:00.000Z')).toBe('2026-12-03T09:00:00.000Z')
    expect(csvField('paris')).toBe('paris')
    expect(csvField('a,b')).toBe('"a,b"')
    expect(csvField('say "hi"')).toBe('"say ""hi"""')
    expect(csvField('two\nlines')).toBe('"two\nlines"')
    expect(csvField(null)).toBe('')
    expect(csvField(undefined)).toBe('')
  })
})
