// Lint: typescript-eslint's type-checked rules, the Node plugin (checks the `engines`
// range against the APIs we use) and the Vitest plugin for tests. Formatting is Prettier's
// alone (eslint-config-prettier turns off the rules that would disagree with it).
import js from "@eslint/js";
import vitest from "@vitest/eslint-plugin";
import prettier from "eslint-config-prettier";
import n from "eslint-plugin-n";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "node_modules/",
      "dist/",
      "dist.*/",

      "coverage/",
      ".genstore/",
      // The example app is checked by its own `next build` (tests/nextjs-example.e2e.test.ts),
      // against the installed package; from here, neither next nor genstore resolves.
      "examples/",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  n.configs["flat/recommended-module"],
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    settings: { n: { tryExtensions: [".ts", ".js", ".mjs"] } },
    rules: {
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
      ],
      // Imports resolve through TypeScript (`.ts` specifiers); the Node plugin cannot follow them.
      "n/no-missing-import": "off",
      "n/no-unpublished-import": "off",
      "n/no-process-exit": "off",
      "n/hashbang": "off",
      // Async functions that implement an async interface need no await of their own.
      "@typescript-eslint/require-await": "off",
      // Unflagged and used in production since Node 18; the plugin calls them experimental until 21.
      "n/no-unsupported-features/node-builtins": [
        "error",
        { ignores: ["fetch", "Request", "Response", "Headers", "Crypto", "import.meta.dirname"] },
      ],
    },
  },
  {
    files: ["tests/**/*.ts"],
    plugins: { vitest },
    rules: {
      ...vitest.configs.recommended.rules,
      // expect(value, message) is Vitest's own form.
      "vitest/valid-expect": ["error", { maxArgs: 2 }],
      // Tests narrow a union after asserting on it (`expect(r.ok).toBe(false); if (!r.ok) …`).
      "vitest/no-conditional-expect": "off",
      // Tests read JSON answers (any) and assert on their shape.
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-return": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-explicit-any": "off",
      // Test servers take async request handlers.
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: { arguments: false } }],
    },
  },
  { files: ["**/*.js", "**/*.mjs", "bin/*"], ...tseslint.configs.disableTypeChecked },
  // The gallery's page: plain JavaScript modules that run in the browser, not in Node.
  { files: ["src/gallery/static/**/*.js"], languageOptions: { globals: globals.browser } },
  prettier,
);
