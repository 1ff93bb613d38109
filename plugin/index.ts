import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import './augment.js'
import type { TotpContext } from './context.js'
import { createKeyRing } from './crypto/seal.js'
import { TotpOptionsError } from './errors.js'
import { createGate } from './gate.js'
import { createOperator } from './operator.js'
import { checkRouteConfig, resolveOptions, type FastifyTotpOptions } from './options.js'
import { defineTotpAbilities } from './policy/abilities.js'
import { adminRoutes } from './routes/admin.js'
import { withRouteOptions } from './routes/merge.js'
import { sameSiteJson, strictInput } from './routes/schemas.js'
import { settingsRoutes } from './routes/settings.js'
import { setupRoutes } from './routes/setup.js'
import { verifyRoutes } from './routes/verify.js'
import { useSessions } from './session-adapter.js'
import { bounded, failClosed } from './stores/fail-closed.js'
import { MemoryTotpStore } from './stores/memory.js'
import { RedisTotpStore } from './stores/redis.js'
import type { TotpStore } from './stores/store.js'
import type { TotpEvent } from './types.js'

async function fastifyTotp (fastify: FastifyInstance, options: FastifyTotpOptions): Promise<void> {
  const opts = resolveOptions(options)
  // The gate guards the scope it is registered in: inside an encapsulated child scope, every
  // route outside it would answer without a code. Refused rather than guessed at.
  if (Object.getPrototypeOf(fastify) !== Object.prototype) {
    throw new TotpOptionsError('register fastify-totp-gate at the root of the app (or inside a fastify-plugin ' +
      'wrapped plugin): inside an encapsulated scope the gate would leave every other route unprotected')
  }
  // @fastify/session or @fastify/secure-session, chosen once (the option, else the one registered)
  const sessions = useSessions(fastify, opts.session)
  const policy = { lock: opts.lock, ip: opts.ip, setup: opts.setup }
  let store: TotpStore
  if (options.store !== undefined) store = options.store
  else if (options.redis !== undefined) {
    store = new RedisTotpStore({
      client: options.redis,
      keyPrefix: opts.keyPrefix,
      settingsShards: opts.settingsShards,
      ...policy
    })
  } else {
    fastify.log.warn('fastify-totp-gate: in-memory store: state is per process and lost on restart; ' +
      'pass `redis` in production')
    store = new MemoryTotpStore(policy)
  }
  if (store.prepare !== undefined) {
    const prepare = store.prepare.bind(store)
    await bounded(() => prepare({ allowNewKeyPrefix: opts.allowNewKeyPrefix, warn: (m) => fastify.log.warn(m) }),
      opts.timeout).catch((err: Error) => {
      // a refusal of the checks says what to do; a Redis that does not answer is named as such
      if (err.cause instanceof TotpOptionsError) throw err.cause
      const why = String((err.cause as Error)?.message ?? err)
      throw new TotpOptionsError(`the start checks could not run on Redis (${why})`)
    })
  }
  if (opts.defaultIssuer) {
    fastify.log.warn('fastify-totp-gate: issuer is the default "fastify-totp-gate": set it to your product\'s name')
  }
  let keyRing = opts.keyRing
  if (keyRing === null) {
    fastify.log.warn('fastify-totp-gate: no encryptionKey: a random key for this process seals secrets ' +
      '(in-memory store only)')
    keyRing = createKeyRing(randomBytes(32))
  }

  const onEvent = opts.onEvent
  const emit = (request: FastifyRequest | null, event: TotpEvent): void => {
    (request?.log ?? fastify.log).info({ totp: event }, `totp ${event.type}`)
    if (onEvent === undefined) return
    try {
      Promise.resolve(onEvent(event))
        .catch((err: unknown) => fastify.log.error({ err }, 'fastify-totp-gate onEvent failed'))
    } catch (err) {
      fastify.log.error({ err }, 'fastify-totp-gate onEvent failed')
    }
  }

  const ctx: TotpContext = {
    opts,
    store: failClosed(store, opts.timeout),
    keyRing,
    abilities: opts.defineAbilities ?? ((user) => defineTotpAbilities(user)),
    emit
  }
  const operator = createOperator(ctx)
  fastify.decorate('totp', operator)
  fastify.decorateRequest('totp', null)
  fastify.addHook('preValidation', createGate(ctx, sessions))
  // a route's TOTP settings are checked as it is declared (a maxAge of '5m' would be no step-up)
  fastify.addHook('onRoute', (route) => checkRouteConfig(route.url, route.config?.totp))

  // a request that came through a proxy, to an app that does not trust it: every client shares
  // the proxy's address, so one IP budget (S4) would lock everyone out
  // (trustProxy off: request.ip is the socket's address whatever the header says)
  let warnedProxy = false
  fastify.addHook('onRequest', (request, _reply, done) => {
    const forwarded = request.headers['x-forwarded-for'] !== undefined
    if (!warnedProxy && forwarded && request.ip === request.socket.remoteAddress) {
      warnedProxy = true
      request.log.warn('fastify-totp-gate: X-Forwarded-For arrived but trustProxy is off: behind a proxy every ' +
        'client has its address, and shares one per-IP failure budget. Set trustProxy')
    }
    done()
  })

  await fastify.register(async (scope) => {
    strictInput(scope)
    sameSiteJson(scope)
    // the app's routeOptions go into each route as it is declared
    const routes = withRouteOptions(scope, opts.routeOptions)
    verifyRoutes(routes, ctx)
    setupRoutes(routes, ctx)
    adminRoutes(routes, ctx, operator)
    settingsRoutes(routes, ctx, operator)
  }, { prefix: opts.prefix })
}

/** The plugin: register it after @fastify/cookie and @fastify/session (or @fastify/secure-session). */
export const totp = fp(fastifyTotp, {
  fastify: '5.x',
  name: 'fastify-totp-gate',
  // and one of the session plugins: checked at registration (useSessions)
  dependencies: ['@fastify/cookie']
})
export default totp

export * from './errors.js'
export {
  DEFAULT_IP_LIMIT, DEFAULT_ISSUER, DEFAULT_KEY_PREFIX, DEFAULT_LOCKOUT, DEFAULT_PREFIX, DEFAULT_SETTINGS_SHARDS,
  DEFAULT_SETUP_TTL, DEFAULT_TIMEOUT
} from './options.js'
export type { FastifyTotpOptions, IpLimitOptions, LockoutOptions } from './options.js'
export { DEFAULT_TENANT } from './types.js'
export type {
  AttemptInput, AttemptResult, CheckState, GateState, SecretState, StorePolicy, TenantSettings, TotpEvent,
  TotpEventType, TotpRequestState, TotpRouteConfig, TotpSessionState, TotpUser, UserRef
} from './types.js'
export type { OperatorScope, TotpOperator, TotpUserStatus } from './operator.js'
export { defineTotpAbilities, ROLE_ADMIN, ROLE_CREATE, ROLE_READ } from './policy/abilities.js'
export type { AbilityBuilder, TargetFields, TotpAbility, TotpAction, TotpSubjectType } from './policy/abilities.js'
export { MemoryTotpStore } from './stores/memory.js'
export { LAYOUT_REGISTRY, migrateLayout, type Layout } from './stores/layout.js'
export { RedisTotpStore, type RedisTotpStoreOptions } from './stores/redis.js'
export type { TotpStore } from './stores/store.js'
export { createKeyRing, type KeyRing, type KeyRingInput } from './crypto/seal.js'
