// core: the plugin's verifyCode() against a raw node:crypto loop doing the same HMACs.
// A wrong code with window ±1 costs three HMAC-SHA1 (steps -1, 0, +1): the raw loop
// computes exactly those three, truncates them (RFC 4226 §5.3) and compares.
import { createHmac, randomBytes } from 'node:crypto'
import { DEFAULT_TOTP_PARAMS, generateCode, timeStepAt, verifyCode } from '../plugin/totp/index.js'
import { wrongCode } from './seed.js'

const SECRETS = 1024

export interface CoreResult {
  /** verifyCode() calls per second with wrong codes (3 HMACs each). */
  verifyOps: number
  /** raw loop iterations per second (3 HMACs each). */
  rawOps: number
  ratio: number
  /** verifyCode() calls per second with valid codes of the current step (2 HMACs: -1 misses, 0 matches). */
  validOps: number
  rounds: number
}

function opsPerSecond (ms: number, fn: (i: number) => void): number {
  let n = 0
  const start = performance.now()
  let now = start
  while ((now = performance.now()) - start < ms) {
    for (let k = 0; k < 64; k++) fn(n++ & (SECRETS - 1))
  }
  return n / ((now - start) / 1000)
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Alternates the two loops `rounds` times for `msPerRound` each and keeps the medians. */
export function runCore (opts: { rounds?: number, msPerRound?: number } = {}): CoreResult {
  const rounds = opts.rounds ?? 5
  const ms = opts.msPerRound ?? 600
  const params = DEFAULT_TOTP_PARAMS
  const secrets = Array.from({ length: SECRETS }, () => randomBytes(20))
  // a fixed time mid-step, so that no round crosses a step boundary
  const epoch = (timeStepAt(params) + 0.5) * params.period
  const step = timeStepAt(params, epoch)
  const wrong = secrets.map((s) => wrongCode(s, epoch))
  const wrongNumbers = wrong.map(Number)
  const valid = secrets.map((s) => generateCode(s, params, epoch))
  const counter = Buffer.alloc(8)
  // results are counted, so no loop is optimised away, and checked
  let accepted = 0
  let matched = 0

  const verify = (i: number): void => {
    if (verifyCode(secrets[i], wrong[i], params, { epochSeconds: epoch }).valid) accepted++
  }
  const verifyValid = (i: number): void => {
    if (!verifyCode(secrets[i], valid[i], params, { epochSeconds: epoch }).valid) accepted = -Infinity
  }
  const raw = (i: number): void => {
    for (let d = -1; d <= 1; d++) {
      counter.writeUInt32BE(0, 0)
      counter.writeUInt32BE(step + d, 4)
      const h = createHmac('sha1', secrets[i]).update(counter).digest()
      const o = h[19] & 0xf
      if ((((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3]) % 1e6 === wrongNumbers[i]) matched++
    }
  }

  opsPerSecond(200, verify)
  opsPerSecond(200, raw)
  const v: number[] = []
  const r: number[] = []
  for (let k = 0; k < rounds; k++) {
    v.push(opsPerSecond(ms, verify))
    r.push(opsPerSecond(ms, raw))
  }
  const validOps = opsPerSecond(ms, verifyValid)
  if (accepted !== 0 || matched !== 0) throw new Error('core: a wrong code was accepted or a valid one refused')
  const verifyOps = median(v)
  const rawOps = median(r)
  return { verifyOps, rawOps, ratio: verifyOps / rawOps, validOps, rounds }
}
