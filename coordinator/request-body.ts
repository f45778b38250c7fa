/** Reading JSON bodies: malformed JSON and schema failures are ValidationErrors (400), never 500. */
import type { Context } from 'hono'
import { ValidationError } from '../protocol/errors.ts'
import { name as nameSchema } from '../protocol/api.ts'
import type { Schema } from '../protocol/schema.ts'

/** Parses the request body as JSON and validates it with `schema` (strict: unknown fields rejected). */
export async function readJson<T> (c: Context, schema: Schema<T>): Promise<T> {
  const text = await c.req.text()
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ValidationError(`body is not valid JSON: ${(err as Error).message}`)
  }
  return schema.parse(value)
}

/** A path or query parameter that must be a safe name (no `../`, NUL, over-long). */
export function nameParam (value: string | undefined, what: string): string {
  if (value == null) throw new ValidationError(`${what} is required`)
  return nameSchema.parse(value, what)
}
