/**
 * Console sessions and CSRF. The session cookie holds a session token the
 * coordinator's Auth already understands (from a user login, or issued for an
 * admin-token login: never the admin token itself), so who is an admin is
 * decided in one place (auth.principalFor: an admin session, or a user in the
 * config's `adminGroups`); logout revokes it (session-tokens.ts). Cookies are
 * HttpOnly and SameSite=Strict, and Secure when the browser came over HTTPS
 * (our TLS, or a trusted proxy's X-Forwarded-Proto: the request log sets `https`). CSRF: double submit, a random token in its own cookie that every
 * form repeats in a hidden field, compared in constant time on every POST.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { Context } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import type { Auth } from '../auth.ts'
import type { Principal } from '../interface.ts'
import { CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE } from './constants.ts'

const secure = (c: Context): boolean => c.get('https') === true || new URL(c.req.url).protocol === 'https:'

/** The token in the session cookie, if any. */
export function sessionCookie (c: Context): string | undefined {
  const token = getCookie(c, SESSION_COOKIE)
  return token == null || token === '' ? undefined : token
}

/** The principal of the request: from the session cookie, or an `Authorization: Bearer` header (scripts using the console's JSON API). */
export function principalOf (c: Context, auth: Auth): Principal | undefined {
  const header = c.req.header('authorization')
  const m = header == null ? null : /^Bearer\s+(\S{1,8192})\s*$/i.exec(header)
  const token = m?.[1] ?? getCookie(c, SESSION_COOKIE)
  if (token == null || token === '') return undefined
  return auth.principalFor(token)
}

/** Stores the token in the session cookie. */
export function setSession (c: Context, token: string, maxAgeSeconds: number): void {
  setCookie(c, SESSION_COOKIE, token, { httpOnly: true, sameSite: 'Strict', secure: secure(c), path: '/', maxAge: maxAgeSeconds })
}

/** Drops the session cookie. */
export function clearSession (c: Context): void {
  deleteCookie(c, SESSION_COOKIE, { path: '/', secure: secure(c) })
}

/** The CSRF token of this browser (set as a cookie when it has none): the value every form carries. */
export function csrfToken (c: Context): string {
  const have = getCookie(c, CSRF_COOKIE)
  if (have != null && /^[A-Za-z0-9_-]{32,64}$/.test(have)) return have
  const token = randomBytes(24).toString('base64url')
  setCookie(c, CSRF_COOKIE, token, { httpOnly: true, sameSite: 'Strict', secure: secure(c), path: '/' })
  return token
}

/** Whether a submitted form carries this browser's CSRF token. */
export function csrfValid (c: Context, form: Record<string, unknown>): boolean {
  const cookie = getCookie(c, CSRF_COOKIE)
  const field = form[CSRF_FIELD]
  if (cookie == null || typeof field !== 'string') return false
  const a = Buffer.from(cookie)
  const b = Buffer.from(field)
  return a.length === b.length && a.length >= 32 && timingSafeEqual(a, b)
}

/** A local path to go back to after login (never another origin). */
export function safeNext (next: string | undefined): string {
  return next != null && /^\/console(\/[A-Za-z0-9/_.-]*)?(\?[^\s\\]*)?$/.test(next) ? next : '/console/images'
}
