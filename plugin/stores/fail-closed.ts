import { TotpUnavailableError } from '../errors.js'
import { STORE_METHODS, type TotpStore } from './store.js'

/**
 * Runs `op` within `ms`: whatever it throws or rejects with, or its not answering in time,
 * becomes the one 503 `FST_TOTP_UNAVAILABLE` (fail closed: a store that cannot answer never
 * lets a request pass, nor hangs it).
 */
export function bounded<T> (op: () => Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new TotpUnavailableError({ cause: new Error(`no answer within ${ms} ms`) })),
      ms
    )
    const fail = (err: unknown): void => {
      clearTimeout(timer)
      reject(err instanceof TotpUnavailableError ? err : new TotpUnavailableError({ cause: err }))
    }
    try {
      Promise.resolve(op()).then((value) => { clearTimeout(timer); resolve(value) }, fail)
    } catch (err) {
      fail(err)
    }
  })
}

/** The store with every call bounded by `ms` and failing closed (see `bounded`). */
export function failClosed (store: TotpStore, ms: number): TotpStore {
  const guarded: Record<string, unknown> = {}
  for (const name of STORE_METHODS) {
    const method = store[name] as (...args: unknown[]) => Promise<unknown>
    guarded[name] = (...args: unknown[]) => bounded(() => method.apply(store, args), ms)
  }
  return guarded as unknown as TotpStore
}
