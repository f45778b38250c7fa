/**
 * Wire-level constants shared by every part of trimswarm. Docs name these
 * constants rather than repeating their values (see docs/PROTOCOL.md).
 */

/** Size of the unit of local reuse: raw disk images keep file data in 4 KiB-aligned blocks (../shared/FACTS.md). */
export const BLOCK_SIZE = 4096

/** Multicodec of a chunk's CID: the chunk is the raw bytes. */
export const RAW_CODE = 0x55

/** Multicodec of a manifest's CID: the manifest is dag-cbor. */
export const DAG_CBOR_CODE = 0x71

/** Multihash code of BLAKE3-256 (multiformats table). */
export const BLAKE3_CODE = 0x1e

/** Length of a BLAKE3 digest in bytes. */
export const DIGEST_BYTES = 32

/**
 * Bytes of each 4 KiB block's BLAKE3 digest kept in the manifest. 64 bits find
 * candidate local blocks; the chunk's full 256-bit CID is what verifies them.
 * 8 bytes cost 0.4 MB on base.img's 50k non-zero blocks where 32 would cost 1.6 MB.
 */
export const BLOCK_PREFIX_BYTES = 8

/** Manifest format version (field `format`). */
export const MANIFEST_FORMAT = 1

/** Signed-manifest envelope format version (field `format`). */
export const ENVELOPE_FORMAT = 1

/** Domain separation for manifest signatures: what is signed is this tag followed by the manifest bytes. */
export const MANIFEST_SIGNATURE_CONTEXT = 'trimswarm manifest v1\n'

/** Signature algorithm of manifests and capabilities. */
export const SIGNATURE_ALGORITHM = 'Ed25519'

/** Largest manifest accepted by a decoder (a 2 TiB image of non-zero data fits). */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024

/** Largest chunk, in blocks, any decoder accepts. */
export const MAX_CHUNK_BLOCKS = 1024

/** Names of images, versions, groups and sites: a safe path segment. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/

/** Block exchange protocol id between peers (libp2p): chunks as they are (agents before issue 21 speak only this). */
export const BLOCKS_PROTOCOL = '/trimswarm/blocks/1.0.0'

/** The same block exchange where the server may send a chunk zstd-compressed (BLOCK_ZSTD); chosen when both peers have it. */
export const BLOCKS_PROTOCOL_ZSTD = '/trimswarm/blocks/1.1.0'

/**
 * 1.1.0 plus partial chunks: a peer may ask for only the blocks of a chunk it lacks (WANT_BLOCKS) and
 * gets them as one BLOCK_PART; chosen when both peers have it.
 */
export const BLOCKS_PROTOCOL_PARTIAL = '/trimswarm/blocks/1.2.0'

/** The block-exchange protocol ids a fetching peer proposes, most preferred first (libp2p's multistream-select picks). */
export const BLOCKS_PROTOCOLS: readonly string[] = [BLOCKS_PROTOCOL_PARTIAL, BLOCKS_PROTOCOL_ZSTD, BLOCKS_PROTOCOL]

/** Signed-manifest exchange protocol id between peers (libp2p): protocol/manifest-exchange.ts. */
export const MANIFEST_PROTOCOL = '/trimswarm/manifest/1.0.0'

/** Prefix of the private kad-dht among an organisation's agents. */
export const DHT_PROTOCOL_PREFIX = '/trimswarm'

/** Prefix of every coordinator HTTP API route. */
export const API_PREFIX = '/v1'

/** Media type of a signed manifest envelope (dag-cbor). */
export const MANIFEST_MEDIA_TYPE = 'application/vnd.trimswarm.manifest+cbor'

/** Media type of a block batch or delta pack body. */
export const BLOCK_STREAM_MEDIA_TYPE = 'application/vnd.trimswarm.blocks+zstd'

/**
 * The file in the coordinator's and the agent's data dirs that records the dir's format
 * (`{"format": N, "writtenBy"}`; bin/data-format.ts checks it before a command opens the dir).
 */
export const DATA_FORMAT_FILE = 'data-format.json'
