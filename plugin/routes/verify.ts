import type { FastifyInstance } from 'fastify'
import { lockOf, requireUser, type TotpContext } from '../context.js'
import { TotpBadRequestError, TotpNotEnabledError, TotpUnavailableError } from '../errors.js'
import { generateRecoveryCodes, normalizeRecoveryCode, recoveryHashes } from '../recovery.js'
import { markVerified } from '../sessions.js'
import { decideCode } from '../verification.js'
import { BODY_LIMIT, codeBody, recoveryBody } from './schemas.js'

/** GET /status, POST /verify and the recovery codes: the routes of an enrolled user's session. */
export function verifyRoutes (scope: FastifyInstance, ctx: TotpContext): void {
  scope.get('/status', {
    config: { totp: { allowUnverified: true, allowSetupRequired: true } }
  }, async (request) => {
    const { ref, state, verified } = requireUser(request)
    const enforced = state.enforced || state.enforceAll
    return {
      enabled: state.enabled,
      enforced,
      verified,
      setupRequired: !state.enabled && enforced,
      ...lockOf(state),
      recoveryCodesLeft: state.enabled ? await ctx.store.recoveryCodesLeft(ref) : 0
    }
  })

  scope.post<{ Body: { code: string } }>('/verify', {
    bodyLimit: BODY_LIMIT,
    schema: { body: codeBody(ctx.opts.totp.digits) },
    config: { totp: { allowUnverified: true, readsCode: true } }
  }, async (request, reply) => {
    const { ref } = requireUser(request)
    const { gen } = await decideCode(ctx, { request, reply, ref, kind: 'verify' })
    await markVerified(request, ref, gen)
    ctx.emit(request, { type: 'verify.succeeded', ...ref, ip: request.ip })
    return { verified: true }
  })

  const count = ctx.opts.recoveryCodes
  if (count === null) return

  // R9: a recovery code instead of a TOTP code, once; a wrong one counts toward the lock (S4)
  scope.post<{ Body: { code: string } }>('/recover', {
    bodyLimit: BODY_LIMIT,
    schema: { body: recoveryBody },
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
  scope.post('/recovery-codes', async (request, reply) => {
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
