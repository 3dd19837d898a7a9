// Bundles the demo page's scripts into hubbub/demo/, where the binary
// embeds them. `--check` builds them in memory and fails when the
// committed bundles differ (a source changed without `npm run demo`).
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const out = (name) => fileURLToPath(new URL(`../../../hubbub/demo/${name}`, import.meta.url));
const entries = [
  ["demo/app.ts", "demo.js"],
  ["demo/worker.ts", "worker.js"],
];
const check = process.argv.includes("--check");
let stale = [];
for (const [entry, name] of entries) {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    legalComments: "none",
    write: false,
    outfile: out(name),
  });
  const text = result.outputFiles[0].text;
  if (!check) writeFileSync(out(name), text);
  else if (readFileSync(out(name), "utf8") !== text) stale.push(name);
}
if (stale.length > 0) {
  console.error(`hubbub/demo/${stale.join(", ")} are not built from the current sources: run \`npm run demo\` in clients/ts and commit them`);
  process.exit(1);
}
