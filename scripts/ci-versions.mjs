#!/usr/bin/env node
// CI on the other supported Node versions (package.json "engines": Node >= 20.19; `npm test` runs
// on the machine's Node 20). For each of Node 22 and 24, taken from the npm registry's `node`
// package (`npm exec --package=node@22`), runs tap under that Node: tap spawns each test file
// with its own process.execPath, so running tap's bin with that binary runs the tests on it.
// This script checks the binary's version, then, after the run, that every test file's process
// was that binary (tap's .tap/processinfo records each one's argv), and puts the binary's folder
// first on PATH, so that a test spawning `node` gets the same one.
//
// The subset, without coverage (thresholds are `npm test`'s, on the whole suite): the plugin's
// behaviour against Redis, which is what could differ between Node versions (crypto, timers,
// fetch-free HTTP via inject, ESM loading):
//   flow, replay, lockout, recovery, policies, stores, admin, gate-cost, session-store,
//   secure-session, edges, hostile, input, options, openapi, at-rest, seal, totp-core, adoption, works-with
// Left to the main Node only: package (npm pack and registry installs: the same tarball on any
// Node), e2e-browser and example (Chromium), bench-smoke (a benchmark run), readme (the README's
// snippets are the tested ones: documentation), and the Redis-server tests that start clusters and
// kill servers (cluster, outage, outage-cluster, redis-servers, instances): minutes of server
// start-up that test Redis, not Node. Measured on this 2-core machine: 64 s on Node 22, 71 s on
// Node 24, 2 min 15 s for both (npm exec of a cached node: under 1 s; a first download: 5-6 s).
//
// Prints each run's Node version and its `N passed, N failed`, then `all: N passed, N failed`
// over these runs and, with --main-log FILE (npm test's output), npm test's own counts too.
// Exits non-zero when any run fails. CI_NODE_VERSIONS="22 24" (space- or comma-separated)
// chooses the versions; arguments after the options replace the subset.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const SUBSET = [
  'flow', 'replay', 'lockout', 'recovery', 'policies', 'stores', 'admin', 'gate-cost', 'session-store',
  'secure-session', 'edges', 'hostile', 'input', 'options', 'openapi', 'at-rest', 'seal', 'totp-core', 'adoption',
  'works-with'
].map((name) => `test/${name}.test.ts`)
const RUN_TIMEOUT = 8 * 60_000 // one version's run (measured: 64-77 s)
const FETCH_TIMEOUT = 3 * 60_000 // npm exec of the node package (a first download: seconds)

const args = process.argv.slice(2)
let mainLog
if (args[0] === '--main-log') {
  mainLog = args[1]
  args.splice(0, 2)
}
const files = args.length > 0 ? args : SUBSET
for (const file of files) {
  if (!existsSync(join(root, file))) {
    console.error(`ci-versions: no ${file}`)
    process.exit(2)
  }
}
const versions = (process.env.CI_NODE_VERSIONS ?? '22 24').split(/[\s,]+/).filter(Boolean)
// this script may run under npm (npm run …): its npm_* settings are not the child npm's
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)))

/** The path of the `node` binary of the registry's node@major, installed in npm's npx cache. */
function nodeBinary (major) {
  const print = 'process.execPath + " " + process.version'
  const out = execFileSync('npm', ['exec', '--yes', `--package=node@${major}`, '--', 'node', '-p', print], {
    cwd: tmpdir(), env: cleanEnv, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: FETCH_TIMEOUT
  }).trim().split('\n').pop()
  const [path, version] = out.split(' ')
  if (!new RegExp(`^v${major}\\.`).test(version ?? '')) throw new Error(`npm exec --package=node@${major} ran ${out}`)
  return { path, version }
}

