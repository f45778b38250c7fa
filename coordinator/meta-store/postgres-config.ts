/** The coordinator config's `metadata` section (docs/CONFIGURATION.md `### metadata`). */
import { resolve } from 'node:path'
import { boolean, integer, object, optional, string, type Infer } from '../../protocol/schema.ts'

/** `metadata.postgres`: where the shared metadata database is; the password is read from a file so the config can be world-readable. */
export const PostgresConfigSchema = object({
  host: string({ minLength: 1, maxLength: 255, pattern: /^[A-Za-z0-9.:_-]+$/ }),
  port: optional(integer({ min: 1, max: 65535 })),
  database: string({ minLength: 1, maxLength: 63, pattern: /^[A-Za-z0-9_-]+$/ }),
  user: string({ minLength: 1, maxLength: 63, pattern: /^[A-Za-z0-9_.-]+$/ }),
  passwordFile: string({ minLength: 1, maxLength: 4096 }),
  /** TLS, verified against the system's CAs (or caFile). */
  ssl: optional(boolean()),
  caFile: optional(string({ minLength: 1, maxLength: 4096 })),
  maxConnections: optional(integer({ min: 2, max: 1000 }))
})

/** A parsed `metadata.postgres`. */
export type PostgresConfig = Infer<typeof PostgresConfigSchema>

/** The `metadata` section: absent = level under DIR/meta. */
export const MetadataConfigSchema = object({
  postgres: optional(PostgresConfigSchema)
})

/** Resolves relative file paths against the config file's folder. */
export function resolvePostgresPaths (c: PostgresConfig, baseDir: string): PostgresConfig {
  return { ...c, passwordFile: resolve(baseDir, c.passwordFile), ...(c.caFile != null ? { caFile: resolve(baseDir, c.caFile) } : {}) }
}
