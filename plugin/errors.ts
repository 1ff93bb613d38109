import { createError } from '@fastify/error'

// Refusals (4xx) are answers, not faults: no stack trace is captured, so that Fastify logs each
// as one short line at `info`. Faults (5xx) keep theirs.
function refusal<C extends string, S extends number> (code: C, message: string, statusCode: S) {
  return createError(code, message, statusCode, Error, false)
}

/** Every error the plugin answers with, in Fastify's `{ statusCode, code, error, message }` shape. */
export const TotpUnauthenticatedError = refusal('FST_TOTP_UNAUTHENTICATED', 'Sign in first', 401)
export const TotpRequiredError = refusal('FST_TOTP_REQUIRED', 'A TOTP code is required for this session', 401)
export const TotpSetupRequiredError = refusal(
  'FST_TOTP_SETUP_REQUIRED', 'TOTP must be set up before anything else', 403
)
export const TotpInvalidCodeError = refusal('FST_TOTP_INVALID_CODE', 'The code is wrong or was already used', 401)
export const TotpLockedError = refusal('FST_TOTP_LOCKED', 'Too many wrong codes; %s', 429)
export const TotpAlreadyEnabledError = refusal(
  'FST_TOTP_ALREADY_ENABLED', 'TOTP is already set up for this user; only the parent user can revoke it', 409
)
export const TotpNotEnabledError = refusal('FST_TOTP_NOT_ENABLED', 'TOTP is not set up for this user', 409)
export const TotpNoPendingSetupError = refusal(
  'FST_TOTP_NO_PENDING_SETUP', 'No TOTP setup is pending, or it expired; start the setup again', 404
)
export const TotpForbiddenError = refusal('FST_TOTP_FORBIDDEN', 'Forbidden: %s', 403)
export const TotpUserNotFoundError = refusal('FST_TOTP_USER_NOT_FOUND', 'No such user', 404)
export const TotpBadRequestError = refusal('FST_TOTP_BAD_REQUEST', 'Bad request: %s', 400)
export const TotpCrossSiteError = refusal('FST_TOTP_CROSS_SITE', 'Cross-site requests cannot change TOTP state', 403)
export const TotpSetupThrottledError = refusal(
  'FST_TOTP_SETUP_THROTTLED', 'Too many new setups; retry in %s seconds', 429
)
export const TotpEnrolFirstError = refusal(
  'FST_TOTP_ENROL_FIRST', 'Set up TOTP for yourself before enforcing it on every user', 409
)
export const TotpStepUpRequiredError = refusal(
  'FST_TOTP_STEP_UP_REQUIRED', 'This route needs a fresh TOTP code', 401
)
export const TotpDeviceNotFoundError = refusal('FST_TOTP_DEVICE_NOT_FOUND', 'No such trusted device', 404)
export const TotpUnavailableError = createError(
  'FST_TOTP_UNAVAILABLE', 'TOTP service unavailable, try again shortly', 503
)
export const TotpOptionsError = createError('FST_TOTP_OPTIONS', 'Invalid fastify-totp-gate options: %s', 500)
/** The app's `getUser` or `findUser` answered a user the plugin cannot key (see `userRef`). */
export const TotpBadUserError = createError('FST_TOTP_BAD_USER', 'Unusable user from getUser/findUser: %s', 500)
