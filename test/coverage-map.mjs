// tap --coverage-map: the example's and the benchmark's suites exercise the plugin
// through other apps; merging their V8 coverage with the unit suites' garbled the
// report for some plugin files, so coverage is measured by the plugin's own tests.
const OWN = ['test/e2e-browser.test.ts', 'test/example.test.ts', 'test/bench-smoke.test.ts']
export default (testFile) => OWN.some((f) => testFile.endsWith(f)) ? null : []
