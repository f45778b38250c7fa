/**
 * The console's pages (images, machine tokens, rollout and bandwidth reports,
 * agents, events, group policies), registered on the console's app by
 * createConsole (console.ts) with what they share in a ConsoleContext.
 */
import { Hono, type Context } from 'hono'
import { html } from 'hono/html'
import type { Auth } from '../auth.ts'
import type { Audit } from '../audit.ts'
import type { EventStore } from '../event-store.ts'
import type { ImageService } from '../image-service.ts'
import type { CoordinatorEnv, Logger } from '../interface.ts'
import type { PolicyStore } from '../policy-store.ts'
import type { SessionTokens } from '../session-tokens.ts'
import { nameParam, tokenIdParam as tokenId } from '../request-body.ts'
import type { TokenStore } from '../token-store.ts'
import { NotFoundError } from '../../protocol/errors.ts'
import { name as nameSchema } from '../../protocol/api.ts'
import { createCharts, windowParam } from './charts.ts'
import type { EventIndex } from './event-index.ts'
import type { Body, Markup } from './layout.ts'
import { formatBytes, formatTime } from './format.ts'
import { actionForm, chartBox, createdTokenBody, detailList, filterForm, selectField, tokenForm, typeField, windowField } from './pages.ts'
import { formValues, parsePolicyForm, policyToForm, renderPolicyForm } from './policy-form.ts'
import { checkParams, versionHref, type ReportSource, type TableDef } from './report-queries.ts'
import { typeParam } from './table-params.ts'
import type { SeriesStore } from './series-store.ts'
import { csrfToken } from './session.ts'
import type { ConsoleComponents } from './console.ts'

/** What the retire button says before it acts. */
function retireNote (version: string, latest: boolean): string {
  const stays = latest ? ' (agents already on it stay on it until a newer version is published or they are given a version by name)' : ''
  return `Retiring stops offering ${version} as latest${stays}; storage gc then deletes its chunks that no live version shares, and it is no longer served.`
}

/** What the console's route groups share. */
export interface ConsoleContext {
  components: ConsoleComponents
  auth: Auth
  sessions: SessionTokens
  images: ImageService
  events: EventStore
  policies: PolicyStore
  tokens: TokenStore
  logger: Logger
  audit: Audit
  report: ReportSource
  refreshMs: number
  ttl: number
  index: EventIndex
  series: SeriesStore
  tables: Record<string, TableDef>
  charts: ReturnType<typeof createCharts>
  js: string
  css: string
  favicon: string
  send: (c: Context, status: number, page: Markup) => Response | Promise<Response>
  page: (c: Context<CoordinatorEnv>, title: string, active: string, body: Body, status?: number) => Response | Promise<Response>
  errorPage: (c: Context<CoordinatorEnv>, err: unknown) => Response | Promise<Response>
  imageNames: () => Promise<string[]>
  siteNames: () => Promise<string[]>
  qs: (q: Record<string, string | undefined>) => string
  show: (id: string, q: Record<string, string>, pagePath: string) => Promise<Markup>
}

/** The image pages: versions, one version, retirement. */
export function useImagePages (app: Hono<CoordinatorEnv>, ctx: ConsoleContext): void {
  const { images, audit, page, errorPage, show } = ctx
  app.get('/console/images', async (c) => {
    try {
      const retired = c.req.query('retired')
      const freed = 'Storage gc (trimswarm image gc, or the daily sweep) frees its chunks that no live version shares.'
      const done = retired != null ? note(`Retired ${retired}. ${freed}`) : ''
      return await page(c, 'Images', 'images', [done, await show('versions', {}, '/console/images')])
    } catch (err) { return await errorPage(c, err) }
  })
  app.get('/console/images/:image/:version', async (c) => {
    try {
      const image = nameParam(c.req.param('image'), 'image')
      const version = nameParam(c.req.param('version'), 'version')
      const v = (await images.adminImages()).images.find(i => i.name === image)?.versions.find(x => x.version === version)
      if (v == null) throw new NotFoundError(`image ${image} has no version ${version}`)
      const body = [
        detailList([
          ['state', v.latest ? `${v.state}, latest` : v.state],
          ['published', formatTime(v.publishedAt)],
          ['size', formatBytes(v.size)],
          ['non-zero data', formatBytes(v.nonZeroBytes)],
          ['chunks', String(v.chunks)],
          ['previous version', v.previous ?? 'none'],
          ['delta pack', v.deltaPackBytes == null ? 'none' : formatBytes(v.deltaPackBytes)]
        ]),
        v.state === 'live' || v.state === 'incomplete'
          ? actionForm(`${versionHref(image, version)}/retire`, csrfToken(c), `Retire ${image} ${version}`, retireNote(version, v.latest))
          : note(`This version is ${v.state}.`),
        html`<p><a href="/console/images">Back to the images</a> · <a href="/console/rollout?image=${image}">Rollout of ${image}</a></p>`
      ]
      return await page(c, `${image} ${version}`, 'images', body)
    } catch (err) { return await errorPage(c, err) }
  })
  app.post('/console/images/:image/:version/retire', async (c) => {
    try {
      const image = nameParam(c.req.param('image'), 'image')
      const version = nameParam(c.req.param('version'), 'version')
      const before = await images.getInfo(image, version).catch(() => undefined)
      const after = await images.retire(image, version)
      audit(c, 'version.retire', { target: { image, version, via: 'console' }, before: { retired: before?.retired }, after: { retired: after.retired } })
      return c.redirect(`/console/images?retired=${encodeURIComponent(`${image} ${version}`)}`, 303)
    } catch (err) { return await errorPage(c, err) }
  })
}

