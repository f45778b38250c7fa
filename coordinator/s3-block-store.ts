/**
 * A BlockStore in an S3-compatible bucket (Ceph RADOS Gateway, MinIO, AWS S3):
 * one object per chunk, named `<keyPrefix><hex of its BLAKE3 digest>`, so
 * several coordinators can share one bucket and `b3sum` of an object prints
 * the end of its own key.
 *
 * A chunk appears whole or not at all: an S3 PUT is atomic (readers see the
 * old state or the whole new object), and each PUT carries Content-MD5 so the
 * server refuses bytes damaged on the way. Chunks are content-addressed, so two
 * coordinators putting the same chunk at once write the same bytes and either
 * write wins. Reads are bounded by the largest chunk size (an object larger
 * than that is not one of our chunks and is reported as corrupt) and, by
 * default, re-hashed.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import {
  CopyObjectCommand, DeleteObjectCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
  S3ServiceException
} from '@aws-sdk/client-s3'
import { fromHex } from 'multiformats/bytes'
import type { CID } from 'multiformats/cid'
import { chunkCid } from '../protocol/block-id.ts'
import { BLOCK_SIZE, DIGEST_BYTES, MAX_CHUNK_BLOCKS } from '../protocol/constants.ts'
import { HashMismatchError, NotFoundError, UnavailableError } from '../protocol/errors.ts'
import { checkChunkForPut, chunkDigestHex, createSharedWrites, verifyStoredChunk } from './chunk-checks.ts'
import {
  DEFAULT_BLOCK_STORE_VERIFY_ON_READ, DEFAULT_S3_CONNECT_TIMEOUT_MS, DEFAULT_S3_KEY_PREFIX, DEFAULT_S3_MAX_ATTEMPTS, DEFAULT_S3_REGION,
  DEFAULT_S3_REQUEST_TIMEOUT_MS, S3_LIST_PAGE_KEYS
} from './constants.ts'
import { ConfigError } from './errors.ts'
import type { AbortOptions, BlockStore, Logger } from './interface.ts'

/** What the S3 store depends on. */
export interface S3BlockStoreComponents {
  logger?: Logger
}

/** Options of the S3 store (the config file's `blockStore.s3`, with the secret read from its file). */
export interface S3BlockStoreInit {
  /** http(s)://host:port of the S3 API, e.g. http://127.0.0.1:7480 for a RADOS Gateway. */
  endpoint: string
  bucket: string
  /** Signing region (default DEFAULT_S3_REGION); RGW and MinIO accept any. */
  region?: string
  accessKeyId: string
  secretAccessKey: string
  /** `http://host/bucket/key` instead of `http://bucket.host/key` (default true: RGW and MinIO without wildcard DNS need it). */
  forcePathStyle?: boolean
  /** Prefix of every chunk's key (default DEFAULT_S3_KEY_PREFIX); lets several stores share a bucket. */
  keyPrefix?: string
  /** Re-hash every chunk on `get` unless the call says `verify: false` (default on). */
  verifyOnRead?: boolean
  /** Checks at open that the bucket exists and the keys may use it (default true). */
  checkBucket?: boolean
}

/** A BlockStore kept in an S3 bucket. */
export interface S3BlockStore extends BlockStore {
  readonly bucket: string
  readonly keyPrefix: string
  /** The object key of the chunk with this CID; for fsck reports and tests. */
  keyOf: (cid: CID) => string
  /** Closes the HTTP connections. */
  close: () => void
}

/** The config file's `blockStore.s3` section (coordinator/config.ts). */
export interface S3BlockStoreConfig {
  endpoint: string
  bucket: string
  region?: string
  accessKeyId: string
  /** File holding the secret access key (one line; mode 0600). */
  secretAccessKeyFile: string
  forcePathStyle?: boolean
  keyPrefix?: string
}

