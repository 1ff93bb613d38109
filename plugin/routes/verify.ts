import type { FastifyInstance } from 'fastify'
import { lockOf, requireUser, type TotpContext } from '../context.js'
import { clearDeviceCookie, deviceCookie, listValid, newDevice, setDeviceCookie } from '../devices.js'
import {
  TotpBadRequestError, TotpDeviceNotFoundError, TotpNotEnabledError, TotpUnavailableError
} from '../errors.js'
import { generateRecoveryCodes, normalizeRecoveryCode, recoveryHashes } from '../recovery.js'
import { markVerified } from '../sessions.js'
import { decideCode } from '../verification.js'
import {
  BODY_LIMIT, codeBody, deviceParams, devicesAnswer, documented, errorAnswers, noContent, recoverAnswer,
  recoveryBody, recoveryCodesAnswer, statusAnswer, verifyAnswer
} from './schemas.js'

const SETUP_OR_CROSS_SITE = 'FST_TOTP_SETUP_REQUIRED (TOTP enforced, no active secret) or FST_TOTP_CROSS_SITE'
// the code routes: 401 is also a wrong code, 409 no secret to check it against
const CODE_ERRORS = {
  401: 'FST_TOTP_UNAUTHENTICATED (nobody is signed in) or FST_TOTP_INVALID_CODE (wrong or reused; counted)',
  403: SETUP_OR_CROSS_SITE,
  409: 'FST_TOTP_NOT_ENABLED: no active secret'
}

