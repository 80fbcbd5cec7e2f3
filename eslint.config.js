// ESLint's recommended rules plus typescript-eslint's type-aware recommended set: it catches the
// bugs that matter in this codebase (floating promises, misused async callbacks, unsafe any).
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

// The longest line: two files side by side on a laptop screen, or one beside a terminal.
const MAX_LINE = 160

export default tseslint.config(
  { ignores: ['node_modules/', '.data/', '.tap/', 'coverage/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname }
    },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      // Fastify plugins and hooks are async by contract even when they await nothing.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
      // Style the tools hold, so reviews need not: one import statement per module (a type-only
      // import beside a value import is fine), and lines that fit a screen side by side. Strings,
      // template literals (test titles, messages, SQL) and regular expressions may run longer: a
      // break inside them reads worse than a long line.
      'no-duplicate-imports': ['error', { allowSeparateTypeImports: true }],
      'max-len': ['error', { code: MAX_LINE, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true, ignoreUrls: true }]
    }
  },
  {
    // A service unit that fits on a screen or two: past 300 lines a file holds more than one concern.
    // (Tests, the bench and migrations read top to bottom as scenarios and are left out.)
    files: ['app/**/*.ts', 'server/**/*.ts', 'server/**/*.js', 'worker/**/*.ts', 'purchase/**/*.ts', 'db/**/*.ts', 'lib/**/*.ts'],
    ignores: ['db/migrations/**'],
    rules: { 'max-lines': ['error', { max: 300 }] }
  },
  {
    // The dashboard's browser script: its globals (document, fetch, EventSource) are checked by tsc
    // against the DOM library (server/dashboard/tsconfig.json), which no-undef does not know.
    files: ['server/dashboard/**/*.js'],
    rules: { 'no-undef': 'off' }
  },
  {
    // Tests read HTTP bodies as loosely typed JSON on purpose; assertions check their shape.
    // tap tracks the promises t.test() returns itself, so subtests are not awaited.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': 'off',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-explicit-any': 'off'
    }
  }
)
