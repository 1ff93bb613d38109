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
    case 'FST_TOTP_LOCKED': return `Too many wrong codes. Try again in ${err.retryAfter ?? 'a few'} seconds.`
    case 'FST_TOTP_BAD_REQUEST': return 'Enter the 6 digits your authenticator app shows.'
    case 'FST_TOTP_FORBIDDEN': return `You are not allowed to do this: ${err.message.replace(/^Forbidden: /, '')}.`
    case 'FST_TOTP_SETUP_REQUIRED': return 'Two-factor authentication must be set up first.'
    case 'FST_TOTP_NO_PENDING_SETUP': return 'The setup expired. Start it again.'
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

function show (el, text) {
  el.textContent = text ?? ''
  el.hidden = !text
}

function showError (root, err) {
  if (!(err instanceof ApiError)) throw err
  const box = $('.error', root)
  show(box, explain(err))
  return box
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

/** Starts a setup: shows the QR code and the secret; `onDone` runs once a code confirmed it. */
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
      await api('POST', '/totp/setup/confirm', { code: form.code.value.trim() })
      onDone()
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
        location.assign({ none: '/home', verify: '/verify', setup: '/setup' }[totp])
      } catch (err) {
        showError(form, err)
      }
    })
  },

  async verify () {
    const form = $('#verify')
    try {
      const status = await api('GET', '/totp/status')
      if (!status.enabled || status.verified) return location.assign('/home')
      const lockedMs = status.lockedUntil === null ? 0 : Date.parse(status.lockedUntil) - Date.now()
      if (lockedMs > 0) showError(form, new ApiError(429, { code: 'FST_TOTP_LOCKED' }, Math.ceil(lockedMs / 1000)))
    } catch (err) {
      if (err instanceof ApiError && redirectFor(err)) return
      showError(form, err)
    }
    form.addEventListener('submit', async (event) => {
      event.preventDefault()
      try {
        await api('POST', '/totp/verify', { code: form.code.value.trim() })
        location.assign('/home')
      } catch (err) {
        if (err.code === 'FST_TOTP_NOT_ENABLED') return location.assign('/home')
        showError(form, err)
        form.code.select()
      }
    })
  },

  async setup () {
    const main = $('main')
    try {
      await startSetup($('[data-setup]'), () => location.assign('/home'))
    } catch (err) {
      if (err.code === 'FST_TOTP_ALREADY_ENABLED') return location.assign('/verify')
      if (err instanceof ApiError && redirectFor(err)) return
      showError(main, err)
    }
  },

  async home () {
    fillUser(await signedInUser())
  },

  async settings () {
    await signedInUser()
    const main = $('main')
    const state = $('[data-totp-state]')
    const start = $('[data-start-setup]')
    const enabled = () => {
      show(state, 'Two-factor authentication is enabled for your account. ' +
        'To set it up again (a new phone, say), ask your parent user to revoke your TOTP secret.')
      start.hidden = true
      $('[data-setup]').hidden = true
    }
    const status = await api('GET', '/totp/status')
    if (status.enabled) return enabled()
    show(state, status.setupRequired
      ? 'Two-factor authentication is required for your account and not set up yet.'
      : 'Two-factor authentication is not set up: signing in needs only your password.')
    start.hidden = false
    start.addEventListener('click', async () => {
      start.disabled = true
      try {
        await startSetup($('[data-setup]'), enabled)
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
    }
  },

  async user () {
    await signedInUser()
    const id = decodeURIComponent(location.pathname.split('/').pop())
    const { users } = await api('GET', '/api/users')
    const user = users.find((u) => u.id === id)
    const main = $('main')
    if (user === undefined) return show($('.error', main), `No user "${id}".`)
    fillUser(user)
    document.title = `${user.id} · Administration · fastify-totp demo`
    const base = `/totp/users/${encodeURIComponent(user.id)}`
    const form = $('#login-options-form')
    const ok = $('.ok', form)
    const state = $('[data-totp-state]')
    const checkbox = $('[data-enforced]')
    let savedEnforced = null // unknown until the status could be read

    async function refresh () {
      try {
        const status = await api('GET', base)
        savedEnforced = status.enforced
        checkbox.checked = status.enforced
        const locked = status.lockedUntil
          ? ` Locked out after wrong codes until ${new Date(status.lockedUntil).toLocaleTimeString()}.`
          : ''
        const enforced = status.enforced ? 'enforced' : 'not enforced'
        show(state, `TOTP: ${status.enabled ? 'set up' : 'not set up'}; ${enforced} for this user.${locked}`)
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 403) throw err
        show(state, `You are not allowed to see the TOTP status of ${user.id}: ${err.message.replace(/^Forbidden: /, '')}.`)
      }
    }
    await refresh()

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
