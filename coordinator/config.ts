/**
 * The coordinator's configuration file (JSON, documented in
 * docs/CONFIGURATION.md `## coordinator`): parsed strictly, so a typo in a
 * field name stops the coordinator with a message instead of being ignored.
 */
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { ValidationError } from '../protocol/errors.ts'
import { array, boolean, enumOf, integer, object, optional, record, string, type Infer, type Schema } from '../protocol/schema.ts'
import { name } from '../protocol/api.ts'
import { ConfigError } from './errors.ts'
import type { ImageServiceInit } from './image-service.ts'
import { parseLdapConfig } from './ldap-authenticator.ts'
import { LOG_LEVELS } from './logger.ts'
import { MetadataConfigSchema, resolvePostgresPaths } from './meta-store/postgres-config.ts'
import { createSiteMap } from './sites.ts'
import { createTrustedProxies } from './trusted-proxies.ts'

/** Any JSON object, checked by its own parser later (the `ldap` section goes to parseLdapConfig). */
function anyObject (): Schema<Record<string, unknown>> {
  return {
    json: { type: 'object' },
    parse (v, path = '') {
      if (v == null || typeof v !== 'object' || Array.isArray(v)) throw new ValidationError(`${path}: must be an object`)
      return v as Record<string, unknown>
    }
  }
}

/** A zstd window: 0 (zstd's default for the level) or 2^10 to 2^30 bytes. */
function windowLog (): Schema<number> {
  const base = integer({ min: 0, max: 30 })
  return {
    json: { anyOf: [{ const: 0 }, { type: 'integer', minimum: 10, maximum: 30 }] },
    parse (v, path = '') {
      const n = base.parse(v, path)
      if (n !== 0 && n < 10) throw new ValidationError(`${path}: must be 0 (zstd's default) or an integer from 10 to 30`)
      return n
    }
  }
}

const zstd = object({ level: optional(integer({ min: 1, max: 22 })), windowLog: optional(windowLog()) })

/** The `images` section: the image service's settings (ImageServiceInit, defaults in constants.ts). */
const images = object({
  originZstd: optional(zstd),
  deltaPackZstd: optional(zstd),
  buildDeltaPacks: optional(boolean()),
  maxConcurrentBatches: optional(integer({ min: 1 })),
  maxBatchesPerPrincipal: optional(integer({ min: 1 })),
  maxBatchesPerGroup: optional(integer({ min: 1 })),
  batchStallMs: optional(integer({ min: 100 }))
}) satisfies Schema<ImageServiceInit>

const listen = string({ minLength: 3, maxLength: 300, pattern: /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+|[0-9a-fA-F:.]+):\d{1,5}$/ })

