// The example's pages: plain JavaScript, one small module, no framework.
// Each page's <body data-page="…"> picks its function at the bottom of this file.

class ApiError extends Error {
  constructor (status, body, retryAfter) {
    super(body?.message ?? `HTTP ${status}`)
    this.status = status
    this.code = body?.code
    this.retryAfter = retryAfter
  }
}

let csrfToken = null

/** fetch() for the JSON API: sends the CSRF token on every state-changing request. */
async function api (method, url, body) {
  const headers = { accept: 'application/json' }
  if (method !== 'GET') {
    csrfToken ??= (await api('GET', '/csrf')).token
    headers['x-csrf-token'] = csrfToken
  }
  // the plugin's POST and PUT routes take JSON only (a cross-site form cannot send it)
  if (method === 'POST' || method === 'PUT') body ??= {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const data = res.status === 204 ? null : await res.json().catch(() => null)
  if (!res.ok) throw new ApiError(res.status, data, Number(res.headers.get('retry-after')) || null)
  return data
}

/** The sentence a person reads for an error of the API. */
function explain (err) {
  switch (err.code) {
    case 'FST_TOTP_INVALID_CODE':
      return 'Wrong code, or a code that was already used. Wait for the next code and try again.'
    case 'FST_TOTP_LOCKED':
      // no Retry-After: locked until someone unlocks the account (R10)
      return err.retryAfter === null
        ? 'Too many wrong codes: your account is locked. Your parent user can unlock it.'
        : `Too many wrong codes. Try again in ${err.retryAfter} seconds.`
    case 'FST_TOTP_BAD_REQUEST': return 'Enter the 6 digits your authenticator app shows.'
    case 'FST_TOTP_FORBIDDEN': return `You are not allowed to do this: ${err.message.replace(/^Forbidden: /, '')}.`
    case 'FST_TOTP_SETUP_REQUIRED': return 'Two-factor authentication must be set up first.'
    case 'FST_TOTP_NO_PENDING_SETUP': return 'The setup expired. Start it again.'
    case 'FST_TOTP_ENROL_FIRST':
      return 'These settings would enforce TOTP on your own account: ' +
        'set up two-factor authentication in User settings first.'
    case 'FST_TOTP_DEVICE_NOT_FOUND': return 'That browser was already forgotten.'
    case 'FST_TOTP_UNAVAILABLE': return 'The service is unavailable. Try again shortly.'
    case 'EXAMPLE_CSRF': return 'Your session changed. Reload the page.'
    default: return err.message
  }
}

/** Where the gate sends a session that may not see a page yet; true when it navigated. */
function redirectFor (err) {
  const pages = { FST_TOTP_UNAUTHENTICATED: '/', FST_TOTP_REQUIRED: '/verify', FST_TOTP_SETUP_REQUIRED: '/setup' }
  const to = pages[err.code]
  if (to === undefined) return false
  location.assign(to)
  return true
}

const $ = (selector, root = document) => root.querySelector(selector)
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)]
const el = (tag, props) => Object.assign(document.createElement(tag), props)

function show (el, text) {
  el.textContent = text ?? ''
  el.hidden = !text
}

function showError (root, err, words = explain) {
  if (!(err instanceof ApiError)) throw err
  const box = $('.error', root)
  show(box, words(err))
  return box
}

/** The words for an error of `POST /totp/recover`. */
function explainRecovery (err) {
  switch (err.code) {
    case 'FST_TOTP_INVALID_CODE': return 'Wrong recovery code, or one that was already used.'
    case 'FST_TOTP_BAD_REQUEST': return 'Enter a recovery code as it was shown to you, like abcde-fghij.'
    default: return explain(err)
  }
}

/** The 429 a page shows before any code is sent, from the `lockedUntil` of a status. */
function lockedError (status) {
  const seconds = status.lockedUntil === null ? null : Math.ceil((Date.parse(status.lockedUntil) - Date.now()) / 1000)
  return new ApiError(429, { code: 'FST_TOTP_LOCKED' }, seconds)
}

