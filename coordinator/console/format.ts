/** How numbers look on the console's pages (CSV and JSON keep raw values). */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** 1536 -> "1.5 KiB". */
export function formatBytes (n: number): string {
  let v = n
  let i = 0
  while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${UNITS[i]}`
}

/** ISO time -> "2026-11-25 16:30:05" (UTC, as stored). */
export function formatTime (iso: string | null | undefined): string {
  if (iso == null || iso === '') return ''
  return iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '')
}

/** 12.34 -> "12.3 %". */
export function formatPercent (p: number | null | undefined): string {
  return p == null ? '' : `${p.toFixed(1)} %`
}

/** Share of local + peer bytes in all bytes, one decimal (0 when nothing moved). */
export function savedPercent (b: { local: number, peers: number, origin: number }): number {
  const total = b.local + b.peers + b.origin
  return total === 0 ? 0 : Math.round((b.local + b.peers) * 1000 / total) / 10
}

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
 * A text cell that a spreadsheet would evaluate (leading =, +, -, @, tab or CR)
 * gets a leading quote and is quoted, whatever follows: `-1+cmd|' /C calc'!A0`
 * looks like a negative number but is a formula. Only numbers the code itself
 * writes (typeof number/bigint, e.g. -5) stay as they are.
 */
export function csvField (v: unknown): string {
  let s = v == null ? '' : String(v)
  const fromCode = typeof v === 'number' || typeof v === 'bigint'
  if (!fromCode && /^[=+\-@\t\r]/.test(s)) s = `"'${s.replace(/"/g, '""')}"`
  else if (/[",\r\n]/.test(s)) s = `"${s.replace(/"/g, '""')}"`
  return s
}

/** Escapes text for HTML/XML content and quoted attribute values. */
export function escapeHtml (s: string): string {
  return s.replace(/[&<>"']/g, ch => ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : ch === '>' ? '&gt;' : ch === '"' ? '&quot;' : '&#39;')
}
