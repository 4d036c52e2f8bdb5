// Type-checks (tsc --strict), bundles src/main.ts into dist/app.js and copies the static files next to it; compiles the
// browser tests to dist-test/. No dev server magic: `node serve.mjs` serves dist/ as it is.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, rmSync } from "node:fs";

if (!existsSync("../ts/dist/src/index.js")) {
  console.error("@assistd/client is not built: run `npm ci && npm run build` in clients/ts first");
  process.exit(1);
}
const tsc = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.json", "--noEmit"], { stdio: "inherit" });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist", { recursive: true });
cpSync("static", "dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: "dist/app.js",
  logLevel: "warning",
});
rmSync("dist-test", { recursive: true, force: true });
await build({
  entryPoints: ["test/web.test.ts"],
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  external: ["../serve.mjs"],
  outdir: "dist-test",
  logLevel: "warning",
});
