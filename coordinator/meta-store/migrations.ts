/**
 * The PostgreSQL schema, as an ordered list of migrations. Each runs once, in
 * its own transaction, recorded in `schema_migrations`; a coordinator applies
 * the ones its database lacks at start, under an advisory lock, so several
 * coordinators starting together apply each exactly once. Never edit a
 * released migration: add the next number.
 */
import { SchemaTooNewError } from './errors.ts'

/** One step of the schema. */
export interface Migration {
  version: number
  name: string
  sql: string
}

/** Every migration, in order (versions 1, 2, 3, ... without gaps). */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'meta_kv',
    // One table for every key space, the same model as level's sublevels: the stores need
    // only point reads and ordered range scans per space (docs/ARCHITECTURE.md "Metadata store").
    // Keys are bytea, compared bytewise like level's (UTF-8 byte order; text could not hold the
    // NUL the swarm's keys use); values are the bytes level would store (JSON text, UTF-8, raw).
    sql: `CREATE TABLE meta_kv (
  space text COLLATE "C" NOT NULL,
  key bytea NOT NULL,
  value bytea NOT NULL,
  PRIMARY KEY (space, key)
)`
  },
  {
    version: 2,
    name: 'meta_space_gen',
    // A counter per space, bumped in the transaction of every write to it: a coordinator reloads
    // an in-memory mirror (tokens, policies, reports) only when its spaces' counters moved.
    sql: `CREATE TABLE meta_space_gen (
  space text COLLATE "C" PRIMARY KEY,
  gen bigint NOT NULL
)`
  }
]

/** Checks that versions run 1..n without gaps or repeats (a test and the start call it). */
export function checkMigrations (list: readonly Migration[]): void {
  list.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${m.name} has version ${m.version}, expected ${i + 1}`)
  })
}

/** Which migrations a database at these applied versions still needs; throws when it holds one this code does not know (a newer coordinator's schema). */
export function pendingMigrations (list: readonly Migration[], applied: readonly number[]): Migration[] {
  const known = new Set(list.map(m => m.version))
  const unknown = applied.filter(v => !known.has(v))
  if (unknown.length > 0) {
    throw new SchemaTooNewError(`the metadata database has schema version ${Math.max(...unknown)}, this coordinator knows up to ${list.length}: ` +
      'a newer coordinator upgraded it (run that version, or restore the database from before the upgrade)')
  }
  const done = new Set(applied)
  return list.filter(m => !done.has(m.version))
}