/** "required from …": when an enforced user's grace period ends (R14), or null when none runs. */
function graceEnd (status) {
  const end = status.setupDeadline === null ? NaN : Date.parse(status.setupDeadline)
  return end > Date.now() ? new Date(end).toLocaleString() : null
}

/** Shows a new set of recovery codes in the "Recovery codes" section; false when there is none. */
function showCodes (codes) {
  if (!codes?.length) return false
  const list = $('[data-code-list]')
  list.replaceChildren(...codes.map((code) => Object.assign(document.createElement('li'), { textContent: code })))
  $('[data-codes]').hidden = false
  return true
}

function fillUser (user, root = document) {
  $$('[data-user-id]', root).forEach((el) => { el.textContent = user.id })
  $$('[data-user-parent]', root).forEach((el) => { el.textContent = user.parentId ?? '(none: a root user)' })
  $$('[data-user-roles]', root).forEach((el) => {
    el.textContent = user.roles.length ? user.roles.join(', ') : '(none)'
  })
}

/** Every page behind sign-in starts here: who am I, or go where the gate says. */
async function signedInUser () {
  try {
    const { user } = await api('GET', '/api/profile')
    $$('[data-signed-in-as]').forEach((el) => { el.textContent = `Signed in as ${user.id}` })
    return user
  } catch (err) {
    if (err instanceof ApiError && redirectFor(err)) return new Promise(() => {})
    throw err
  }
}

function wireSignOut () {
  $$('[data-sign-out]').forEach((button) => button.addEventListener('click', async () => {
    await api('POST', '/logout').catch(() => {})
    location.assign('/')
  }))
}

/** Starts a setup: shows the QR code and the secret; `onDone(recoveryCodes)` runs once a code confirmed it. */
async function startSetup (section, onDone) {
  const { secret, qr } = await api('POST', '/totp/setup')
  $('[data-qr]', section).src = qr
  $('[data-secret]', section).textContent = secret
  section.hidden = false
  const form = $('[data-confirm-form]', section)
  form.code.focus()
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    try {
      const { recoveryCodes } = await api('POST', '/totp/setup/confirm', { code: form.code.value.trim() })
      onDone(recoveryCodes ?? [])
    } catch (err) {
      showError(form, err)
      form.code.select()
    }
  })
}

