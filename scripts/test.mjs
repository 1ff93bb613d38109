#!/usr/bin/env node
// npm test: type-check, lint, run tap (coverage check on, thresholds in .taprc), then
// print the plain `N passed, N failed` line CI reads.
import { spawn } from 'node:child_process'

const run = (cmd, args, onLine) => new Promise((resolve) => {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  let rest = ''
  child.stdout.on('data', (chunk) => {
    process.stdout.write(chunk)
    const lines = (rest + chunk).split('\n')
    rest = lines.pop()
    for (const line of lines) onLine?.(line)
  })
  child.on('close', (code) => { if (rest) onLine?.(rest); resolve(code ?? 1) })
})

const tsc = await run('npx', ['tsc', '--noEmit', '-p', 'tsconfig.json'])
if (tsc !== 0) {
  console.log('0 passed, 1 failed')
  process.exit(tsc)
}

const lint = await run('npx', ['eslint', '.'])
if (lint !== 0) {
  console.log('0 passed, 1 failed')
  process.exit(lint)
}

let summary = null
const code = await run('npx', ['tap', ...process.argv.slice(2)], (line) => {
  const m = /^# (\{.*\})\s*$/.exec(line)
  if (m && /total/.test(m[1])) summary = m[1]
})
const field = (name) => Number((new RegExp(`${name}: (\\d+)`).exec(summary ?? '') ?? [])[1] ?? 0)
const passed = field('pass')
let failed = field('fail')
if (code !== 0 && failed === 0) failed = 1 // tap failed outside a test, e.g. coverage under threshold
console.log(`${passed} passed, ${failed} failed`)
process.exit(code)
