// Loads PAGE_URL in headless Chromium and prints, as JSON, what
// window.roundTrip(WS_URL) resolves to (the page is the bundle test's).
//
//   node browser.mjs PLAYWRIGHT_CORE_DIR CHROMIUM PAGE_URL WS_URL
import path from "node:path";
import { pathToFileURL } from "node:url";

const [playwrightDir, chromiumPath, pageUrl, wsUrl] = process.argv.slice(2);
const { chromium } = await import(pathToFileURL(path.join(playwrightDir, "index.mjs")).href);
const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.bundleLoaded === true, null, { timeout: 20000 });
  const result = await page.evaluate((url) => window.roundTrip(url), wsUrl);
  console.log(JSON.stringify({ result, errors }));
} finally {
  await browser.close();
}