/** The largest object a chunk can be; anything bigger is never read into memory. */
const MAX_CHUNK_BYTES = MAX_CHUNK_BLOCKS * BLOCK_SIZE
/** User metadata (x-amz-meta-stored-at) holding the chunk's stored time, ms since the epoch (BlockStore.stat). */
const STORED_AT_META = 'stored-at'
const HEX_NAME = new RegExp(`^[0-9a-f]{${DIGEST_BYTES * 2}}$`)

const noop = (): void => {}
const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop }

function isNotFound (err: unknown): boolean {
  if (!(err instanceof S3ServiceException)) return false
  return err.$metadata?.httpStatusCode === 404 || err.name === 'NotFound' || err.name === 'NoSuchKey'
}

function isAbort (err: unknown): boolean {
  return (err as Error)?.name === 'AbortError'
}

/**
 * Turns an S3 or network failure into UnavailableError (HTTP 503 for API
 * clients) naming the operation; the endpoint and bucket go to the log only.
 * Aborts stay aborts.
 */
function unavailable (what: string, err: unknown): Error {
  if (isAbort(err)) return err as Error
  const status = (err as S3ServiceException)?.$metadata?.httpStatusCode
  const detail = err instanceof S3ServiceException ? `${err.name}${status != null ? ` (HTTP ${status})` : ''}` : (err as Error)?.message ?? String(err)
  return new UnavailableError(`object store: ${what} failed: ${detail}`, { cause: err })
}

/** Reads a response body into one buffer, refusing more than `max` bytes. */
async function readBounded (body: AsyncIterable<Uint8Array>, max: number, tooLarge: () => Error): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  let total = 0
  for await (const part of body) {
    total += part.length
    if (total > max) throw tooLarge()
    parts.push(part)
  }
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** Validates the key prefix: object-key characters only, so a prefix can never reach outside its own namespace by an odd encoding. */
function checkKeyPrefix (prefix: string): string {
  if (!/^[A-Za-z0-9._/-]{0,200}$/.test(prefix) || prefix.startsWith('/') || prefix.includes('//') || prefix.split('/').some(p => p === '..' || p === '.')) {
    throw new ConfigError(`blockStore.s3.keyPrefix ${JSON.stringify(prefix)} must be up to 200 characters of letters, digits, ".", "_", "-" and "/"` +
      ` (no leading "/", no "." or ".." segments)`)
  }
  return prefix
}

/**
 * Opens an S3 block store: checks (unless told not to) that the bucket exists
 * and the keys may use it, so a wrong endpoint, bucket or key stops the
 * coordinator at start with one line instead of failing every request.
 */
