/** The console's page shell: head, navigation, user box with logout, and the live-refresh settings. */
import { html, raw } from 'hono/html'
import type { HtmlEscapedString } from 'hono/utils/html'
import type { Principal } from '../interface.ts'
import { CSRF_FIELD } from './constants.ts'

/** Pages in the navigation, in order. */
export const NAV = [
  ['images', 'Images'],
  ['rollout', 'Rollout'],
  ['bandwidth', 'Bandwidth'],
  ['agents', 'Agents'],
  ['policy', 'Policy'],
  ['tokens', 'Tokens'],
  ['events', 'Events']
] as const

/** Markup: what hono/html returns (synchronous here: no promise is ever interpolated). */
export type Markup = HtmlEscapedString | Promise<HtmlEscapedString>

/** A page body: markup, or a list of parts. */
export type Body = Markup | string | Array<Markup | string>

/** What every page passes to the shell. */
export interface ShellInit {
  title: string
  active?: string
  principal?: Principal
  csrf: string
  refreshMs?: number
  body: Body
}

/** Who is logged in, with the log-out button. */
function whoForm (csrf: string, user: string): Markup {
  const csrfInput = html`<input type="hidden" name="${CSRF_FIELD}" value="${csrf}">`
  return html`<form class="who" method="post" action="/console/logout">${csrfInput}<span>${user}</span> <button type="submit">Log out</button></form>`
}

/** A whole HTML page. */
export function shell (p: ShellInit): Markup {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${p.title} · trimswarm</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/console.js" defer></script>
</head>
<body data-refresh-ms="${p.refreshMs ?? 0}">
<header>
<a class="brand" href="/console/images">trimswarm</a>
${p.principal != null
  ? html`<nav>${NAV.map(([id, label]) => html`<a href="/console/${id}"${p.active === id ? raw(' class="active" aria-current="page"') : ''}>${label}</a>`)}</nav>
${whoForm(p.csrf, p.principal.user)}`
  : ''}
</header>
<main>
<h1>${p.title}</h1>
${p.body}
</main>
<footer><span id="live-status">${p.refreshMs != null && p.refreshMs > 0 ? 'live' : ''}</span></footer>
</body>
</html>`
}

/** A hidden CSRF field for a form. */
export function csrfField (csrf: string): Markup {
  return html`<input type="hidden" name="${CSRF_FIELD}" value="${csrf}">`
}