/** The machine token pages. */
export function useTokenPages (app: Hono<CoordinatorEnv>, ctx: ConsoleContext): void {
  const { policies, tokens, audit, page, errorPage, show } = ctx
  // ---- machine tokens ----
  const groupNames = (): string[] => Object.keys(policies.all()).sort()
  app.get('/console/tokens', async (c) => {
    try {
      const revoked = c.req.query('revoked')
      const done = revoked != null ? note(`Revoked token ${revoked}: agents using it get 401 from their next request.`) : ''
      return await page(c, 'Tokens', 'tokens', [done, await show('tokens', {}, '/console/tokens'), tokenForm(csrfToken(c), groupNames())])
    } catch (err) { return await errorPage(c, err) }
  })
  app.post('/console/tokens', async (c) => {
    try {
      const form = await c.req.parseBody()
      const group = typeof form.group === 'string' ? form.group.trim() : ''
      const label = typeof form.name === 'string' ? form.name.trim() : ''
      const again = async (message: string): Promise<Response> =>
        await page(c, 'Tokens', 'tokens', [
          await show('tokens', {}, '/console/tokens'), tokenForm(csrfToken(c), groupNames(), { group, name: label }, message)
        ], 400)
      try {
        nameSchema.parse(group, 'group')
      } catch {
        return await again('Group: letters, digits and . _ + - only (up to 128), starting with a letter or digit.')
      }
      if (label.length > 128) return await again('Name: at most 128 characters.')
      const { info, token } = await tokens.create(group, label === '' ? undefined : label)
      audit(c, 'token.create', { target: { tokenId: info.id, via: 'console' }, before: null, after: info })
      return await page(c, 'Token created', 'tokens', createdTokenBody(info, token))
    } catch (err) { return await errorPage(c, err) }
  })
  app.get('/console/tokens/:id', async (c) => {
    try {
      const id = tokenId(c.req.param('id'))
      const t = (await tokens.list()).find(x => x.id === id)
      if (t == null) throw new NotFoundError(`no token ${id}`)
      const body = [
        detailList([['group', t.group], ['name (site)', t.name], ['created', formatTime(t.createdAt)], ['state', t.revoked ? 'revoked' : 'active']]),
        t.revoked
          ? note('This token is revoked.')
          : actionForm(`/console/tokens/${id}/revoke`, csrfToken(c), `Revoke token ${id}`,
            'Agents using this token get 401 from their next request. This cannot be undone: give them a new token.'),
        html`<p><a href="/console/tokens">Back to the tokens</a></p>`
      ]
      return await page(c, `Token ${id}`, 'tokens', body)
    } catch (err) { return await errorPage(c, err) }
  })
  app.post('/console/tokens/:id/revoke', async (c) => {
    try {
      const id = tokenId(c.req.param('id'))
      const before = (await tokens.list()).find(t => t.id === id) ?? null
      const after = await tokens.revoke(id)
      audit(c, 'token.revoke', { target: { tokenId: id, via: 'console' }, before, after })
      return c.redirect(`/console/tokens?revoked=${id}`, 303)
    } catch (err) { return await errorPage(c, err) }
  })
}

