/** Reads the admin or machine token, or a password, from its file: the one rule for every command that sends one. */
import { readFile } from 'node:fs/promises'
import { UnauthorizedError } from '../protocol/errors.ts'
import { SecretFileError } from './errors.ts'

/**
 * The file's text without surrounding white space (an editor's final newline).
 * Unreadable: SecretFileError (its cause the errno error); empty: UnauthorizedError,
 * as a request without it would be refused anyway.
 */
export async function readSecretFile (path: string, what: 'token' | 'password'): Promise<string> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new SecretFileError(`cannot read ${what} file ${path}: ${(err as Error).message}`, { cause: err })
  }
  const s = text.trim()
  if (s === '') throw new UnauthorizedError(`${what} file ${path} is empty`)
  return s
}
