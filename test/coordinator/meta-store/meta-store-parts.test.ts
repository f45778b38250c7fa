/** The metadata store's pure parts, without a database: SQL range building, batch collapsing, the lease rule, migration order, the mutex and the semaphore. */
import { describe, expect, it } from 'vitest'
import { createKeyedMutex, createSemaphore } from '../../../coordinator/meta-store/keyed-mutex.ts'
import { mayTake } from '../../../coordinator/meta-store/leases.ts'
import { checkMigrations, MIGRATIONS, pendingMigrations } from '../../../coordinator/meta-store/migrations.ts'
import { SchemaTooNewError } from '../../../coordinator/meta-store/errors.ts'
import { isUnavailable, lastOpPerKey, rangeSql } from '../../../coordinator/meta-store/pg-meta-db.ts'

describe('meta-store parts', () => {
  it('rangeSql: bounds become parameters after the space ($1), `after` continues a scan in its direction', () => {
    expect(rangeSql({})).toEqual({ where: '', params: [] })
    const r = rangeSql({ gt: 'a', lte: 'z\x00' })
    expect(r.where).toBe(' AND key > $2 AND key <= $3')
    expect(r.params.map(b => [...b])).toEqual([[0x61], [0x7a, 0]])
    expect(rangeSql({ lt: 'm', reverse: true }, 'k').where).toBe(' AND key < $2 AND key < $3')
    expect(rangeSql({ gte: 'b' }, 'c').where).toBe(' AND key >= $2 AND key > $3')
    // a bound never reaches the SQL text, only its bytes
    expect(rangeSql({ gt: "'; DROP TABLE meta_kv; --" }).where).toBe(' AND key > $2')
  })

  it('lastOpPerKey: the last op per (space, key) wins, as applying them in order would leave it', () => {
    const v = (s: string): Buffer => Buffer.from(s)
    const { puts, dels } = lastOpPerKey([
      { type: 'put', space: 'a', key: 'k', value: v('1') },
      { type: 'del', space: 'a', key: 'k' },
      { type: 'put', space: 'b', key: 'k', value: v('2') },
      { type: 'del', space: 'a', key: 'x' },
      { type: 'put', space: 'a', key: 'x', value: v('3') },
      { type: 'put', space: 'b', key: 'k', value: v('4') }
    ])
    expect(puts.map(p => [p.space, p.key, p.value.toString()])).toEqual([['b', 'k', '4'], ['a', 'x', '3']])
    expect(dels).toEqual([{ space: 'a', key: 'k' }])
  })

  it('isUnavailable: a statement cancelled at the statement timeout (a lock held elsewhere for longer) is a 503 to retry, not a 500', () => {
    expect(isUnavailable(Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }))).toBe(true)
    expect(isUnavailable(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).toBe(true)
    expect(isUnavailable(Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' }))).toBe(false)
  })

  it('mayTake: a free, expired or own lease may be taken; a live lease of another holder not', () => {
    expect(mayTake(undefined, 'a', 100)).toBe(true)
    expect(mayTake({ holder: 'a', expires: 200 }, 'a', 100)).toBe(true)
    expect(mayTake({ holder: 'b', expires: 200 }, 'a', 100)).toBe(false)
    expect(mayTake({ holder: 'b', expires: 100 }, 'a', 100)).toBe(true)
  })

  it('migrations are numbered 1..n; pending ones are those not applied; an unknown applied one is refused', () => {
    expect(() => checkMigrations(MIGRATIONS)).not.toThrow()
    expect(() => checkMigrations([{ version: 2, name: 'x', sql: '' }])).toThrow(/expected 1/)
    expect(pendingMigrations(MIGRATIONS, []).map(m => m.version)).toEqual(MIGRATIONS.map(m => m.version))
    expect(pendingMigrations(MIGRATIONS, [1]).map(m => m.version)).toEqual(MIGRATIONS.slice(1).map(m => m.version))
    expect(pendingMigrations(MIGRATIONS, MIGRATIONS.map(m => m.version))).toEqual([])
    expect(() => pendingMigrations(MIGRATIONS, [1, MIGRATIONS.length + 1])).toThrow(SchemaTooNewError)
  })

  it('the keyed mutex runs one holder per name, in order; other names run at once', async () => {
    const m = createKeyedMutex()
    const log: string[] = []
    const job = (name: string, tag: string, ms: number): Promise<void> => m.run(name, async () => { log.push(`${tag}+`); await new Promise(resolve => setTimeout(resolve, ms)); log.push(`${tag}-`) })
    await Promise.all([job('x', 'a', 20), job('x', 'b', 1), job('y', 'c', 1)])
    expect(log.indexOf('a-')).toBeLessThan(log.indexOf('b+'))
    expect(log.indexOf('c+')).toBeLessThan(log.indexOf('a-'))
    await expect(m.run('x', async () => { throw new Error('boom') })).rejects.toThrow('boom')
    expect(await m.run('x', async () => 1)).toBe(1)
  })

  it('the semaphore never runs more than its slots at once and hands slots on in order', async () => {
    const s = createSemaphore(2)
    let running = 0
    let most = 0
    const order: number[] = []
    await Promise.all(Array.from({ length: 7 }, async (_, i) => await s.run(async () => {
      running++
      most = Math.max(most, running)
      order.push(i)
      await new Promise(resolve => setTimeout(resolve, 5))
      running--
      if (i === 3) throw new Error('slot 3 failed')
    }).catch(() => {})))
    expect(most).toBe(2)
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6])
    expect(await s.run(async () => 'free')).toBe('free')
  })
})