/** The schema of the configuration file. */
export const CoordinatorConfigSchema = object({
  listen: optional(listen),
  logLevel: optional(enumOf(LOG_LEVELS)),
  ldap: optional(anyObject()),
  adminGroups: optional(array(string({ minLength: 1, maxLength: 1024 }), { maxItems: 100 })),
  adminGroupsByName: optional(boolean()),
  sessionTtlSeconds: optional(integer({ min: 60, max: 30 * 24 * 3600 })),
  eventRetentionDays: optional(integer({ min: 1, max: 36_500 })),
  sites: optional(record(string({ minLength: 7, maxLength: 18, pattern: /^[0-9./]+$/ }), name, { maxEntries: 100_000 })),
  maxSiteHintsPerToken: optional(integer({ min: 1, max: 10_000 })),
  events: optional(object({
    maxPerMinutePerToken: optional(integer({ min: 1000, max: 10_000_000 })),
    clockSkewSeconds: optional(integer({ min: 0, max: 86_400 })),
    maxAgentsPerToken: optional(integer({ min: 1, max: 10_000_000 }))
  })),
  swarm: optional(object({
    maxRegistrationsPerToken: optional(integer({ min: 1, max: 10_000_000 }))
  })),
  tls: optional(object({ cert: string({ minLength: 1 }), key: string({ minLength: 1 }) })),
  limits: optional(object({
    maxJsonBodyBytes: optional(integer({ min: 1024 })),
    maxBodyBytes: optional(integer({ min: 1024 })),
    maxBufferedBodyBytes: optional(integer({ min: 1024 * 1024 }))
  })),
  loginRateLimit: optional(object({
    windowSeconds: optional(integer({ min: 1, max: 86_400 })),
    maxPerIp: optional(integer({ min: 1 })),
    maxFailuresPerUser: optional(integer({ min: 1 }))
  })),
  images: optional(images),
  /** Compressed segments built at publish (coordinator/segment-service.ts). */
  segments: optional(object({
    build: optional(boolean()),
    zstdLevel: optional(integer({ min: 1, max: 22 })),
    cacheBytes: optional(integer({ min: 0 })),
    segmentBlocks: optional(integer({ min: 1, max: 1008 }))
  })),
  storageGc: optional(object({
    intervalSeconds: optional(integer({ min: 0, max: 365 * 86_400 })),
    graceSeconds: optional(integer({ min: 0, max: 365 * 86_400 }))
  })),
  /** Who may read GET /metrics: the admin, or the holder of the token in tokenFile; public: anyone. */
  metrics: optional(object({
    tokenFile: optional(string({ minLength: 1, maxLength: 4096 })),
    public: optional(boolean())
  })),
  /** Secrets in files of their own instead of DATA/ (created there on first start if absent): several coordinators name the same ones. */
  signingKeyFile: optional(string({ minLength: 1, maxLength: 4096 })),
  sessionKeyFile: optional(string({ minLength: 1, maxLength: 4096 })),
  adminTokenFile: optional(string({ minLength: 1, maxLength: 4096 })),
  /** Reverse proxies (IPs or IP/prefix) whose X-Forwarded-For / X-Forwarded-Proto are believed. */
  trustedProxies: optional(array(string({ minLength: 2, maxLength: 64 }), { maxItems: 1000 })),
  /** Where chunks live: absent = DATA/blocks (a directory); `s3` = an S3-compatible bucket (coordinator/s3-block-store.ts). */
  blockStore: optional(object({
    s3: object({
      endpoint: string({ minLength: 8, maxLength: 2048, pattern: /^https?:\/\/[^\s/?#]+\/?$/ }),
      bucket: string({ minLength: 3, maxLength: 63, pattern: /^[a-z0-9][a-z0-9.-]+[a-z0-9]$/ }),
      region: optional(string({ minLength: 1, maxLength: 64, pattern: /^[A-Za-z0-9-]+$/ })),
      accessKeyId: string({ minLength: 1, maxLength: 256, pattern: /^[\x21-\x7e]+$/ }),
      secretAccessKeyFile: string({ minLength: 1, maxLength: 4096 }),
      forcePathStyle: optional(boolean()),
      keyPrefix: optional(string({ maxLength: 200 }))
    })
  })),
  /** Where metadata lives: absent = level under DATA/meta; `postgres` = a database several coordinators share (coordinator/meta-store/). */
  metadata: optional(MetadataConfigSchema),
  console: optional(object({
    refreshMs: optional(integer({ min: 100, max: 3_600_000 })),
    sampleMs: optional(integer({ min: 100, max: 3_600_000 })),
    indexSettleMs: optional(integer({ min: 0, max: 3_600_000 }))
  }))
})

/** A parsed configuration; every field is optional (defaults in constants.ts). */
export type CoordinatorConfig = Infer<typeof CoordinatorConfigSchema>

/**
 * Validates a configuration object (the `ldap` section with parseLdapConfig); relative tls, ldap, metrics, blockStore
 * and key file paths are resolved against `baseDir`. Throws ConfigError.
 */
export function parseCoordinatorConfig (raw: unknown, baseDir = process.cwd()): CoordinatorConfig {
  let config: CoordinatorConfig
  try {
    config = CoordinatorConfigSchema.parse(raw)
  } catch (err) {
    throw new ConfigError(`invalid coordinator config: ${(err as Error).message}`, { cause: err })
  }
  createSiteMap(config.sites) // throws ConfigError on a bad subnet
  createTrustedProxies(config.trustedProxies) // throws ConfigError on a bad entry
  if (config.metrics?.public === true && config.metrics.tokenFile != null) {
    throw new ConfigError('invalid coordinator config: metrics: "public": true and "tokenFile" exclude each other')
  }
  if (config.metrics?.tokenFile != null) config.metrics = { ...config.metrics, tokenFile: resolve(baseDir, config.metrics.tokenFile) }
  if (config.ldap != null) {
    try {
      // relative caFile / bindPasswordFile are relative to the config file, like tls paths
      config.ldap = parseLdapConfig(config.ldap, { baseDir })
    } catch (err) {
      throw new ConfigError(`invalid coordinator config: ${(err as Error).message}`, { cause: err })
    }
  }
  const s3 = config.blockStore?.s3
  if (s3 != null) config.blockStore = { s3: { ...s3, secretAccessKeyFile: resolve(baseDir, s3.secretAccessKeyFile) } }
  if (config.metadata?.postgres != null) config.metadata = { postgres: resolvePostgresPaths(config.metadata.postgres, baseDir) }
  if (config.tls != null) config.tls = { cert: resolve(baseDir, config.tls.cert), key: resolve(baseDir, config.tls.key) }
  for (const k of ['signingKeyFile', 'sessionKeyFile', 'adminTokenFile'] as const) if (config[k] != null) config[k] = resolve(baseDir, config[k])
  return config
}

/** Reads and validates a JSON configuration file. Throws ConfigError. */
export async function loadCoordinatorConfig (file: string): Promise<CoordinatorConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`, { cause: err })
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`config ${file} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  return parseCoordinatorConfig(raw, dirname(resolve(file)))
}

/** Splits HOST:PORT (IPv6 in brackets); throws ConfigError. */
export function parseListen (text: string): { host: string, port: number } {
  try {
    listen.parse(text, 'listen')
  } catch {
    throw new ConfigError(`listen address ${JSON.stringify(text)} must be HOST:PORT, e.g. 127.0.0.1:8440 or [::]:8440`)
  }
  const i = text.lastIndexOf(':')
  const host = text.slice(0, i).replace(/^\[(.*)\]$/, '$1')
  const port = Number(text.slice(i + 1))
  if (port > 65535) throw new ConfigError(`listen port ${port} is over 65535`)
  return { host, port }
}
