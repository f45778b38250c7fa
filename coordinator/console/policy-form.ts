/**
 * The policy edit form: how a group's Policy reads as form fields, and how a
 * submitted form becomes a Policy. Every problem is reported against its
 * field; the result is checked once more with the API's own schema
 * (protocol/api.ts Policy), so the console can save nothing the API would refuse.
 */
import { html } from 'hono/html'
import { name as nameSchema, Policy, type TransferMode } from '../../protocol/api.ts'
import { formatRate, parseRate } from '../../protocol/rate.ts'
import { DEFAULT_POLICY } from '../constants.ts'
import { csrfField, type Markup } from './layout.ts'

/** The form's fields as submitted (all text). */
export interface PolicyFormValues {
  group: string
  images: string
  wanLimit: string
  lanSharing: boolean
  lanUpload: string
  maxPeers: string
  transfer: TransferMode
  windowStart: string
  windowEnd: string
  linux: string
  windows: string
  macos: string
}

/** Field name -> message. */
export type FormErrors = Partial<Record<keyof PolicyFormValues | 'form', string>>

const lines = (s: string): string[] => s.split(/[\r\n]+/).map(x => x.trim()).filter(x => x !== '')

/** A stored policy as form values (a new group starts from DEFAULT_POLICY). */
export function policyToForm (group: string, p: Policy | undefined): PolicyFormValues {
  const q: Policy = p ?? { ...DEFAULT_POLICY, indexFolders: {} }
  return {
    group,
    images: q.images.join('\n'),
    wanLimit: formatRate(q.wanLimitBps),
    lanSharing: q.lanSharing,
    lanUpload: formatRate(q.lanUploadBps),
    maxPeers: String(q.maxPeers),
    transfer: q.transfer ?? 'background',
    windowStart: q.updateWindow?.start ?? '',
    windowEnd: q.updateWindow?.end ?? '',
    linux: (q.indexFolders.linux ?? []).join('\n'),
    windows: (q.indexFolders.windows ?? []).join('\n'),
    macos: (q.indexFolders.macos ?? []).join('\n')
  }
}

/** Reads the submitted form (missing fields are empty). */
export function formValues (form: Record<string, unknown>): PolicyFormValues {
  const s = (k: string): string => typeof form[k] === 'string' ? form[k] : ''
  return {
    group: s('group').trim(),
    images: s('images'),
    wanLimit: s('wanLimit'),
    lanSharing: form.lanSharing === 'on',
    lanUpload: s('lanUpload'),
    maxPeers: s('maxPeers'),
    // anything but foreground (or nothing) is the default, background
    transfer: s('transfer') === 'foreground' ? 'foreground' : 'background',
    windowStart: s('windowStart').trim(),
    windowEnd: s('windowEnd').trim(),
    linux: s('linux'),
    windows: s('windows'),
    macos: s('macos')
  }
}

/** Turns form values into a Policy, or field errors (then nothing may be saved). */
export function parsePolicyForm (v: PolicyFormValues): { policy?: Policy, errors: FormErrors } {
  const errors: FormErrors = {}
  try { nameSchema.parse(v.group, 'group') } catch (err) { errors.group = (err as Error).message }
  const rate = (text: string, field: 'wanLimit' | 'lanUpload'): number => {
    try { return parseRate(text === '' ? 'unlimited' : text) } catch (err) { errors[field] = (err as Error).message; return 0 }
  }
  const images = lines(v.images.replace(/,/g, '\n'))
  const bad = images.find(i => !/^(\*|[A-Za-z0-9][A-Za-z0-9._+-]{0,127})$/.test(i))
  if (bad != null) errors.images = `${JSON.stringify(bad)} is not an image name (letters, digits, . _ + -) or *`
  const wanLimitBps = rate(v.wanLimit.trim(), 'wanLimit')
  const lanUploadBps = rate(v.lanUpload.trim(), 'lanUpload')
  const maxPeers = Number(v.maxPeers.trim())
  if (v.maxPeers.trim() === '' || !Number.isInteger(maxPeers) || maxPeers < 0 || maxPeers > 1000) errors.maxPeers = 'must be a whole number from 0 to 1000'
  const hhmm = /^([01]\d|2[0-3]):[0-5]\d$/
  if ((v.windowStart === '') !== (v.windowEnd === '')) errors.windowStart = 'give both start and end, or neither (any time)'
  else if (v.windowStart !== '' && !hhmm.test(v.windowStart)) errors.windowStart = 'must be HH:MM (24 h), e.g. 22:00'
  else if (v.windowEnd !== '' && !hhmm.test(v.windowEnd)) errors.windowEnd = 'must be HH:MM (24 h), e.g. 06:00'
  if (Object.keys(errors).length > 0) return { errors }
  const candidate = {
    images,
    wanLimitBps,
    lanSharing: v.lanSharing,
    lanUploadBps,
    maxPeers,
    transfer: v.transfer,
    updateWindow: v.windowStart === '' ? null : { start: v.windowStart, end: v.windowEnd },
    indexFolders: Object.fromEntries((['linux', 'windows', 'macos'] as const).map(os => [os, lines(v[os])]).filter(([, f]) => f.length > 0))
  }
  try {
    return { policy: Policy.parse(candidate, 'policy'), errors }
  } catch (err) {
    return { errors: { form: (err as Error).message } }
  }
}