export async function createS3BlockStore (components: S3BlockStoreComponents, init: S3BlockStoreInit): Promise<S3BlockStore> {
  for (const f of ['endpoint', 'bucket', 'accessKeyId', 'secretAccessKey'] as const) {
    if (typeof init?.[f] !== 'string' || init[f] === '') throw new TypeError(`createS3BlockStore needs init.${f}`)
  }
  const log = components.logger ?? silentLogger
  const verifyOnRead = init.verifyOnRead ?? DEFAULT_BLOCK_STORE_VERIFY_ON_READ
  const bucket = init.bucket
  const keyPrefix = checkKeyPrefix(init.keyPrefix ?? DEFAULT_S3_KEY_PREFIX)
  const client = new S3Client({
    endpoint: init.endpoint,
    region: init.region ?? DEFAULT_S3_REGION,
    forcePathStyle: init.forcePathStyle ?? true,
    credentials: { accessKeyId: init.accessKeyId, secretAccessKey: init.secretAccessKey },
    maxAttempts: DEFAULT_S3_MAX_ATTEMPTS,
    // The SDK's default CRC32 trailing checksums (aws-chunked uploads) are not understood
    // by every S3-compatible server (RGW of Ceph 16 refuses them); Content-MD5 and our own
    // BLAKE3 re-hash on read protect the bytes instead.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: DEFAULT_S3_CONNECT_TIMEOUT_MS, requestTimeout: DEFAULT_S3_REQUEST_TIMEOUT_MS }
  })

  if (init.checkBucket ?? true) {
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }))
    } catch (err) {
      client.destroy()
      const status = (err as S3ServiceException)?.$metadata?.httpStatusCode
      const why = status === 404
        ? 'the bucket does not exist'
        : status === 403 || status === 401
          ? 'the access key may not use it (wrong key or secret?)'
          : (err as Error)?.message ?? String(err)
      throw new ConfigError(`blockStore.s3: cannot use bucket ${JSON.stringify(bucket)} at ${init.endpoint}: ${why}`, { cause: err })
    }
  }

  const keyOfHex = (hex: string): string => `${keyPrefix}${hex}`
  /** Puts of the same chunk in flight in this process share one upload. */
  const shared = createSharedWrites()

  const exists = async (key: string, signal?: AbortSignal): Promise<boolean> => {
    try {
      await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal })
      return true
    } catch (err) {
      if (isNotFound(err)) return false
      throw unavailable('checking a chunk', err)
    }
  }

  /**
   * Sets the object's stored time to now: a server-side copy onto itself with
   * new metadata (S3 objects are immutable; this is how their metadata changes).
   * Throws NotFoundError when the object is absent.
   */
  const touchKey = async (key: string, signal?: AbortSignal): Promise<void> => {
    try {
      await client.send(new CopyObjectCommand({
        Bucket: bucket,
        Key: key,
        CopySource: `${bucket}/${key}`,
        MetadataDirective: 'REPLACE',
        Metadata: { [STORED_AT_META]: String(Date.now()) },
        ContentType: 'application/octet-stream'
      }), { abortSignal: signal })
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError('chunk is not in the block store')
      throw unavailable('touching a chunk', err)
    }
  }

  /** Uploads one chunk. Takes no signal: it may be shared by several callers, and one aborting must not fail the others. */
  const write = async (key: string, bytes: Uint8Array): Promise<void> => {
    if (await exists(key)) {
      // a publish re-using a stored chunk claims it: storage gc's grace period counts from now
      try {
        await touchKey(key)
        return
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err
        // deleted meanwhile (storage gc): upload it again
      }
    }
    try {
      await client.send(new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: bytes,
        ContentLength: bytes.length,
        ContentMD5: createHash('md5').update(bytes).digest('base64'),
        ContentType: 'application/octet-stream',
        Metadata: { [STORED_AT_META]: String(Date.now()) }
      }))
    } catch (err) {
      throw unavailable('storing a chunk', err)
    }
  }

  const store: S3BlockStore = {
    bucket,
    keyPrefix,

    keyOf: (cid) => keyOfHex(chunkDigestHex(cid)),

    close: () => { client.destroy() },

    async has (cid, options: AbortOptions = {}) {
      const key = keyOfHex(chunkDigestHex(cid))
      options.signal?.throwIfAborted()
      return await exists(key, options.signal)
    },

    async get (cid, options: AbortOptions & { verify?: boolean } = {}) {
      const key = keyOfHex(chunkDigestHex(cid))
      options.signal?.throwIfAborted()
      const corrupt = (): HashMismatchError => {
        log.error('block store: stored chunk is corrupt', { cid: cid.toString(), bucket, key })
        return new HashMismatchError(`stored chunk ${cid.toString()} is corrupt: larger than the largest chunk, ${MAX_CHUNK_BYTES / 1024 / 1024} MiB` +
          ` (the coordinator's log says where it is stored; run trimswarm coordinator fsck)`)
      }
      let bytes: Uint8Array
      try {
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: options.signal })
        if (res.ContentLength != null && res.ContentLength > MAX_CHUNK_BYTES) {
          await (res.Body as { destroy?: () => void } | undefined)?.destroy?.()
          throw corrupt()
        }
        bytes = await readBounded(res.Body as AsyncIterable<Uint8Array>, MAX_CHUNK_BYTES, corrupt)
      } catch (err) {
        if (err instanceof HashMismatchError) throw err
        if (isNotFound(err)) throw new NotFoundError(`chunk ${cid.toString()} is not in the block store`)
        throw unavailable('reading a chunk', err)
      }
      if (options.verify ?? verifyOnRead) {
        verifyStoredChunk(cid, bytes, () => { log.error('block store: stored chunk is corrupt', { cid: cid.toString(), bucket, key }) })
      }
      return bytes
    },

    async put (cid, bytes, options: AbortOptions = {}) {
      const hex = chunkDigestHex(cid)
      options.signal?.throwIfAborted()
      // Re-hash before anything is sent: a mismatch stores nothing.
      checkChunkForPut(cid, bytes)
      // A copy: the caller could change its buffer while the upload (or a retry of it) reads it.
      const own = bytes.slice()
      await shared(hex, async () => { await write(keyOfHex(hex), own) })
    },

    async delete (cid, options: AbortOptions = {}) {
      const key = keyOfHex(chunkDigestHex(cid))
      options.signal?.throwIfAborted()
      try {
        // S3 DELETE of an absent key succeeds, so deleting twice is a no-op as the contract asks.
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: options.signal })
      } catch (err) {
        if (isNotFound(err)) return
        throw unavailable('deleting a chunk', err)
      }
    },

    async stat (cid, options: AbortOptions = {}) {
      const key = keyOfHex(chunkDigestHex(cid))
      options.signal?.throwIfAborted()
      let head
      try {
        head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: options.signal })
      } catch (err) {
        if (isNotFound(err)) throw new NotFoundError(`chunk ${cid.toString()} is not in the block store`)
        throw unavailable('checking a chunk', err)
      }
      // Our own millisecond stamp (the coordinator's clock, like storage gc's); the server's
      // Last-Modified (whole seconds, another clock) only for objects written by other tools.
      const stamped = Number(head.Metadata?.[STORED_AT_META])
      const storedAt = Number.isFinite(stamped) && stamped > 0 ? stamped : head.LastModified?.getTime() ?? 0
      return { bytes: head.ContentLength ?? 0, storedAt }
    },

    async touch (cid, options: AbortOptions = {}) {
      const key = keyOfHex(chunkDigestHex(cid))
      options.signal?.throwIfAborted()
      try {
        await touchKey(key, options.signal)
      } catch (err) {
        if (err instanceof NotFoundError) throw new NotFoundError(`chunk ${cid.toString()} is not in the block store`)
        throw err
      }
    },

    async * list (options: AbortOptions = {}) {
      let token: string | undefined
      do {
        options.signal?.throwIfAborted()
        let page
        try {
          page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: keyPrefix, ContinuationToken: token, MaxKeys: S3_LIST_PAGE_KEYS }),
            { abortSignal: options.signal })
        } catch (err) {
          throw unavailable('listing chunks', err)
        }
        for (const obj of page.Contents ?? []) {
          const name = obj.Key?.slice(keyPrefix.length) ?? ''
          // Anything else under the prefix (an operator's file, a deeper key) is not a chunk.
          if (!HEX_NAME.test(name)) continue
          yield chunkCid(fromHex(name))
        }
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
      } while (token != null)
    }
  }
  return store
}

/**
 * Opens the S3 store the config file's `blockStore.s3` names: reads the secret
 * access key from its file (first line, trimmed). Throws ConfigError.
 */
export async function openS3BlockStoreFromConfig (components: S3BlockStoreComponents, config: S3BlockStoreConfig): Promise<S3BlockStore> {
  let secret: string
  try {
    secret = (await readFile(config.secretAccessKeyFile, 'utf8')).split('\n')[0].trim()
  } catch (err) {
    throw new ConfigError(`blockStore.s3.secretAccessKeyFile: cannot read ${config.secretAccessKeyFile}: ${(err as Error).message}`, { cause: err })
  }
  if (secret === '') throw new ConfigError(`blockStore.s3.secretAccessKeyFile: ${config.secretAccessKeyFile} is empty`)
  return await createS3BlockStore(components, { ...config, secretAccessKey: secret })
}