/** Rollout, bandwidth, agents and events. */
export function useReportPages (app: Hono<CoordinatorEnv>, ctx: ConsoleContext): void {
  const { images, events, tables, charts, page, errorPage, imageNames, siteNames, qs, show } = ctx
  app.get('/console/rollout', async (c) => {
    try {
      const q = c.req.query()
      const names = await imageNames()
      const image = q.image != null && q.image !== '' ? nameParam(q.image, 'image') : names[0]
      const w = windowParam(q)
      const imageField = selectField('Image', 'image', names, image, names.length === 0 ? 'no images yet' : 'choose')
      const form = filterForm('/console/rollout', [imageField, windowField(w.name)])
      if (image == null) return await page(c, 'Rollout', 'rollout', [form, note('No image has been published yet.')])
      const chartSrc = `/console/chart/rollout${qs({ image, window: q.window })}`
      const body = [
        form,
        chartBox(chartSrc, await charts.rollout.render({ image, ...(q.window != null ? { window: q.window } : {}) })),
        await show('rollout', { image }, '/console/rollout'),
        await show('failures', { image }, '/console/rollout')
      ]
      return await page(c, `Rollout of ${image}`, 'rollout', body)
    } catch (err) { return await errorPage(c, err) }
  })

  app.get('/console/bandwidth', async (c) => {
    try {
      const q = c.req.query()
      const image = q.image != null && q.image !== '' ? nameParam(q.image, 'image') : undefined
      const site = q.site != null && q.site !== '' ? nameParam(q.site, 'site') : undefined
      const w = windowParam(q)
      const fields = [selectField('Image', 'image', await imageNames(), image), selectField('Site', 'site', await siteNames(), site), windowField(w.name)]
      const form = filterForm('/console/bandwidth', fields)
      const chartQ = {
        ...(image != null ? { image } : {}), ...(site != null && image == null ? { site } : {}), ...(q.window != null ? { window: q.window } : {})
      }
      const body = [
        form,
        image != null && site != null ? note('The chart shows the image; choose only a site to chart a site.') : '',
        chartBox(`/console/chart/bandwidth${qs(chartQ)}`, await charts.bandwidth.render(chartQ)),
        await show('totals', { ...(image != null ? { image } : {}), ...(site != null ? { site } : {}) }, '/console/bandwidth'),
        await show('by-site', image != null ? { image } : {}, '/console/bandwidth'),
        await show('by-image', site != null ? { site } : {}, '/console/bandwidth')
      ]
      return await page(c, 'Bandwidth', 'bandwidth', body)
    } catch (err) { return await errorPage(c, err) }
  })

  app.get('/console/agents', async (c) => {
    try {
      const q = c.req.query()
      checkParams(tables.agents, q)
      const fields = [selectField('Site', 'site', await siteNames(), q.site), selectField('Image', 'image', await imageNames(), q.image)]
      const form = filterForm('/console/agents', fields)
      return await page(c, 'Agents', 'agents', [form, await show('agents', q, '/console/agents')])
    } catch (err) { return await errorPage(c, err) }
  })

  app.get('/console/events', async (c) => {
    try {
      const q = c.req.query()
      checkParams(tables.events, q)
      typeParam(q)
      const fields = [selectField('Image', 'image', await imageNames(), q.image), selectField('Site', 'site', await siteNames(), q.site), typeField(q.type)]
      const form = filterForm('/console/events', fields)
      return await page(c, 'Events', 'events', [form, await show('events', q, '/console/events')])
    } catch (err) { return await errorPage(c, err) }
  })
}

/** The group policy pages. */
export function usePolicyPages (app: Hono<CoordinatorEnv>, ctx: ConsoleContext): void {
  const { policies, audit, page, errorPage, show } = ctx
  app.get('/console/policy', async (c) => {
    try {
      const saved = c.req.query('saved')
      const done = saved != null ? note(`Saved the policy of ${saved}.`) : ''
      const body = [done, await show('policies', {}, '/console/policy'), html`<p><a class="button" href="/console/policy/new">New group policy</a></p>`]
      return await page(c, 'Policy', 'policy', body)
    } catch (err) { return await errorPage(c, err) }
  })
  app.get('/console/policy/new', (c) => page(c, 'New group policy', 'policy', renderPolicyForm(policyToForm('', undefined), {}, csrfToken(c), true)))
  app.get('/console/policy/:group', async (c) => {
    try {
      const group = nameParam(c.req.param('group'), 'group')
      const p = policies.get(group)
      const hint = p == null ? note(`Group ${group} has no policy yet: saving creates one.`) : ''
      return await page(c, `Policy of ${group}`, 'policy', [hint, renderPolicyForm(policyToForm(group, p), {}, csrfToken(c), false)])
    } catch (err) { return await errorPage(c, err) }
  })
  const savePolicy = async (c: Context<CoordinatorEnv>, isNew: boolean, pathGroup?: string): Promise<Response> => {
    const form = await c.req.parseBody()
    const values = formValues(form)
    if (pathGroup != null) values.group = pathGroup
    const { policy, errors } = parsePolicyForm(values)
    if (policy == null) {
      return await page(c, isNew ? 'New group policy' : `Policy of ${values.group}`, 'policy', renderPolicyForm(values, errors, csrfToken(c), isNew), 400)
    }
    const before = policies.get(values.group) ?? null
    await policies.put(values.group, policy)
    audit(c, 'policy.set', { target: { group: values.group, via: 'console' }, before, after: policy })
    return c.redirect(`/console/policy?saved=${encodeURIComponent(values.group)}`, 303)
  }
  app.post('/console/policy', async (c) => await savePolicy(c, true))
  app.post('/console/policy/:group', async (c) => {
    try {
      return await savePolicy(c, false, nameParam(c.req.param('group'), 'group'))
    } catch (err) { return await errorPage(c, err) }
  })
}

/** A short note paragraph (escaped). */
function note (text: string): Markup {
  return html`<p class="note">${text}</p>`
}
