/** A browser's cookie handling, for tests that drive the console without a browser. */

/** Stores the cookies `res` sets into `jar` (an empty value or Max-Age=0 deletes one); returns the Set-Cookie lines. */
export function keepCookies (jar: Map<string, string>, res: Response): string[] {
  const lines = res.headers.getSetCookie()
  for (const line of lines) {
    const [pair] = line.split(';')
    const i = pair.indexOf('=')
    const v = pair.slice(i + 1)
    if (v === '' || /Max-Age=0/i.test(line)) jar.delete(pair.slice(0, i))
    else jar.set(pair.slice(0, i), v)
  }
  return lines
}

/** The Cookie header for `jar`, or undefined when it is empty. */
export function cookieHeader (jar: Map<string, string>): string | undefined {
  return jar.size === 0 ? undefined : [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
}
