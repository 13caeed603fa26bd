// Loads the service's /docs page in headless Chromium and checks that Swagger UI renders every
// operation of the served OpenAPI document, that the page requests nothing from any other host,
// and saves a screenshot. run.sh starts the service and runs this file, which also runs alone:
//   SERVICE_URL=http://127.0.0.1:8080 node docs.mjs
//
// Environment: SERVICE_URL (required), WORKFORCE_API_KEY (sent as a bearer token to the
// service only, when set), CHROMIUM (default /usr/bin/chromium), ARTIFACTS_DIR (default
// ./artifacts). Exits 1 with the reasons when a check fails.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const scriptDir = path.dirname(fileURLToPath(import.meta.url));
const serviceUrl = process.env.SERVICE_URL;
if (!serviceUrl) {
  console.error("docs.mjs: SERVICE_URL is missing; set it to the service's base URL, such as http://127.0.0.1:8080");
  process.exit(2);
}
const origin = new URL(serviceUrl).origin;
const apiKey = process.env.WORKFORCE_API_KEY || undefined;
const artifactsDir = process.env.ARTIFACTS_DIR || path.join(scriptDir, "artifacts");
const screenshot = path.join(artifactsDir, "docs.png");

// These flags keep Chromium from opening its own background connections (updates, sync, QUIC).
const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const MIN_OPERATIONS = 10;
const RENDER_TIMEOUT_MS = 20_000;

const failures = [];
function check(condition, message) {
  console.log(`  ${condition ? "ok  " : "FAIL"}  ${message}`);
  if (!condition) failures.push(message);
}

function authHeaders() {
  return apiKey ? { authorization: `Bearer ${apiKey}` } : {};
}

// Count the operations of the document the page will show, to compare with what renders.
const documentResponse = await fetch(`${origin}/openapi.json`, { headers: authHeaders() });
if (!documentResponse.ok) {
  console.error(`docs.mjs: GET ${origin}/openapi.json failed with HTTP ${documentResponse.status}; if the service requires a credential for it, set WORKFORCE_API_KEY`);
  process.exit(1);
}
const document = await documentResponse.json();
const methods = new Set(["get", "put", "post", "delete", "patch", "head", "options", "trace"]);
const expectedOperations = Object.values(document.paths).flatMap((item) => Object.keys(item).filter((k) => methods.has(k))).length;
const expectedTags = (document.tags ?? []).map((tag) => tag.name);

const userDataDir = await mkdtemp(path.join(tmpdir(), "wfs-docs-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: chromiumArgs,
  viewport: { width: 1280, height: 900 },
});

const requests = [];
const foreign = [];
const pageErrors = [];
try {
  // Every request goes through this route: requests to the service get the API key, anything
  // else is recorded and aborted, so that a failing test never sends traffic elsewhere.
  await context.route("**/*", async (route) => {
    const url = route.request().url();
    requests.push(url);
    if (new URL(url).origin === origin) {
      await route.continue({ headers: { ...route.request().headers(), ...authHeaders() } });
    } else {
      foreign.push(url);
      await route.abort("blockedbyclient");
    }
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") console.log(`  info  console error: ${message.text()}`);
  });

  const response = await page.goto(`${origin}/docs/`, { waitUntil: "networkidle" });
  check(response?.status() === 200, `GET /docs/ answered ${response?.status()}`);

  const opblocks = page.locator(".opblock");
  await opblocks.nth(MIN_OPERATIONS - 1).waitFor({ state: "visible", timeout: RENDER_TIMEOUT_MS }).catch(() => {});
  const rendered = await opblocks.count();
  check(rendered >= MIN_OPERATIONS, `${rendered} operations rendered (at least ${MIN_OPERATIONS})`);
  check(rendered === expectedOperations, `${rendered} operations rendered, ${expectedOperations} in /openapi.json`);

  const tagNames = await page.locator(".opblock-tag").evaluateAll((nodes) => nodes.map((n) => n.getAttribute("data-tag")));
  check(tagNames.includes("workforces"), `the "workforces" tag is shown (tags: ${tagNames.join(", ")})`);
  for (const tag of expectedTags) {
    check(tagNames.includes(tag), `tag "${tag}" from /openapi.json is shown`);
  }
  const title = (await page.locator(".info .title").first().textContent({ timeout: RENDER_TIMEOUT_MS })) ?? "";
  check(title.includes(document.info.title), `the page title shows "${document.info.title}" (${title.trim()})`);

  const createOperation = page.locator('.opblock-post [data-path="/v1/regions/{region}/workforces"]');
  check((await createOperation.count()) === 1, "POST /v1/regions/{region}/workforces is listed");

  check(pageErrors.length === 0, `no script errors on the page${pageErrors.length ? `: ${pageErrors.join("; ")}` : ""}`);
  console.log(`  info  the page made ${requests.length} requests: ${[...new Set(requests.map((u) => new URL(u).pathname))].join(" ")}`);
  check(foreign.length === 0, `every request went to ${origin}${foreign.length ? `; others: ${foreign.join(", ")}` : ""}`);

  await mkdir(artifactsDir, { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`  info  screenshot saved to ${screenshot}`);
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}

if (failures.length > 0) {
  console.error(`docs.mjs: ${failures.length} checks failed:\n${failures.map((f) => `  - ${f}`).join("\n")}`);
  process.exit(1);
}
console.log("docs.mjs: /docs renders every operation and loads nothing from other hosts");
