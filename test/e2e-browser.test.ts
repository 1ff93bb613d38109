// The seed's whole story in a real browser (Debian's chromium driven by playwright-core),
// against the example app on Redis: enrol by reading the QR code off the page, verify,
// sign in with a recovery code, revoke, enforce, set up at login, lock out and unlock, and
// disable TOTP again; then the enforcement policies: a role enforced in the tenant settings,
// and a trusted browser that skips the code.
import { createHmac, randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import jsqr from 'jsqr'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { PNG } from 'pngjs'
import t from 'tap'
import { Redis } from 'ioredis'
import { build } from '../example/app.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
// SAVE_SCREENSHOTS=1 refreshes the README's pictures; otherwise they go to a temp dir (random QR codes would dirty git)
const SCREENSHOTS = process.env.SAVE_SCREENSHOTS === '1'
  ? new URL('../docs/screenshots/', import.meta.url)
  : pathToFileURL(mkdtempSync(join(tmpdir(), 'totp-shots-')) + '/')
const PERIOD = 30
// jsqr is CommonJS with `exports.default`: under NodeNext the function is `.default`
const jsQR = jsqr.default

// --- an authenticator app, written here from RFC 4648, 4226 and 6238 (not the plugin's code) ---

function base32Decode (input: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  const bytes: number[] = []
  let value = 0
  let bits = 0
  for (const char of input.replace(/=+$/, '').toUpperCase()) {
    const index = alphabet.indexOf(char)
    if (index < 0) throw new Error(`not base32: ${char}`)
    value = (value << 5) | index
    bits += 5
    if (bits >= 8) {
      bits -= 8
      bytes.push((value >>> bits) & 0xff)
    }
  }
  return Buffer.from(bytes)
}

function hotp (key: Buffer, counter: number, digits = 6): string {
  const message = Buffer.alloc(8)
  message.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac('sha1', key).update(message).digest()
  const offset = mac[mac.length - 1] & 0x0f
  const binary = mac.readUInt32BE(offset) & 0x7fffffff
  return String(binary % 10 ** digits).padStart(digits, '0')
}

const stepNow = (): number => Math.floor(Date.now() / 1000 / PERIOD)

/** An authenticator for one account: never hands out a time step twice (RFC 6238 §5.2 replay rule). */
class Authenticator {
  #key: Buffer
  #lastStep = -1
  constructor (readonly secret: string) { this.#key = base32Decode(secret) }

  /** The current code, or the next step's if the current one was used (the server accepts ±1 step). */
  code (): string {
    this.#lastStep = Math.max(stepNow(), this.#lastStep + 1)
    return hotp(this.#key, this.#lastStep)
  }

  /** A code no nearby step accepts. */
  wrongCode (): string {
    const near = new Set([-2, -1, 0, 1, 2].map((d) => hotp(this.#key, stepNow() + d)))
    let code = '000000'
    for (let i = 0; near.has(code); i++) code = String(i).padStart(6, '0')
    return code
  }
}

// --- the browser side ---

/** Reads the QR code the way a phone does: from the pixels on screen. */
async function scanQrCode (page: Page): Promise<URL> {
  const image = page.getByRole('img', { name: 'QR code' })
  await image.waitFor()
  await page.waitForFunction(() => (document.querySelector('img[alt="QR code"]') as HTMLImageElement | null)?.complete === true)
  const png = PNG.sync.read(await image.screenshot())
  const qr = jsQR(new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), png.width, png.height)
  if (qr === null) throw new Error('no QR code found in the screenshot')
  return new URL(qr.data)
}

async function signIn (page: Page, username: string): Promise<void> {
  await page.goto('/')
  await page.getByLabel('Username').fill(username)
  await page.getByLabel('Password').fill('demo')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL((url) => url.pathname !== '/')
}

async function signOut (page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.waitForURL((url) => url.pathname === '/')
}

/** Administration > Accounts > Users > `username` > Login options. */
async function loginOptionsOf (page: Page, username: string) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Administration' }).click()
  await page.waitForURL('**/admin/users')
  await page.getByRole('link', { name: username, exact: true }).click()
  await page.waitForURL(`**/admin/users/${username}`)
  const section = page.getByRole('region', { name: 'Login options' })
  await section.getByText(/TOTP:|not allowed to see/).waitFor()
  return section
}

async function revoke (page: Page, section: ReturnType<Page['getByRole']>): Promise<void> {
  await section.getByRole('button', { name: 'Revoke TOTP secret' }).click()
  await page.getByRole('dialog', { name: 'Revoke TOTP secret' }).getByRole('button', { name: 'Revoke', exact: true }).click()
}

/** The recovery codes the page shows after a setup or for a new set. */
async function recoveryCodesOn (page: Page): Promise<string[]> {
  const list = page.getByRole('region', { name: 'Recovery codes' }).getByRole('listitem')
  await list.first().waitFor()
  return list.allTextContents()
}

/** On the "Verification code" page: "Use a recovery code instead", then sign in with `code`. */
async function useRecoveryCode (page: Page, code: string): Promise<void> {
  await page.getByRole('button', { name: 'Use a recovery code instead' }).click()
  await page.getByLabel('Recovery code').fill(code)
  await page.getByRole('button', { name: 'Sign in with the recovery code' }).click()
}

const RECOVERY_CODE = /^[a-z2-9]{5}-[a-z2-9]{5}$/

const shot = (page: Page, name: string) => page.screenshot({ path: new URL(`${name}.png`, SCREENSHOTS).pathname })

t.test('the seed in a browser: enrol, verify, recovery codes, revoke, enforce, set up at login, lock and unlock, disable', async (t) => {
  const keyPrefix = `e2e:${randomBytes(6).toString('hex')}:`
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  // let, not const: the teardown reads it even when build() below throws (const would be in its TDZ then)
  // eslint-disable-next-line prefer-const
  let app: FastifyInstance | undefined
  t.teardown(async () => {
    await app?.close()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
    redis.disconnect()
  })
  app = await build({
    redis,
    keyPrefix,
    allowNewKeyPrefix: true,
    encryptionKey: randomBytes(32).toString('base64'),
    sessionSecret: randomBytes(32).toString('base64url')
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const browser: Browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.teardown(() => browser.close())
  mkdirSync(SCREENSHOTS, { recursive: true })

  const requested: string[] = []
  const pageErrors: string[] = []
  /** One person at their own browser: separate cookies. */
  async function person (): Promise<Page> {
    const context: BrowserContext = await browser.newContext({
      baseURL: origin, viewport: { width: 1000, height: 700 }
    })
    context.setDefaultTimeout(10_000)
    context.on('request', (request) => { requested.push(request.url()) })
    context.on('weberror', (error) => { pageErrors.push(error.error().message) })
    return context.newPage()
  }

  const alice = await person()
  const manager = await person()
  const admin = await person()
  const carol = await person()
  const bob = await person()
  let aliceApp: Authenticator
  let carolApp: Authenticator
  let aliceCodes: string[] = []

  await t.test('R1 alice sets up TOTP from User settings, scanning the QR code off the page', async (t) => {
    await alice.goto('/')
    await shot(alice, 'sign-in')
    await signIn(alice, 'alice')
    t.equal(new URL(alice.url()).pathname, '/home', 'no TOTP yet: straight home')
    await alice.getByText('Signed in as alice').first().waitFor()
    await alice.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'User settings' }).click()
    await alice.getByRole('button', { name: 'Set up two-factor authentication' }).click()
    const uri = await scanQrCode(alice)
    t.equal(uri.protocol, 'otpauth:')
    t.equal(uri.host, 'totp')
    t.equal(decodeURIComponent(uri.pathname), '/fastify-totp-gate demo:alice', 'label Issuer:account')
    t.equal(uri.searchParams.get('issuer'), 'fastify-totp-gate demo')
    const secret = uri.searchParams.get('secret') ?? ''
    t.match(secret, /^[A-Z2-7]{32}$/, '160-bit secret')
    t.equal(await alice.locator('code.secret').textContent(), secret, 'the same secret is shown for manual entry')
    await shot(alice, 'user-settings-setup')
    aliceApp = new Authenticator(secret)
    await alice.getByLabel('Verification code').fill(aliceApp.code())
    await alice.getByRole('button', { name: 'Confirm' }).click()
    await alice.getByText('Two-factor authentication is enabled for your account').waitFor()
    t.equal((await app.totp.status('alice')).enabled, true)
  })

  await t.test('R9 alice is shown 10 recovery codes once her setup is confirmed, and saves them', async (t) => {
    aliceCodes = await recoveryCodesOn(alice)
    t.equal(aliceCodes.length, 10)
    t.ok(aliceCodes.every((code) => RECOVERY_CODE.test(code)), 'each like abcde-fghij')
    t.equal(new Set(aliceCodes).size, 10, 'all different')
    await alice.getByText('Recovery codes left: 10.').waitFor()
    await shot(alice, 'recovery-codes')
    await alice.reload()
    await alice.getByText('Recovery codes left: 10.').waitFor()
    t.equal(await alice.getByRole('region', { name: 'Recovery codes' }).isVisible(), false, 'shown once: gone after a reload')
  })

  await t.test('R3 alice signs in again through the "Verification code" page; a wrong code shows an error', async (t) => {
    await signOut(alice)
    await signIn(alice, 'alice')
    t.equal(new URL(alice.url()).pathname, '/verify')
    await alice.getByLabel('Verification code').fill(aliceApp.wrongCode())
    await alice.getByRole('button', { name: 'Verify' }).click()
    await alice.getByRole('alert').filter({ hasText: 'Wrong code' }).waitFor()
    await shot(alice, 'verification-code')
    await alice.getByLabel('Verification code').fill(aliceApp.code())
    await alice.getByRole('button', { name: 'Verify' }).click()
    await alice.waitForURL('**/home')
    await alice.getByText('Signed in as alice').first().waitFor()
    t.pass('verified and home')
  })

  await t.test('R9 alice signs out and in with a saved recovery code instead of a code, and sees 9 of 10 left', async (t) => {
    await signOut(alice)
    await signIn(alice, 'alice')
    t.equal(new URL(alice.url()).pathname, '/verify')
    await alice.getByRole('button', { name: 'Use a recovery code instead' }).click()
    await alice.getByLabel('Recovery code').fill(aliceCodes[0])
    await shot(alice, 'recovery-code-sign-in')
    await alice.getByRole('button', { name: 'Sign in with the recovery code' }).click()
    await alice.waitForURL((url) => url.pathname === '/home' && url.searchParams.has('recovered'))
    await alice.getByRole('status').filter({ hasText: 'You signed in with a recovery code; it cannot be used again. Recovery codes left: 9.' }).waitFor()
    await alice.getByText('Set up; recovery codes left: 9').waitFor()
    t.equal((await app.totp.status('alice')).recoveryCodesLeft, 9, 'one fewer: 9 of 10')
  })

  await t.test('R9 a used recovery code is refused; the next one works; a new set replaces the old one', async (t) => {
    await signOut(alice)
    await signIn(alice, 'alice')
    await useRecoveryCode(alice, aliceCodes[0])
    await alice.getByRole('alert').filter({ hasText: 'Wrong recovery code, or one that was already used.' }).waitFor()
    t.equal(new URL(alice.url()).pathname, '/verify', 'still asked for a code')
    await alice.getByLabel('Recovery code').fill(aliceCodes[1])
    await alice.getByRole('button', { name: 'Sign in with the recovery code' }).click()
    await alice.waitForURL((url) => url.pathname === '/home' && url.searchParams.has('recovered'))
    await alice.getByText('Recovery codes left: 8.').waitFor()

    await alice.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'User settings' }).click()
    await alice.getByText('Recovery codes left: 8.').waitFor()
    await alice.getByRole('button', { name: 'Get new recovery codes' }).click()
    const fresh = await recoveryCodesOn(alice)
    t.equal(fresh.length, 10)
    t.same(fresh.filter((code) => aliceCodes.includes(code)), [], 'a new set, none of the old codes')
    await alice.getByText('Recovery codes left: 10.').waitFor()
    t.equal((await app.totp.status('alice')).recoveryCodesLeft, 10)
  })

  await t.test('R4 the manager (alice\'s parent) revokes her secret: Login options > Revoke TOTP secret > Revoke', async (t) => {
    await signIn(manager, 'manager')
    const options = await loginOptionsOf(manager, 'alice')
    await options.getByText('TOTP: set up').waitFor()
    await shot(manager, 'login-options')
    await options.getByRole('button', { name: 'Revoke TOTP secret' }).click()
    const dialog = manager.getByRole('dialog', { name: 'Revoke TOTP secret' })
    await dialog.waitFor()
    await shot(manager, 'revoke-dialog')
    await dialog.getByRole('button', { name: 'Revoke', exact: true }).click()
    await options.getByRole('status').filter({ hasText: 'The TOTP secret of alice is revoked.' }).waitFor()
    await options.getByText('TOTP: not set up').waitFor()
    t.equal((await app.totp.status('alice')).enabled, false)
    await alice.goto('/settings')
    await alice.getByText('Two-factor authentication is not set up').waitFor()
    t.pass('alice sees it in User settings')
  })

  await t.test('R4 R5 bob (no roles) is told he is not allowed to revoke nor enforce', async (t) => {
    await signIn(bob, 'bob')
    const options = await loginOptionsOf(bob, 'alice')
    await options.getByText('You are not allowed to see the TOTP status of alice').waitFor()
    await revoke(bob, options)
    await options.getByRole('alert').filter({ hasText: 'You are not allowed to do this: revoking needs ADMIN or CREATE on User management' }).waitFor()
    await options.getByLabel('Enforce TOTP for the user').check()
    await options.getByRole('button', { name: 'Save' }).click()
    await options.getByRole('alert').filter({ hasText: 'enforcing TOTP needs ADMIN on User management' }).waitFor()
    t.equal((await app.totp.status('alice')).enforced, false)
  })

  await t.test('R5 admin ticks "Enforce TOTP for the user" on carol and clicks Save', async (t) => {
    await signIn(admin, 'admin')
    const options = await loginOptionsOf(admin, 'carol')
    await options.getByLabel('Enforce TOTP for the user').check()
    await options.getByRole('button', { name: 'Save' }).click()
    await options.getByRole('status').filter({ hasText: 'Saved: TOTP is enforced for carol.' }).waitFor()
    t.equal((await app.totp.status('carol')).enforced, true)
  })

  await t.test('R3 carol is shown the QR code at login before anything else, sets up and reaches home', async (t) => {
    await signIn(carol, 'carol')
    t.equal(new URL(carol.url()).pathname, '/setup')
    await carol.getByRole('heading', { name: 'Set up two-factor authentication' }).waitFor()
    await carol.goto('/home')
    await carol.waitForURL('**/setup')
    t.pass('home sends her back to the setup')
    const uri = await scanQrCode(carol)
    await shot(carol, 'setup-at-login')
    carolApp = new Authenticator(uri.searchParams.get('secret') ?? '')
    await carol.getByLabel('Verification code').fill(carolApp.code())
    await carol.getByRole('button', { name: 'Confirm' }).click()
    t.equal((await recoveryCodesOn(carol)).length, 10, 'R9 her recovery codes first')
    await carol.getByRole('button', { name: 'Continue' }).click()
    await carol.waitForURL('**/home')
    await carol.getByText('Signed in as carol').first().waitFor()
  })

  await t.test('S4 wrong codes lock carol out; the page shows the wait', async (t) => {
    await signOut(carol)
    await signIn(carol, 'carol')
    t.equal(new URL(carol.url()).pathname, '/verify')
    const answers: number[] = []
    for (let i = 0; i < 6; i++) {
      await carol.getByLabel('Verification code').fill(carolApp.wrongCode())
      const [response] = await Promise.all([
        carol.waitForResponse((r) => r.url().endsWith('/totp/verify')),
        carol.getByRole('button', { name: 'Verify' }).click()
      ])
      answers.push(response.status())
    }
    t.same(answers, [401, 401, 401, 401, 401, 429], '5 free failures, then locked without checking')
    await carol.getByRole('alert').filter({ hasText: /Too many wrong codes\. Try again in \d+ seconds\./ }).waitFor()
  })

  await t.test('R10 the manager (carol\'s parent) sees her locked on her user page and clicks Unlock; she verifies again', async (t) => {
    const options = await loginOptionsOf(manager, 'carol')
    await options.getByText(/Locked out after wrong codes until/).waitFor()
    await shot(manager, 'locked-user')
    await options.getByRole('button', { name: 'Unlock' }).click()
    await options.getByRole('status').filter({ hasText: 'carol is unlocked.' }).waitFor()
    await options.getByText('TOTP: set up; enforced for this user. Recovery codes left: 10.', { exact: true }).waitFor()
    t.equal(await options.getByRole('button', { name: 'Unlock' }).isVisible(), false, 'no Unlock button once unlocked')
    t.equal((await app.totp.status('carol')).locked, false)

    const asAdmin = await loginOptionsOf(admin, 'carol')
    t.equal(await asAdmin.getByRole('button', { name: 'Unlock' }).isVisible(), false, 'nothing to unlock')

    await carol.getByLabel('Verification code').fill(carolApp.code())
    await carol.getByRole('button', { name: 'Verify' }).click()
    await carol.waitForURL('**/home')
    await carol.getByText('Signed in as carol').first().waitFor()
  })

  await t.test('R6 disabling TOTP for carol: admin clears the checkbox, the manager revokes, then Save', async (t) => {
    const asAdmin = await loginOptionsOf(admin, 'carol')
    await asAdmin.getByLabel('Enforce TOTP for the user').uncheck()
    await asAdmin.getByRole('button', { name: 'Save' }).click()
    await asAdmin.getByRole('status').filter({ hasText: 'Saved: TOTP is no longer enforced for carol.' }).waitFor()

    const asManager = await loginOptionsOf(manager, 'carol')
    t.equal(await asManager.getByLabel('Enforce TOTP for the user').isChecked(), false)
    await revoke(manager, asManager)
    await asManager.getByRole('status').filter({ hasText: 'The TOTP secret of carol is revoked.' }).waitFor()
    await asManager.getByRole('button', { name: 'Save' }).click()
    await asManager.getByRole('status').filter({ hasText: 'No changes to save.' }).waitFor()
    t.same(await app.totp.status('carol'), { userId: 'carol', enabled: false, enforced: false, setupRequired: false, setupDeadline: null, locked: false, lockedUntil: null, recoveryCodesLeft: 0 }, 'secret, enforcement, lock and recovery codes are gone')

    await signOut(carol)
    await signIn(carol, 'carol')
    t.equal(new URL(carol.url()).pathname, '/home', 'no TOTP step any more')
    await carol.getByText('Signed in as carol').first().waitFor()
  })

  await t.test('R13 admin enforces TOTP for a role in Settings > Authentication; manager, who holds it, is sent to set up TOTP at sign-in', async (t) => {
    const role = 'ROLE_USER_MANAGEMENT_CREATE'
    await admin.goto('/admin/users')
    await admin.getByRole('link', { name: 'Settings › Authentication' }).click()
    await admin.waitForURL('**/admin/settings')
    const settings = admin.getByRole('region', { name: 'Two-factor authentication' })
    await settings.getByLabel(role, { exact: true }).check()
    await settings.getByRole('button', { name: 'Save' }).click()
    await settings.getByRole('alert').filter({ hasText: 'These settings would enforce TOTP on your own account' }).waitFor()
    t.same((await app.totp.getSettings()).enforceRoles, [], 'admin holds the role too: refused until he has TOTP (ENROL_FIRST)')

    await admin.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'User settings' }).click()
    await admin.getByRole('button', { name: 'Set up two-factor authentication' }).click()
    const adminApp = new Authenticator((await scanQrCode(admin)).searchParams.get('secret') ?? '')
    await admin.getByLabel('Verification code').fill(adminApp.code())
    await admin.getByRole('button', { name: 'Confirm' }).click()
    await admin.getByText('Two-factor authentication is enabled for your account').waitFor()

    await admin.goto('/admin/settings')
    await settings.getByLabel(role, { exact: true }).check()
    await settings.getByRole('button', { name: 'Save' }).click()
    await settings.getByRole('status').filter({ hasText: 'Saved.' }).waitFor()
    await shot(admin, 'tenant-settings')
    t.same(await app.totp.getSettings(), { enforceAll: false, enforceRoles: [role], gracePeriod: 0 }, 'only enforceRoles changed')

    await admin.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Administration' }).click()
    await admin.getByRole('cell', { name: 'enforced, setup pending' }).waitFor()
    const column = await admin.locator('tbody[data-users] tr').evaluateAll((rows) =>
      (rows as HTMLTableRowElement[]).map((r) => [r.cells[0].textContent, r.cells[3].textContent]))
    t.same(column, [['admin', 'enabled, enforced'], ['manager', 'enforced, setup pending'], ['alice', 'not set up'], ['carol', 'not set up'], ['bob', 'not set up']], 'the Users page\'s TOTP column')
    await shot(admin, 'users-totp-column')

    await signOut(manager)
    await signIn(manager, 'manager')
    t.equal(new URL(manager.url()).pathname, '/setup', 'the manager holds the role: set up first')
    await manager.getByRole('heading', { name: 'Set up two-factor authentication' }).waitFor()
    await manager.goto('/home')
    await manager.waitForURL('**/setup')
    t.equal(await manager.getByRole('button', { name: 'Not now' }).isVisible(), false, 'no grace period: no way around it')
  })

  await t.test('R15 bob verifies with "Trust this browser for 30 days" checked, signs out, signs in again in the same browser and reaches home without a code', async (t) => {
    await bob.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'User settings' }).click()
    await bob.getByRole('button', { name: 'Set up two-factor authentication' }).click()
    const bobApp = new Authenticator((await scanQrCode(bob)).searchParams.get('secret') ?? '')
    await bob.getByLabel('Verification code').fill(bobApp.code())
    await bob.getByRole('button', { name: 'Confirm' }).click()
    const devices = bob.getByRole('region', { name: 'Trusted browsers' })
    await devices.getByText('No trusted browsers.').waitFor()

    await signOut(bob)
    await signIn(bob, 'bob')
    t.equal(new URL(bob.url()).pathname, '/verify')
    await bob.getByLabel('Verification code').fill(bobApp.code())
    await bob.getByLabel('Trust this browser for 30 days').check()
    await shot(bob, 'trust-browser')
    await bob.getByRole('button', { name: 'Verify' }).click()
    await bob.waitForURL('**/home')
    const cookie = (await bob.context().cookies()).find((c) => c.name === 'totp_device')
    t.match(cookie, { httpOnly: true, sameSite: 'Lax' }, 'an HttpOnly cookie names the browser')
    t.ok(Math.abs((cookie?.expires ?? 0) - (Date.now() / 1000 + 30 * 86400)) < 60, 'for 30 days')

    await signOut(bob)
    const from = requested.length
    await signIn(bob, 'bob')
    t.equal(new URL(bob.url()).pathname, '/home', 'straight home')
    await bob.getByText('Signed in as bob').first().waitFor()
    t.same(requested.slice(from).filter((url) => new URL(url).pathname.endsWith('/verify')), [], 'no verification page, no code sent')

    await bob.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'User settings' }).click()
    await devices.getByText(/^This browser: trusted since/).waitFor()
    t.equal(await devices.getByRole('listitem').count(), 1)
    const { devices: list } = await bob.evaluate(() => fetch('/totp/devices').then((r) => r.json()))
    t.equal(Date.parse(list[0].expiresAt) - Date.parse(list[0].createdAt), 30 * 86_400_000, 'GET /totp/devices: trusted for 30 days')
    await shot(bob, 'trusted-browsers')
    await devices.getByRole('button', { name: 'Forget' }).click()
    await devices.getByText('No trusted browsers.').waitFor()

    await signOut(bob)
    await signIn(bob, 'bob')
    t.equal(new URL(bob.url()).pathname, '/verify', 'forgotten: the code is asked again')
  })

  await t.test('no page loaded anything from outside the app, and no script failed', async (t) => {
    const outside = requested.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith('data:'))
    t.same(outside, [], `${requested.length} requests, all to ${origin}`)
    t.same(pageErrors, [])
  })
})