/** GET /status, POST /verify and the recovery codes: the routes of an enrolled user's session. */
export function verifyRoutes (scope: FastifyInstance, ctx: TotpContext): void {
  scope.get('/status', {
    schema: documented('The signed-in user\'s TOTP state', {
      200: statusAnswer,
      ...errorAnswers([401, 500, 503], { 401: 'FST_TOTP_UNAUTHENTICATED: nobody is signed in' })
    }),
    config: { totp: { allowUnverified: true, allowSetupRequired: true } }
  }, async (request) => {
    const { ref, state, verified } = requireUser(request)
    const enforced = state.enforced || state.enforceAll || state.roleEnforced
    const setupRequired = !state.enabled && enforced
    return {
      enabled: state.enabled,
      enforced,
      verified,
      setupRequired,
      setupDeadline: setupRequired && state.setupDeadline > 0 ? new Date(state.setupDeadline).toISOString() : null,
      ...lockOf(state),
      recoveryCodesLeft: state.enabled ? await ctx.store.recoveryCodesLeft(ref) : 0
    }
  })

  // also in a verified session: a fresh code for step-up (R12), replay and lock rules unchanged
  const trust = ctx.opts.trustDevice
  scope.post<{ Body: { code: string; trustDevice?: boolean } }>('/verify', {
    bodyLimit: BODY_LIMIT,
    schema: {
      body: codeBody(ctx.opts.totp.digits, trust !== null),
      ...documented('Verify the session with a TOTP code (also a step-up)', {
        200: verifyAnswer,
        ...errorAnswers([400, 401, 403, 409, 413, 429, 500, 503], CODE_ERRORS)
      })
    },
    config: { totp: { allowUnverified: true, readsCode: true } }
  }, async (request, reply) => {
    const { ref } = requireUser(request)
    const { gen } = await decideCode(ctx, { request, reply, ref, kind: 'verify' })
    await markVerified(request, ref, gen)
    ctx.emit(request, { type: 'verify.succeeded', ...ref, ip: request.ip })
    if (trust !== null && request.body.trustDevice === true) {
      // R15: this browser passes later sign-ins without a code, until the secret changes
      const d = newDevice(request, gen, trust.ttlMs)
      await ctx.store.trustDevice(ref, d.id, JSON.stringify(d.record), trust.ttlMs)
      setDeviceCookie(reply, trust.cookieName, d.cookie, trust.ttlMs)
      ctx.emit(request, { type: 'device.trusted', ...ref, ip: request.ip, deviceId: d.id })
      return { verified: true, deviceId: d.id }
    }
    return { verified: true }
  })

  if (trust !== null) {
    scope.get('/devices', {
      schema: documented('The user\'s trusted devices', {
        200: devicesAnswer,
        ...errorAnswers([401, 403, 500, 503], { 403: 'FST_TOTP_SETUP_REQUIRED: TOTP enforced, no active secret' })
      })
    }, async (request) => {
      const { ref, state } = requireUser(request)
      const current = deviceCookie(request, trust.cookieName)?.id ?? null
      return { devices: listValid(await ctx.store.listDevices(ref), state.gen, current) }
    })
    scope.delete<{ Params: { deviceId: string } }>('/devices/:deviceId', {
      schema: {
        params: deviceParams,
        ...documented('Forget a trusted device', {
          204: noContent('Forgotten: its cookie no longer passes sign-in'),
          ...errorAnswers([400, 401, 403, 404, 413, 500, 503], {
            403: SETUP_OR_CROSS_SITE,
            404: 'FST_TOTP_DEVICE_NOT_FOUND: no trusted device of that id'
          })
        })
      }
    }, async (request, reply) => {
      const { ref } = requireUser(request)
      const id = request.params.deviceId
      if (!await ctx.store.forgetDevice(ref, id)) throw new TotpDeviceNotFoundError()
      if (deviceCookie(request, trust.cookieName)?.id === id) clearDeviceCookie(reply, trust.cookieName)
      ctx.emit(request, { type: 'device.forgotten', ...ref, ip: request.ip, deviceId: id })
      return reply.code(204).send()
    })
  }

  const count = ctx.opts.recoveryCodes
  if (count === null) return

  // R9: a recovery code instead of a TOTP code, once; a wrong one counts toward the lock (S4)
  scope.post<{ Body: { code: string } }>('/recover', {
    bodyLimit: BODY_LIMIT,
    schema: {
      body: recoveryBody,
      ...documented('Verify the session with a recovery code (once each)', {
        200: recoverAnswer,
        ...errorAnswers([400, 401, 403, 409, 413, 429, 500, 503], CODE_ERRORS)
      })
    },
    config: { totp: { allowUnverified: true, readsCode: true } }
  }, async (request, reply) => {
    const { ref } = requireUser(request)
    const code = normalizeRecoveryCode(request.body.code)
    if (code === null) throw new TotpBadRequestError('a recovery code has 10 letters and digits, e.g. abcde-fghij')
    const check = { request, reply, ref, kind: 'recover' as const, recoveryCodes: [code] }
    const { gen, recoveryCodesLeft } = await decideCode(ctx, check)
    await markVerified(request, ref, gen)
    ctx.emit(request, { type: 'recovery.used', ...ref, ip: request.ip, recoveryCodesLeft })
    return { verified: true, recoveryCodesLeft }
  })

  // R9: a new set replaces the old one, from a verified session
  scope.post('/recovery-codes', {
    schema: documented('A new set of recovery codes, replacing the old one', {
      201: recoveryCodesAnswer,
      ...errorAnswers([400, 401, 403, 409, 413, 500, 503], {
        403: SETUP_OR_CROSS_SITE,
        409: 'FST_TOTP_NOT_ENABLED: no active secret'
      })
    })
  }, async (request, reply) => {
    const { ref, state } = requireUser(request)
    if (!state.enabled) throw new TotpNotEnabledError()
    const recoveryCodes = generateRecoveryCodes(count)
    const hashes = recoveryHashes(ctx.keyRing, ref, state.gen, recoveryCodes)
    const r = await ctx.store.setRecoveryCodes(ref, state.gen, hashes)
    // the gate saw this session verified under `gen`: a secret revoked or replaced since is a race
    if (!r.ok && r.reason === 'not-enabled') throw new TotpNotEnabledError()
    if (!r.ok) throw new TotpUnavailableError({ cause: new Error('the secret changed during the call') })
    ctx.emit(request, { type: 'recovery.generated', ...ref, ip: request.ip, recoveryCodesLeft: r.count })
    reply.code(201)
    return { recoveryCodes }
  })
}
