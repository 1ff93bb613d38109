// npm run lint: neostandard (the style of Fastify's own repositories, with TypeScript),
// lines of at most 120 characters, and no import cycles.
import neostandard from 'neostandard'
import importX from 'eslint-plugin-import-x'
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'coverage/**', '.tap/**', 'benchmarks/.build/**', 'node_modules/**']
  }),
  {
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver()],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/extensions': ['.ts', '.js', '.mjs']
    },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      '@stylistic/max-len': ['error', { code: 120, ignoreUrls: true, ignoreRegExpLiterals: true }]
    }
  },
  {
    // a test's title names the rule it proves and what it shows: a sentence, kept on one line
    files: ['test/**'],
    rules: {
      '@stylistic/max-len': ['error', {
        code: 120, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true
      }]
    }
  },
  {
    files: ['example/public/**'],
    languageOptions: { globals: { window: 'readonly', document: 'readonly', location: 'readonly', fetch: 'readonly' } }
  }
]
