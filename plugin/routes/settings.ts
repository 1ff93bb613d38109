import type { FastifyInstance, FastifyRequest } from 'fastify'
import { forbidden, requireUser, type TotpContext } from '../context.js'
import { TotpEnrolFirstError } from '../errors.js'
import type { TotpOperator } from '../operator.js'
import { refusal, settingsSubject, type TotpAction } from '../policy/abilities.js'
import type { TenantSettings, TotpUser } from '../types.js'
import { documented, errorAnswers, settingsAnswer, settingsBody } from './schemas.js'

/** GET/PUT /settings: the tenant's settings, read by READ or ADMIN, changed by ADMIN. */
export function settingsRoutes (scope: FastifyInstance, ctx: TotpContext, op: TotpOperator): void {
  const authorize = (request: FastifyRequest, action: TotpAction): { actor: TotpUser; tenant: string } => {
    const { user: actor, ref } = requireUser(request)
    const why = refusal(ctx.abilities(actor), action, settingsSubject(ref.tenant))
    if (why !== null) throw forbidden(request, why)
    return { actor, tenant: ref.tenant }
  }

  scope.get('/settings', {
    schema: documented('The tenant\'s TOTP settings', { 200: settingsAnswer, ...errorAnswers([401, 403, 500, 503]) })
  }, async (request) => {
    const { tenant } = authorize(request, 'read')
    return op.getSettings({ tenant })
  })

  scope.put<{ Body: Partial<TenantSettings> }>('/settings', {
    schema: {
      body: settingsBody,
      ...documented('Change any of the tenant\'s TOTP settings', {
        200: settingsAnswer,
        ...errorAnswers([400, 401, 403, 409, 413, 500, 503], {
          409: 'FST_TOTP_ENROL_FIRST: it would enforce TOTP on oneself, who has no active secret'
        })
      })
    }
  }, async (request) => {
    const { actor, tenant } = authorize(request, 'update')
    const next = { ...await op.getSettings({ tenant }), ...request.body }
    // enforcing on oneself (everyone, or a role one holds) without a secret would shut the actor
    // out of the very settings just changed (the next request answers 403 until set up)
    const self = next.enforceAll || actor.roles.some((r) => next.enforceRoles.includes(r))
    if (self && !requireUser(request).state.enabled) throw new TotpEnrolFirstError()
    await op.setSettings(next, { tenant, actorId: actor.id, request })
    return next
  })
}
