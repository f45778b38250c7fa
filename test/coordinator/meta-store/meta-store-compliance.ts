/**
 * The MetaDb compliance suite: what the coordinator's stores rely on, run
 * against every implementation (level in a temp dir, PostgreSQL from
 * scripts/scale-out-stack.sh). Each test works in spaces of its own name, so
 * one database serves the whole suite.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { MetaDb } from '../../../coordinator/meta-store/interface.ts'
import { createLeases } from '../../../coordinator/meta-store/leases.ts'

/** Runs the suite; `db()` is the store under test (opened in the caller's beforeAll). */
export function metaStoreComplianceTests (name: string, db: () => MetaDb): void {
  const fresh = (what: string): string => `t-${what}-${randomBytes(4).toString('hex')}`

  describe(`MetaDb compliance: ${name}`, () => {
    it('get of an absent key is undefined; put, get, getMany, del', async () => {
      const s = db().sublevel<string, { n: number }>(fresh('basic'), { valueEncoding: 'json' })
      expect(await s.get('a')).toBeUndefined()
      await s.put('a', { n: 1 })
      await s.put('b', { n: 2 })
      await s.put('a', { n: 3 })
      expect(await s.get('a')).toEqual({ n: 3 })
      expect(await s.getMany(['b', 'zz', 'a'])).toEqual([{ n: 2 }, undefined, { n: 3 }])
      expect(await s.getMany([])).toEqual([])
      await s.del('a')
      await s.del('never-there')
      expect(await s.get('a')).toBeUndefined()
    })

    it('keeps each value encoding exact: json (key order, nested, unicode), utf8, raw bytes', async () => {
      const j = db().sublevel<string, unknown>(fresh('json'), { valueEncoding: 'json' })
      const value = { zeta: 1, alpha: [1, 2.5, -0.125, null, true], nested: { b: 'ü€😀', a: '' }, big: 2 ** 53 - 1 }
      await j.put('k', value)
      const back = await j.get('k')
      expect(back).toEqual(value)
      expect(JSON.stringify(back)).toBe(JSON.stringify(value))
      const u = db().sublevel<string, string>(fresh('utf8'), { valueEncoding: 'utf8' })
      await u.put('k', 'a\u00e9\u{1F600}')
      await u.put('empty', '')
      expect(await u.get('k')).toBe('a\u00e9\u{1F600}')
      expect(await u.get('empty')).toBe('')
      const v = db().sublevel<string, Uint8Array>(fresh('view'), { valueEncoding: 'view' })
      const bytes = new Uint8Array(70_000).map((_, i) => (i * 7) & 0xff)
      await v.put('k', bytes.subarray(5, 65_005))
      const got = await v.get('k')
      expect(got).toBeInstanceOf(Uint8Array)
      expect(Buffer.from(got!).equals(Buffer.from(bytes.subarray(5, 65_005)))).toBe(true)
    })

    it('orders keys by their UTF-8 bytes, with NUL and non-ASCII keys', async () => {
      const s = db().sublevel<string, number>(fresh('order'), { valueEncoding: 'json' })
      const keys = ['b', 'a', 'a\x00z', 'a\x00', 'aa', 'A', '\u00e9', '\xff', '\u{1F600}', 'z', '0', '']
      for (const [i, k] of keys.entries()) await s.put(k, i)
      const expected = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
      const seen: string[] = []
      for await (const [k, v] of s.iterator()) { seen.push(k); expect(v).toBe(keys.indexOf(k)) }
      expect(seen).toEqual(expected)
      const rev: string[] = []
      for await (const k of s.keys({ reverse: true })) rev.push(k)
      expect(rev).toEqual([...expected].reverse())
      // a prefix range the stores use: `${owner}\x00` .. `${owner}\x00\xff`
      const pre: string[] = []
      for await (const k of s.keys({ gt: 'a\x00', lt: 'a\x00\xff' })) pre.push(k)
      expect(pre).toEqual(['a\x00z'])
    })

    it('ranges: gt, gte, lt, lte, reverse and limit, across many keys', async () => {
      const s = db().sublevel<string, number>(fresh('range'), { valueEncoding: 'json' })
      const n = 1234 // more than one page of the PostgreSQL iterator
      const key = (i: number): string => `k${String(i).padStart(5, '0')}`
      await s.batch(Array.from({ length: n }, (_, i) => ({ type: 'put' as const, key: key(i), value: i })))
      const collect = async (range: Parameters<typeof s.values>[0]): Promise<number[]> => { const out: number[] = []; for await (const v of s.values(range)) out.push(v); return out }
      expect(await collect({})).toEqual(Array.from({ length: n }, (_, i) => i))
      expect(await collect({ gt: key(10), lt: key(15) })).toEqual([11, 12, 13, 14])
      expect(await collect({ gte: key(10), lte: key(15) })).toEqual([10, 11, 12, 13, 14, 15])
      expect(await collect({ lt: key(600), reverse: true, limit: 3 })).toEqual([599, 598, 597])
      expect(await collect({ gte: key(100), limit: 700 })).toEqual(Array.from({ length: 700 }, (_, i) => 100 + i))
      expect(await collect({ lte: key(1000), gt: key(100), reverse: true, limit: 900 })).toEqual(Array.from({ length: 900 }, (_, i) => 1000 - i))
      expect(await collect({ gt: key(n) })).toEqual([])
      expect(await collect({ limit: 0 })).toEqual([])
    })

    it('an iterator can be left early and closed', async () => {
      const s = db().sublevel<string, number>(fresh('close'), { valueEncoding: 'json' })
      await s.batch([1, 2, 3].map(i => ({ type: 'put' as const, key: `k${i}`, value: i })))
      const it = s.keys()
      const got: string[] = []
      for await (const k of it) { got.push(k); break }
      await it.close()
      expect(got).toEqual(['k1'])
      const it2 = s.iterator({ reverse: true })
      await it2.close()
    })

    it('sublevels are separate key spaces', async () => {
      const a = db().sublevel<string, string>(fresh('sa'), { valueEncoding: 'utf8' })
      const b = db().sublevel<string, string>(fresh('sb'), { valueEncoding: 'utf8' })
      await a.put('k', 'in a')
      await b.put('k', 'in b')
      expect(await a.get('k')).toBe('in a')
      expect(await b.get('k')).toBe('in b')
      await a.clear()
      expect(await a.get('k')).toBeUndefined()
      expect(await b.get('k')).toBe('in b')
    })

    it('a root batch writes several spaces at once; a later op on a key wins', async () => {
      const a = db().sublevel<string, number>(fresh('ba'), { valueEncoding: 'json' })
      const b = db().sublevel<string, Uint8Array>(fresh('bb'), { valueEncoding: 'view' })
      await a.put('gone', 1)
      await db().batch([
        { type: 'put', sublevel: a, key: 'x', value: 1 },
        { type: 'put', sublevel: b, key: 'x', value: new Uint8Array([1, 2, 3]) },
        { type: 'del', sublevel: a, key: 'gone' },
        { type: 'put', sublevel: a, key: 'y', value: 1 },
        { type: 'put', sublevel: a, key: 'y', value: 2 },
        { type: 'put', sublevel: a, key: 'z', value: 1 },
        { type: 'del', sublevel: a, key: 'z' }
      ])
      expect(await a.getMany(['x', 'y', 'z', 'gone'])).toEqual([1, 2, undefined, undefined])
      expect([...(await b.get('x'))!]).toEqual([1, 2, 3])
      await a.batch([{ type: 'del', key: 'x' }, { type: 'put', key: 'w', value: 9 }])
      expect(await a.getMany(['x', 'w'])).toEqual([undefined, 9])
    })

    it('a batch that cannot be encoded writes nothing', async () => {
      const a = db().sublevel<string, unknown>(fresh('atomic'), { valueEncoding: 'json' })
      await expect(db().batch([
        { type: 'put', sublevel: a, key: 'ok', value: 1 },
        { type: 'put', sublevel: a, key: 'bad', value: 10n }
      ])).rejects.toThrow()
      expect(await a.get('ok')).toBeUndefined()
    })

    it('clear takes a range', async () => {
      const s = db().sublevel<string, number>(fresh('clear'), { valueEncoding: 'json' })
      await s.batch(['a', 'b', 'c', 'd', 'e'].map((k, i) => ({ type: 'put' as const, key: k, value: i })))
      await s.clear({ lt: 'c' })
      const left: string[] = []
      for await (const k of s.keys()) left.push(k)
      expect(left).toEqual(['c', 'd', 'e'])
      await s.clear({ gte: 'd' })
      expect(await s.getMany(['c', 'd', 'e'])).toEqual([2, undefined, undefined])
    })

    it('lock runs holders of one name one at a time (a read-modify-write loses no update)', async () => {
      const s = db().sublevel<string, number>(fresh('lock'), { valueEncoding: 'json' })
      const name = fresh('counter')
      const rounds = 20
      await Promise.all(Array.from({ length: rounds }, async () => {
        await db().lock(name, async () => {
          const n = (await s.get('n')) ?? 0
          await new Promise(resolve => setTimeout(resolve, 2))
          await s.put('n', n + 1)
        })
      }))
      expect(await s.get('n')).toBe(rounds)
      // a failing holder releases the lock
      await expect(db().lock(name, async () => { throw new Error('holder failed') })).rejects.toThrow('holder failed')
      expect(await db().lock(name, async () => 'free again')).toBe('free again')
    })

    it('many locks of different names held at once all complete (their functions still get connections)', async () => {
      const s = db().sublevel<string, number>(fresh('locks'), { valueEncoding: 'json' })
      const n = 40
      await Promise.all(Array.from({ length: n }, async (_, i) => {
        await db().lock(`${fresh('many')}-${i}`, async () => {
          const v = (await s.get(`k${i}`)) ?? 0
          await new Promise(resolve => setTimeout(resolve, 20))
          await s.batch([{ type: 'put', key: `k${i}`, value: v + 1 }])
        })
      }))
      expect((await s.getMany(Array.from({ length: n }, (_, i) => `k${i}`))).every(v => v === 1)).toBe(true)
    }, 20_000)

    it('leases: one holder at a time, renewal by the holder only, takeover after expiry', async () => {
      let t = 1_000_000
      const now = (): number => t
      const a = createLeases({ db: db() }, { ttlMs: 1000, now, holder: 'coordinator-a' })
      const b = createLeases({ db: db() }, { ttlMs: 1000, now, holder: 'coordinator-b' })
      const name = fresh('lease')
      expect(await a.tryAcquire(name)).toBe(true)
      expect(await b.tryAcquire(name)).toBe(false)
      expect(await a.tryAcquire(name)).toBe(true) // already ours
      expect(await b.renew(name)).toBe(false)
      t += 900
      expect(await a.renew(name)).toBe(true)
      t += 900
      expect(await b.tryAcquire(name)).toBe(false) // renewed 900 ms ago: still live
      t += 200
      expect(await b.tryAcquire(name)).toBe(true) // a stopped renewing: expired, taken over
      expect(await a.renew(name)).toBe(false)
      await a.release(name) // not a's any more: a no-op
      expect(await a.tryAcquire(name)).toBe(false)
      await b.release(name)
      expect(await a.tryAcquire(name)).toBe(true)
    })
  })
}
