/**
 * The coordinator's component interfaces. Each has one implementation today
 * (directory block store, LDAP authenticator, level stores); a second one
 * (S3, PostgreSQL, another directory) is a new file that passes the same
 * compliance suite in test/coordinator/.
 */
import type { CID } from 'multiformats/cid'
import type { EffectivePolicy } from '../protocol/api.ts'
import type { BodyLease } from './body-budget.ts'

import type { AbortOptions } from '../utils/interface.ts'

/** Options every async call takes, and the structured logger (one of each for every side, in utils/). */
export type { AbortOptions, Logger } from '../utils/interface.ts'

/**
 * Content-addressed storage of chunks (an IPLD "block" is one of our chunks).
 * Never stores an all-zero chunk; `put` rejects bytes that do not hash to `cid`.
 */
export interface BlockStore {
  has: (cid: CID, options?: AbortOptions) => Promise<boolean>
  /** The chunk's bytes; with `verify`, re-hashes and throws HashMismatchError on corruption. Throws NotFoundError when absent. */
  get: (cid: CID, options?: AbortOptions & { verify?: boolean }) => Promise<Uint8Array>
  /**
   * Stores atomically (temp file, fsync, rename); when already present, only refreshes its stored time (as `touch`).
   * Throws HashMismatchError, ValidationError (zero chunk).
   */
  put: (cid: CID, bytes: Uint8Array, options?: AbortOptions) => Promise<void>
  /** Removes the chunk durably; a no-op when absent. */
  delete: (cid: CID, options?: AbortOptions) => Promise<void>
  /** Every stored CID (for fsck and garbage collection). */
  list: (options?: AbortOptions) => AsyncIterable<CID>
  /**
   * Size and stored time (ms since the epoch: last put or touch) of a chunk; storage gc keeps chunks younger than its
   * grace period. Throws NotFoundError when absent.
   */
  stat: (cid: CID, options?: AbortOptions) => Promise<{ bytes: number, storedAt: number }>
  /**
   * Sets the chunk's stored time to now (a publish that finds a chunk already stored claims it, so gc's grace period
   * counts from here). Throws NotFoundError when absent.
   */
  touch: (cid: CID, options?: AbortOptions) => Promise<void>
}

/** Who a directory says a user is. */
export interface AuthenticatedUser {
  /** The canonical user name (as the directory spells it). */
  user: string
  /** Group names (the group entries' cn), used as policy keys. */
  groups: string[]
  /** The full DNs of the same groups: what admin groups are matched on (a short name is not unique in a directory). */
  groupDNs: string[]
}

/** Options of one login attempt. */
export interface AuthenticateOptions extends AbortOptions {
  /**
   * Called with the canonical name of the directory entry the login name found,
   * before its password is tried; throwing (a rate limit's RetryAfterError)
   * ends the attempt, so every spelling of one user shares one limit.
   */
  admit?: (canonicalUser: string) => void
}

/**
 * Checks a user name and password against a directory (LDAP / Active Directory).
 * Throws UnauthorizedError for an unknown user or wrong password (the same
 * message for both), UnavailableError when the directory cannot be reached.
 */
export interface Authenticator {
  authenticate: (user: string, password: string, options?: AuthenticateOptions) => Promise<AuthenticatedUser>
  close?: () => Promise<void>
}

/** The caller of an API request, set by the auth middleware as `c.get('principal')`. */
export interface Principal {
  kind: 'user' | 'machine' | 'admin'
  /** User name, machine-token id, or "admin". */
  user: string
  groups: string[]
  /** Union of the groups' policies; the admin gets every image. */
  policy: EffectivePolicy
  /** The site the admin bound a machine token to (`token create --site`); the coordinator's answer to "where is this agent". */
  site?: string
}

/** Signs manifests with the coordinator's Ed25519 key (created on first start under DIR). */
export interface ManifestSigner {
  /** Envelope bytes for manifest bytes (protocol/signed-manifest.ts). */
  sign: (manifestBytes: Uint8Array) => Promise<Uint8Array>
  /** Raw 32-byte public key, served at GET /v1/key. */
  publicKeyRaw: Uint8Array
  /** The key pair, for other signed tokens (capabilities). */
  privateKey: CryptoKey
}

/** Hono environment of every route: the auth middleware sets `principal`; request-body.ts's middlewares set the body limit and budget lease. */
export interface CoordinatorEnv {
  Variables: {
    principal: Principal
    /** Set for every request by the request log: the id in its log line and X-Request-Id header. */
    requestId: string
    /** The client's IP (X-Forwarded-For only from trusted proxies, coordinator/trusted-proxies.ts). */
    clientIp: string
    /** Set by the request log: the client reached us over HTTPS (our TLS, or a trusted proxy's X-Forwarded-Proto); console cookies are then Secure. */
    https: boolean
    /** The smallest body limit of the middlewares that apply (request-body.ts bodyLimit). */
    bodyLimit?: number
    /** This request's share of the body budget (request-body.ts bodyBudget). */
    bodyLease?: BodyLease
  }
}
