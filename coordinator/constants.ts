/**
 * Defaults of the coordinator, applied once where each setting is read
 * (`config.x ?? DEFAULT_X`). docs/CONFIGURATION.md names these constants.
 * Other parts of the coordinator append their own below.
 */

// --- LDAP / Active Directory (coordinator/ldap-authenticator.ts; the config file's `ldap` object) ---

/** Finds the user's entry; `{user}` is the login name, escaped per RFC 4515. AD: `(sAMAccountName={user})`. */
export const DEFAULT_LDAP_USER_FILTER = '(uid={user})'

/** Attribute of the user's entry that holds the canonical user name (AD: sAMAccountName). */
export const DEFAULT_LDAP_USER_NAME_ATTRIBUTE = 'uid'

/** Where group names come from: the user's memberOf values, or a search for group entries. */
export const DEFAULT_LDAP_GROUP_SOURCE = 'memberOf'

/** Attribute of the user's entry listing the DNs of its groups (AD and OpenLDAP's memberof overlay). */
export const DEFAULT_LDAP_MEMBER_OF_ATTRIBUTE = 'memberOf'

/** Group search: `{dn}` is the user's DN and `{user}` the canonical user name, both escaped per RFC 4515. */
export const DEFAULT_LDAP_GROUP_FILTER = '(member={dn})'

/** Group search: attribute of a group entry that is its name (a policy key). */
export const DEFAULT_LDAP_GROUP_NAME_ATTRIBUTE = 'cn'

/** Longest wait for one LDAP operation (bind, search): a directory slower than this counts as down (503). */
export const DEFAULT_LDAP_TIMEOUT_MS = 5000

/** Longest wait for the TCP (and LDAPS) connection to the directory. */
export const DEFAULT_LDAP_CONNECT_TIMEOUT_MS = 3000

/** Longest login name sent to the directory (the login API allows the same; see protocol/api.ts LoginRequest). */
export const MAX_LDAP_USER_LENGTH = 256

/** Longest password sent to the directory (as protocol/api.ts LoginRequest). */
export const MAX_LDAP_PASSWORD_LENGTH = 1024

// --- block store (coordinator/directory-block-store.ts) ---

/**
 * Hex characters of a chunk's digest per shard directory level, and levels:
 * `blocks/ab/cd/abcd...` gives 65,536 leaf directories, so even 30 million
 * chunks (a 2 TiB image at 64 KiB) keep a few hundred files per directory.
 */
export const BLOCK_STORE_SHARD_CHARS = 2
export const BLOCK_STORE_SHARD_LEVELS = 2

/** Suffix of a chunk being written; such files are never listed or read, and are deleted when a store opens. */
export const BLOCK_STORE_TMP_SUFFIX = '.tmp'

/** Shard directories scanned in parallel when a store opens (stale temp file sweep). */
export const BLOCK_STORE_SCAN_CONCURRENCY = 16