/** tap's bin under `node`: the TAP summary (`# { total: …, pass: …, fail: … }`) and the exit code. */
function tapUnder (node) {
  return new Promise((resolve) => {
    const tap = join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs')
    const child = spawn(node, [tap, '--disable-coverage', '--reporter=tap', ...files], {
      cwd: root,
      env: { ...cleanEnv, PATH: `${dirname(node)}${delimiter}${process.env.PATH ?? ''}` },
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true // its own process group: a timed-out run is ended whole
    })
    let summary = null
    let rest = ''
    const onLine = (line) => {
      const m = /^# (\{.*\})\s*$/.exec(line)
      if (m && /total/.test(m[1])) summary = m[1]
    }
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk)
      const lines = (rest + chunk).split('\n')
      rest = lines.pop()
      for (const line of lines) onLine(line)
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      try { process.kill(-child.pid, 'SIGKILL') } catch {}
    }, RUN_TIMEOUT)
    child.on('close', (code) => {
      clearTimeout(timer)
      if (rest) onLine(rest)
      const field = (name) => Number((new RegExp(`${name}: (\\d+)`).exec(summary ?? '') ?? [])[1] ?? 0)
      const passed = field('pass')
      let failed = field('fail')
      // tap failed outside a test (a crash, a timeout): one failure
      if ((code !== 0 || timedOut) && failed === 0) failed = 1
      resolve({ passed, failed, code: timedOut ? 'timeout' : code })
    })
  })
}

/** The test files whose process (tap's processinfo, written since `since`) was not `node`. */
function notUnder (node, since) {
  const dir = join(root, '.tap', 'processinfo')
  const seen = new Map()
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    let info
    try { info = JSON.parse(readFileSync(join(dir, name), 'utf8')) } catch { continue }
    if (info.parent !== null || Date.parse(info.date) < since || typeof info.externalID !== 'string') continue
    seen.set(info.externalID, info.argv?.[0])
  }
  return files.filter((f) => seen.get(f) !== node).map((f) => `${f} (${seen.get(f) ?? 'no record'})`)
}

const results = []
for (const major of versions) {
  const started = Date.now()
  let node
  try {
    node = nodeBinary(major)
  } catch (err) {
    console.log(`\nNode ${major}: could not get node@${major} from the registry: ${err.message}`)
    results.push({ label: `Node ${major}`, passed: 0, failed: 1 })
    continue
  }
  const fetched = (Date.now() - started) / 1000
  console.log(`\n== Node ${node.version} (${node.path}, npm exec ${fetched.toFixed(1)} s): ` +
    `tap --disable-coverage ${files.join(' ')}`)
  const since = Date.now() - 1000
  const { passed, code, ...run } = await tapUnder(node.path)
  let failed = run.failed
  const elsewhere = notUnder(node.path, since)
  if (elsewhere.length > 0) {
    console.log(`== not run under ${node.path}: ${elsewhere.join(', ')}`)
    failed += 1
  } else {
    console.log(`== all ${files.length} test files ran under ${node.version} (tap's processinfo: ${node.path})`)
  }
  const seconds = (Date.now() - started) / 1000
  results.push({ label: `Node ${node.version}`, passed, failed })
  console.log(`== Node ${node.version} (tap exit ${code}, ${seconds.toFixed(1)} s)`)
}

console.log('\nci-versions:')
let main = null
if (mainLog !== undefined) {
  const lines = readFileSync(mainLog, 'utf8').split('\n').filter((l) => /^\d+ passed, \d+ failed/.test(l))
  const m = /^(\d+) passed, (\d+) failed/.exec(lines.pop() ?? '')
  main = m
    ? { label: `Node ${process.version} (npm test)`, passed: Number(m[1]), failed: Number(m[2]) }
    : { label: `Node ${process.version} (npm test: no summary in ${mainLog})`, passed: 0, failed: 1 }
}
const all = main === null ? results : [main, ...results]
for (const r of all) console.log(`  ${r.label}: ${r.passed} passed, ${r.failed} failed`)
const passed = all.reduce((n, r) => n + r.passed, 0)
const failed = all.reduce((n, r) => n + r.failed, 0)
console.log(`all: ${passed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
