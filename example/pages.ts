import { readFileSync } from 'node:fs'
import { extname } from 'node:path'
import type { FastifyInstance } from 'fastify'

const PUBLIC = new URL('./public/', import.meta.url)

/** URL → file in `public/`. The HTML shells are public; the data they fetch is behind the TOTP gate. */
const FILES: Record<string, string> = {
  '/': 'signin.html',
  '/verify': 'verify.html',
  '/setup': 'setup.html',
  '/home': 'home.html',
  '/settings': 'settings.html',
  '/admin/users': 'users.html',
  '/admin/users/:userId': 'user.html',
  '/admin/settings': 'tenant.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css'
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8'
}

// Only this origin: no CDN, no inline script, QR codes arrive as data: URLs.
const CSP = "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/** A file of `public/`; HTML pages share `_head.html` and `_topbar.html` through `<!--#include FILE -->`. */
function load (file: string): Buffer {
  const body = readFileSync(new URL(file, PUBLIC))
  if (extname(file) !== '.html') return body
  return Buffer.from(body.toString('utf8').replace(/<!--#include (\S+) -->\n/g, (_, part: string) => readFileSync(new URL(part, PUBLIC), 'utf8')))
}

/** Serves the few files of `public/` from memory, and security headers on every answer. */
export function servePages (app: FastifyInstance): void {
  for (const [url, file] of Object.entries(FILES)) {
    const body = load(file)
    const type = TYPES[extname(file)]
    app.get(url, { config: { totp: false } }, async (_request, reply) =>
      reply.type(type).header('cache-control', 'no-cache').send(body))
  }

  app.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', CSP)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
  })
}
