/** The console's pages (server-rendered with hono/html: every interpolated value is escaped). */
import { html, raw } from 'hono/html'
import { EVENT_TYPES } from '../../protocol/api.ts'
import { CHART_WINDOWS } from './constants.ts'
import { csrfField, type Markup } from './layout.ts'

/** A chart that refreshes itself: the inline SVG plus where to fetch the next one. */
export function chartBox (src: string, svg: string): Markup {
  return html`<figure class="chart-box" data-live-svg="${src}">${raw(svg)}</figure>`
}

/** A GET filter form (changes nothing, so it carries no CSRF token). */
export function filterForm (action: string, fields: Markup[]): Markup {
  return html`<form class="filters" method="get" action="${action}">${fields}<button type="submit">Show</button></form>`
}

/** A select of names with an "all" choice. */
export function selectField (label: string, name: string, choices: string[], value: string | undefined, all = 'all'): Markup {
  const options = choices.map(c => html`<option value="${c}"${c === value ? raw(' selected') : ''}>${c}</option>`)
  return html`<label>${label} <select name="${name}"><option value="">${all}</option>${options}</select></label>`
}

/** The chart window select. */
export function windowField (value: string): Markup {
  return selectField('Window', 'window', Object.keys(CHART_WINDOWS), value, 'default (15m)')
}

/** The event type select. */
export function typeField (value: string | undefined): Markup {
  return selectField('Type', 'type', [...EVENT_TYPES], value)
}

/** The login page; `error` shows above the form. */
export function loginBody (csrf: string, next: string, error?: string): Markup {
  return html`${error != null ? html`<p class="form-error" role="alert">${error}</p>` : ''}
<form class="login" method="post" action="/console/login">
${csrfField(csrf)}
<input type="hidden" name="next" value="${next}">
<label>User <input name="user" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<details><summary>Log in with the admin token instead</summary>
<label>Admin token <input name="token" type="password" autocomplete="off" placeholder="tsa_..."></label>
</details>
<button type="submit">Log in</button>
</form>
<p class="note">Directory users in an admin group (the coordinator config's <code>adminGroups</code>) or the holder of the admin token (DIR/admin.token).</p>`
}

const ADMINS_ONLY = html`The console is for administrators: users of the coordinator's <code>adminGroups</code>, or the admin token.`
const KEPT_HASHED = html`(the coordinator keeps only its SHA-256). Give it to the agents, e.g. in their <code>--token-file</code>.`

/** The 403 page body. */
export function forbiddenBody (user: string, message: string): Markup {
  return html`<p class="form-error" role="alert">${message}</p>
<p>You are logged in as <strong>${user}</strong>. ${ADMINS_ONLY}</p>
<p><a href="/console/login">Log in as someone else</a></p>`
}

/** An error page body (bad query, unknown group, ...). */
export function errorBody (message: string): Markup {
  return html`<p class="form-error" role="alert">${message}</p><p><a href="/console/images">Back to the console</a></p>`
}

/** A one-field POST form: a button that changes something, with the CSRF token; `confirm` is shown beside it. */
export function actionForm (action: string, csrf: string, label: string, confirm: string): Markup {
  const button = html`<button type="submit" class="danger">${label}</button>`
  return html`<form class="action" method="post" action="${action}">${csrfField(csrf)}<p class="note">${confirm}</p>${button}</form>`
}

/** Label/value rows of one record. */
export function detailList (rows: Array<[string, string]>): Markup {
  return html`<dl class="details">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>`
}

/** The new machine token form. */
export function tokenForm (csrf: string, groups: string[], values: { group?: string, name?: string } = {}, error?: string): Markup {
  const groupInput = html`<input name="group" list="token-groups" required value="${values.group ?? ''}" placeholder="e.g. branch">`
  return html`<form class="policy token" method="post" action="/console/tokens">
${csrfField(csrf)}
<h2>New machine token</h2>
${error != null ? html`<p class="form-error" role="alert">${error}</p>` : ''}
<label>Group (its policy applies to the agents) ${groupInput}</label>
<datalist id="token-groups">${groups.map(g => html`<option value="${g}">`)}</datalist>
<label>Name, e.g. the site (optional) <input name="name" maxlength="128" value="${values.name ?? ''}" placeholder="e.g. paris"></label>
<button type="submit">Create token</button>
</form>`
}

/** The page body after creating a token: the secret, shown this once. */
export function createdTokenBody (info: { id: string, group: string, name: string }, token: string): Markup {
  return html`<p class="form-ok" role="status">Created token ${info.id} for group ${info.group}${info.name !== '' ? ` (${info.name})` : ''}.</p>
<p><strong>Copy it now: it is shown only this once</strong> ${KEPT_HASHED}</p>
<pre class="secret" id="new-token">${token}</pre>
<p><a href="/console/tokens">Back to the tokens</a></p>`
}
