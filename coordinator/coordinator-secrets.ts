/**
 * The coordinator's three secrets: the admin token, the session key and the manifest
 * signing key, from the files the config names (`adminTokenFile`, `sessionKeyFile`,
 * `signingKeyFile`: several coordinators name the same ones, docs/OPERATIONS.md
 * "Failover") or else from its data dir; each created on first start.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { ADMIN_TOKEN_PREFIX } from './auth.ts'
import type { CoordinatorConfig } from './config.ts'
import { ADMIN_TOKEN_FILE, SESSION_SECRET_FILE } from './constants.ts'
import { ConfigError } from './errors.ts'
import type { ManifestSigner } from './interface.ts'
import { createManifestSigner } from './manifest-signer.ts'
import { loadOrCreateSecret, randomToken } from './secret-files.ts'

/** The secrets a coordinator starts with. */
export interface CoordinatorSecrets {
  adminToken: string
  /** Whether this start created the admin token (the CLI names its file, never the token). */
  adminTokenCreated: boolean
  adminTokenFile: string
  sessionSecret: Buffer
  signer: ManifestSigner
}

/** Loads (or creates) the secrets; throws ConfigError for an admin token file that holds something else. */
export async function loadCoordinatorSecrets (
  dataDir: string,
  config: Pick<CoordinatorConfig, 'adminTokenFile' | 'sessionKeyFile' | 'signingKeyFile'>
): Promise<CoordinatorSecrets> {
  const adminTokenFile = config.adminTokenFile ?? join(dataDir, ADMIN_TOKEN_FILE)
  const admin = await loadOrCreateSecret(adminTokenFile, () => randomToken(ADMIN_TOKEN_PREFIX) + '\n')
  const adminToken = admin.value.toString('utf8').trim()
  if (!adminToken.startsWith(ADMIN_TOKEN_PREFIX)) throw new ConfigError(`${adminTokenFile} does not hold an admin token (${ADMIN_TOKEN_PREFIX}...)`)
  const session = await loadOrCreateSecret(config.sessionKeyFile ?? join(dataDir, SESSION_SECRET_FILE), () => randomBytes(32))
  const signer = await createManifestSigner(dataDir, config.signingKeyFile)
  return { adminToken, adminTokenCreated: admin.created, adminTokenFile, sessionSecret: session.value, signer }
}