function err (errors: FormErrors, k: keyof FormErrors): Markup | string {
  return errors[k] != null ? html`<p class="field-error" role="alert">${errors[k]}</p>` : ''
}

/** The edit form; `isNew` lets the admin name the group. */
export function renderPolicyForm (v: PolicyFormValues, errors: FormErrors, csrf: string, isNew: boolean): Markup {
  const action = isNew ? '/console/policy' : `/console/policy/${encodeURIComponent(v.group)}`
  const invalid = (k: keyof FormErrors): string => errors[k] != null ? 'true' : 'false'
  const imagesInput = html`<textarea name="images" rows="3" aria-invalid="${invalid('images')}">${v.images}</textarea>`
  const wanInput = html`<input name="wanLimit" value="${v.wanLimit}" placeholder="20mbit, 5MB/s or unlimited" aria-invalid="${invalid('wanLimit')}">`
  const lanInput = html`<input name="lanUpload" value="${v.lanUpload}" placeholder="unlimited" aria-invalid="${invalid('lanUpload')}">`
  const selected = (t: string): string => v.transfer === t ? 'selected' : ''
  const background = html`<option value="background" ${selected('background')}>background (yield to other traffic)</option>`
  const transferOptions = html`${background}<option value="foreground" ${selected('foreground')}>foreground (full speed)</option>`
  return html`<form class="policy" method="post" action="${action}" novalidate>
${csrfField(csrf)}
${err(errors, 'form')}
<label>Group <input name="group" value="${v.group}" ${isNew ? '' : 'readonly'} aria-invalid="${invalid('group')}" required></label>${err(errors, 'group')}
<label>Images (one per line, * for all) ${imagesInput}</label>${err(errors, 'images')}
<label>WAN cap per agent ${wanInput}</label>${err(errors, 'wanLimit')}
<label class="check"><input type="checkbox" name="lanSharing" ${v.lanSharing ? 'checked' : ''}> LAN peer sharing allowed</label>
<label>LAN upload cap per agent ${lanInput}</label>${err(errors, 'lanUpload')}
<label>Max peers <input name="maxPeers" value="${v.maxPeers}" inputmode="numeric" aria-invalid="${invalid('maxPeers')}"></label>${err(errors, 'maxPeers')}
<label>Agent daemon's WAN transfers <select name="transfer">${transferOptions}</select></label>
<fieldset><legend>Update window (agent local time; empty = any time)</legend>
<label>Start <input name="windowStart" value="${v.windowStart}" placeholder="22:00" aria-invalid="${invalid('windowStart')}"></label>
<label>End <input name="windowEnd" value="${v.windowEnd}" placeholder="06:00" aria-invalid="${invalid('windowEnd')}"></label>
${err(errors, 'windowStart')}${err(errors, 'windowEnd')}</fieldset>
<fieldset><legend>Folders agents index for Trim Transfer (one per line)</legend>
<label>Linux <textarea name="linux" rows="2">${v.linux}</textarea></label>
<label>Windows <textarea name="windows" rows="2">${v.windows}</textarea></label>
<label>macOS <textarea name="macos" rows="2">${v.macos}</textarea></label>
</fieldset>
<button type="submit">Save policy</button>
</form>`
}
