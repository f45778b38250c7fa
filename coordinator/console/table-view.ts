/** A console table as HTML (first render), as live cells (refresh), as JSON and as CSV: one TableDef, four forms. */
import { html, raw } from 'hono/html'
import { csvField, escapeHtml } from './format.ts'
import type { Markup } from './layout.ts'
import type { TableDef, TableResult } from './report-queries.ts'

/** One cell for the live refresh: its text and an optional link. */
export type LiveCell = [text: string, href?: string]

/** The query string of a table's own parameters (empty values dropped). */
export function tableQuery (table: TableDef, q: Record<string, string>, extra: Record<string, string> = {}): string {
  const p = new URLSearchParams()
  for (const k of table.params) if (q[k] != null && q[k] !== '' && k !== table.cursor) p.set(k, q[k])
  for (const [k, v] of Object.entries(extra)) p.set(k, v)
  const s = p.toString()
  return s === '' ? '' : `?${s}`
}

function cellText<R> (table: TableDef<R>, r: R, i: number): string {
  const col = table.columns[i]
  if (col.text != null) return col.text(r)
  const v = col.value(r)
  return v == null ? '' : String(v)
}

/** Rows as live cells (what the browser puts in the table body on refresh). */
export function liveCells<R> (table: TableDef<R>, rows: R[]): LiveCell[][] {
  return rows.map(r => table.columns.map((col, i) => {
    const href = col.href?.(r)
    return href != null ? [cellText(table, r, i), href] : [cellText(table, r, i)]
  }))
}

/** Rows as JSON. */
export function jsonRows<R> (table: TableDef<R>, rows: R[]): unknown[] {
  return rows.map(r => table.json != null ? table.json(r) : r)
}

/** Rows as CSV (RFC 4180, header line first, CRLF line ends). */
export function csvOf<R> (table: TableDef<R>, rows: R[]): string {
  const out = [table.columns.map(col => csvField(col.label)).join(',')]
  for (const r of rows) out.push(table.columns.map(col => csvField(col.value(r))).join(','))
  return out.join('\r\n') + '\r\n'
}

/** The class attribute of a column's cells (the live refresh copies the header's class to each cell). */
function cellClass (col: { numeric?: boolean, wrap?: boolean }): string {
  const names = [col.numeric === true ? 'num' : '', col.wrap === true ? 'wrap' : ''].filter(x => x !== '')
  return names.length === 0 ? '' : ` class="${names.join(' ')}"`
}

/** The rows as HTML, built as one string (a page can hold thousands of cells; every text is escaped here). */
function bodyRows<R> (table: TableDef<R>, cells: LiveCell[][]): string {
  const open = table.columns.map(col => `<td${cellClass(col)}>`)
  let out = ''
  for (const row of cells) {
    out += '<tr>'
    for (let i = 0; i < row.length; i++) {
      const [text, href] = row[i]
      out += open[i] + (href != null ? `<a href="${escapeHtml(href)}">${escapeHtml(text)}</a>` : escapeHtml(text)) + '</td>'
    }
    out += '</tr>'
  }
  return out
}

/**
 * The table as HTML: live when it shows the newest rows (no cursor), with
 * CSV/JSON links for the same query and an "older" link when paged.
 */
export function renderTable<R> (table: TableDef<R>, result: TableResult<R>, q: Record<string, string>, pagePath: string): Markup {
  const qs = tableQuery(table, q)
  const paged = table.cursor != null && q[table.cursor] != null && q[table.cursor] !== ''
  const live = paged ? '' : `/console/live/${table.id}${qs}`
  const cells = liveCells(table, result.rows)
  const nextHref = result.next == null || table.cursor == null ? undefined : `${pagePath}${tableQuery(table, q, { [table.cursor]: result.next })}`
  // the exports are of the page shown
  const exportQs = tableQuery(table, q, table.cursor != null && paged ? { [table.cursor]: q[table.cursor] } : {})
  const first = html`<a href="${pagePath}${tableQuery(table, q)}">First page</a>`
  const pager = nextHref != null
    ? html`<p class="pager">${paged ? html`${first} · ` : ''}<a href="${nextHref}" rel="next">Next page →</a></p>`
    : paged ? html`<p class="pager">${first}</p>` : ''
  return html`<section class="table" id="table-${table.id}">
<div class="table-head"><h2>${table.title}</h2>
<span class="exports"><a href="/console/api/${table.id}.csv${exportQs}" download>CSV</a> · <a href="/console/api/${table.id}${exportQs}">JSON</a></span></div>
<div class="scroll"><table${live !== '' ? html` data-live="${live}"` : ''}>
<thead><tr>${table.columns.map(col => html`<th${raw(cellClass(col))}>${col.label}</th>`)}</tr></thead>
<tbody>${cells.length === 0
  ? html`<tr class="empty"><td colspan="${table.columns.length}">nothing yet</td></tr>`
  : raw(bodyRows(table, cells))}</tbody>
</table></div>
${result.partial === true ? html`<p class="note">Stopped after examining many entries without filling the page; older matches may follow.</p>` : ''}
${pager}
</section>`
}