const pages = {
  signin () {
    const form = $('#signin')
    form.addEventListener('submit', async (event) => {
      event.preventDefault()
      try {
        const credentials = { username: form.username.value.trim(), password: form.password.value }
        const { totp } = await api('POST', '/login', credentials)
        // a trusted browser (R15) is verified by the gate on its first request: no code to ask for
        const trusted = totp === 'verify' && (await api('GET', '/totp/status')).verified
        location.assign(trusted ? '/home' : { none: '/home', verify: '/verify', setup: '/setup' }[totp])
      } catch (err) {
        showError(form, err)
      }
    })
  },

  async verify () {
    const form = $('#verify')
    const recover = $('#recover')
    // "Use a recovery code instead" swaps the two forms (and back)
    const swap = $('[data-use-recovery]')
    const intro = $('[data-intro]')
    const words = [intro.textContent, 'Enter one of the recovery codes you saved at setup.']
    swap.addEventListener('click', () => {
      const toRecovery = recover.hidden
      recover.hidden = !toRecovery
      form.hidden = toRecovery
      intro.textContent = words[toRecovery ? 1 : 0]
      swap.textContent = toRecovery ? 'Use your authenticator app instead' : 'Use a recovery code instead'
      ;(toRecovery ? recover : form).code.focus()
    })
    // either form: a code to the plugin, then on to `next`
    const onCode = (f, path, next, explain) => f.addEventListener('submit', async (event) => {
      event.preventDefault()
      try {
        // "Trust this browser for 30 days" (the code form only): later sign-ins here skip the code (R15)
        const trust = f.trust?.checked ? { trustDevice: true } : {}
        await api('POST', path, { code: f.code.value.trim(), ...trust })
        location.assign(next)
      } catch (err) {
        if (err.code === 'FST_TOTP_NOT_ENABLED') return location.assign('/home')
        showError(f, err, explain)
        f.code.select()
      }
    })
    onCode(recover, '/totp/recover', '/home?recovered', explainRecovery)
    onCode(form, '/totp/verify', '/home')
    try {
      const status = await api('GET', '/totp/status')
      if (!status.enabled || status.verified) return location.assign('/home')
      if (status.locked) [form, recover].forEach((f) => showError(f, lockedError(status)))
    } catch (err) {
      if (err instanceof ApiError && redirectFor(err)) return
      showError(form, err)
    }
  },

  async setup () {
    const main = $('main')
    $('[data-continue]').addEventListener('click', () => location.assign('/home'))
    $('[data-later]').addEventListener('click', () => location.assign('/home'))
    try {
      // R14: during a grace period the person may set it up later
      const until = graceEnd(await api('GET', '/totp/status'))
      if (until !== null) {
        $('[data-intro]').textContent = `Two-factor authentication is required for your account from ${until}. ` +
          'Set it up now, or later from User settings.'
        $('[data-later]').hidden = false
      }
      await startSetup($('[data-setup]'), (codes) => {
        // the codes are shown once: the person moves on when they have saved them
        if (!showCodes(codes)) return location.assign('/home')
        $('[data-setup]').hidden = true
        $('[data-later]').hidden = true
        $('[data-continue]').hidden = false
      })
    } catch (err) {
      if (err.code === 'FST_TOTP_ALREADY_ENABLED') return location.assign('/verify')
      if (err instanceof ApiError && redirectFor(err)) return
      showError(main, err)
    }
  },

  async home () {
    fillUser(await signedInUser())
    const status = await api('GET', '/totp/status')
    const left = `recovery codes left: ${status.recoveryCodesLeft}`
    const until = graceEnd(status)
    const notSetUp = until ? `Not set up; required from ${until}` : 'Not set up'
    show($('[data-totp-summary]'), status.enabled ? `Set up; ${left}` : notSetUp)
    if (new URLSearchParams(location.search).has('recovered')) {
      show($('[data-recovered]'), 'You signed in with a recovery code; it cannot be used again. ' +
        `Recovery codes left: ${status.recoveryCodesLeft}. User settings makes a new set.`)
    }
  },

  async settings () {
    await signedInUser()
    const main = $('main')
    const state = $('[data-totp-state]')
    const start = $('[data-start-setup]')
    const recovery = $('[data-recovery]')
    const enabled = (codesLeft) => {
      show(state, 'Two-factor authentication is enabled for your account. ' +
        'To set it up again (a new phone, say), ask your parent user to revoke your TOTP secret.')
      start.hidden = true
      $('[data-setup]').hidden = true
      show($('[data-codes-left]', recovery), `Recovery codes left: ${codesLeft}.`)
      recovery.hidden = false
      listDevices().catch((err) => showError(main, err))
    }
    // R15: the browsers that skip the code at sign-in, each with "Forget"
    async function listDevices () {
      const { devices } = await api('GET', '/totp/devices')
      const items = devices.map((device) => {
        const name = device.current ? 'This browser' : device.label || 'A browser'
        const since = new Date(device.createdAt).toLocaleDateString()
        const until = new Date(device.expiresAt).toLocaleDateString()
        const item = el('li', { textContent: `${name}: trusted since ${since}, until ${until}`, title: device.label })
        const forget = el('button', { type: 'button', className: 'secondary', textContent: 'Forget' })
        forget.addEventListener('click', async () => {
          try {
            await api('DELETE', `/totp/devices/${encodeURIComponent(device.id)}`)
          } catch (err) {
            if (err.code !== 'FST_TOTP_DEVICE_NOT_FOUND') return showError(main, err)
          }
          await listDevices()
        })
        item.append(forget)
        return item
      })
      if (!items.length) items.push(el('li', { textContent: 'No trusted browsers.' }))
      $('[data-device-list]').replaceChildren(...items)
      $('[data-devices]').hidden = false
    }
    // a new set replaces the old one: the codes saved before stop working
    $('[data-new-codes]').addEventListener('click', async () => {
      try {
        const { recoveryCodes } = await api('POST', '/totp/recovery-codes')
        showCodes(recoveryCodes)
        enabled(recoveryCodes.length)
      } catch (err) {
        showError(main, err)
      }
    })
    const status = await api('GET', '/totp/status')
    if (status.enabled) return enabled(status.recoveryCodesLeft)
    const until = graceEnd(status)
    const before = until ? ` Set it up before ${until}.` : ''
    show(state, status.setupRequired
      ? `Two-factor authentication is required for your account and not set up yet.${before}`
      : 'Two-factor authentication is not set up: signing in needs only your password.')
    start.hidden = false
    start.addEventListener('click', async () => {
      start.disabled = true
      try {
        await startSetup($('[data-setup]'), (codes) => {
          showCodes(codes)
          enabled(codes.length)
        })
        start.hidden = true
      } catch (err) {
        start.disabled = false
        showError(main, err)
      }
    })
  },

  async users () {
    await signedInUser()
    const { users } = await api('GET', '/api/users')
    const rows = $('[data-users]')
    for (const user of users) {
      const row = rows.insertRow()
      const link = Object.assign(document.createElement('a'), {
        href: `/admin/users/${encodeURIComponent(user.id)}`,
        textContent: user.id
      })
      row.insertCell().append(link)
      row.insertCell().textContent = user.parentId ?? ''
      row.insertCell().textContent = user.roles.join(', ')
      // computed by the server (R13 roles count); null: the plugin does not let you read it (R8)
      row.insertCell().textContent = user.totp === null ? '—' : user.totp.join(', ') || 'not set up'
    }
  },

  async tenant () {
    await signedInUser()
    const section = $('main section')
    const form = $('#tenant-settings')
    const ok = $('.ok', form)
    let saved
    try {
      saved = await api('GET', '/totp/settings')
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 403) throw err
      return show($('.error', section), `You are not allowed to see the tenant settings: ${err.message.replace(/^Forbidden: /, '')}.`)
    }
    // a checkbox for every role of the example's users, and for any other role already enforced
    const { users } = await api('GET', '/api/users')
    const roles = [...new Set([...users.flatMap((u) => u.roles), ...saved.enforceRoles])].sort()
    $('[data-roles]').replaceChildren(...roles.map((role) => {
      const label = el('label', { className: 'check' })
      label.append(el('input', { type: 'checkbox', name: 'role', value: role }), ` ${role}`)
      return label
    }))
    const fill = () => {
      form.enforceAll.checked = saved.enforceAll
      $$('input[name=role]', form).forEach((box) => { box.checked = saved.enforceRoles.includes(box.value) })
      form.grace.value = String(saved.gracePeriod / 86400)
    }
    fill()
    form.hidden = false

    form.addEventListener('submit', async (event) => {
      event.preventDefault()
      show(ok)
      show($('.error', form))
      // PUT only what changed: the other settings keep their values
      const next = {
        enforceAll: form.enforceAll.checked,
        enforceRoles: $$('input[name=role]:checked', form).map((box) => box.value),
        gracePeriod: Math.round(Number(form.grace.value) * 86400)
      }
      const changed = {}
      if (next.enforceAll !== saved.enforceAll) changed.enforceAll = next.enforceAll
      const same = next.enforceRoles.join('\n') === [...saved.enforceRoles].sort().join('\n')
      if (!same) changed.enforceRoles = next.enforceRoles
      if (next.gracePeriod !== saved.gracePeriod) changed.gracePeriod = next.gracePeriod
      if (Object.keys(changed).length === 0) return show(ok, 'No changes to save.')
      try {
        saved = await api('PUT', '/totp/settings', changed)
        fill()
        show(ok, 'Saved.')
      } catch (err) {
        showError(form, err)
      }
    })
  },

  async user () {
    await signedInUser()
    const id = decodeURIComponent(location.pathname.split('/').pop())
    const { users } = await api('GET', '/api/users')
    const user = users.find((u) => u.id === id)
    const main = $('main')
    if (user === undefined) return show($('.error', main), `No user "${id}".`)
    fillUser(user)
    document.title = `${user.id} · Administration · fastify-totp-gate demo`
    const base = `/totp/users/${encodeURIComponent(user.id)}`
    const form = $('#login-options-form')
    const ok = $('.ok', form)
    const state = $('[data-totp-state]')
    const checkbox = $('[data-enforced]')
    const unlock = $('[data-unlock]')
    let savedEnforced = null // unknown until the status could be read

    async function refresh () {
      try {
        const status = await api('GET', base)
        savedEnforced = status.enforced
        checkbox.checked = status.enforced
        // R10: a lock with no end (lockedUntil null) lasts until someone unlocks the user
        const locked = !status.locked
          ? ''
          : status.lockedUntil === null
            ? ' Locked out after too many wrong codes, until unlocked.'
            : ` Locked out after wrong codes until ${new Date(status.lockedUntil).toLocaleTimeString()}.`
        const enforced = status.enforced ? 'enforced' : 'not enforced'
        const codes = status.enabled ? ` Recovery codes left: ${status.recoveryCodesLeft}.` : ''
        show(state, `TOTP: ${status.enabled ? 'set up' : 'not set up'}; ${enforced} for this user.${codes}${locked}`)
        unlock.hidden = !status.locked
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 403) throw err
        unlock.hidden = true
        show(state, `You are not allowed to see the TOTP status of ${user.id}: ${err.message.replace(/^Forbidden: /, '')}.`)
      }
    }
    await refresh()

    unlock.addEventListener('click', async () => {
      show(ok)
      show($('.error', form))
      try {
        await api('DELETE', `${base}/lock`)
        show(ok, `${user.id} is unlocked.`)
        await refresh()
      } catch (err) {
        showError(form, err)
      }
    })

    const dialog = $('[data-revoke-dialog]')
    $('[data-revoke]').addEventListener('click', () => {
      show(ok)
      show($('.error', form))
      dialog.returnValue = ''
      dialog.showModal()
    })
    dialog.addEventListener('close', async () => {
      if (dialog.returnValue !== 'revoke') return
      try {
        await api('DELETE', `${base}/secret`)
        show(ok, `The TOTP secret of ${user.id} is revoked.`)
        await refresh()
      } catch (err) {
        showError(form, err)
      }
    })

    form.addEventListener('submit', async (event) => {
      event.preventDefault()
      show($('.error', form))
      // Save sends only what changed: a parent without ADMIN may revoke, then Save, without touching enforcement
      if (checkbox.checked === savedEnforced) return show(ok, 'No changes to save.')
      try {
        const { enforced } = await api('PUT', `${base}/enforcement`, { enforced: checkbox.checked })
        show(ok, `Saved: TOTP is ${enforced ? 'enforced' : 'no longer enforced'} for ${user.id}.`)
        await refresh()
      } catch (err) {
        show(ok)
        showError(form, err)
      }
    })
  }
}

wireSignOut()
Promise.resolve(pages[document.body.dataset.page]?.()).catch((err) => {
  if (err instanceof ApiError && redirectFor(err)) return
  show($('.error') ?? document.body.appendChild(document.createElement('p')), explain(err))
})
