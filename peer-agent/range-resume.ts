/**
 * Resuming a download with HTTP Range (the segments' spool, the delta pack): the
 * answer must start where we asked, and a body we will not read must still be
 * closed to free its connection.
 */

/**
 * Frees the connection of a body that will not be read: the client frees it once reading starts and
 * stops (client/coordinator-http.ts), not for a body never read, which would hold it open.
 */
export async function closeBody (body: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const _ of body) break
}

/** Whether a Content-Range header (`bytes START-END/SIZE`) starts at `start`. */
export function rangeStartsAt (header: string | null, start: number): boolean {
  const m = /^bytes (\d+)-\d+\/\d+$/.exec(header ?? '')
  return m != null && Number(m[1]) === start
}
