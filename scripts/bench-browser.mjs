// Runs www/dist/bench.html in headless Chromium (Debian's) and prints fuel per second.
import { chromium } from 'playwright-core';
import { serveDirectory, chromiumArgs } from '../tests/support/browser.mjs';

const server = await serveDirectory(new URL('../www/dist/', import.meta.url).pathname);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: chromiumArgs });
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}/bench.html`);
  const runs = await page.waitForFunction(() => window.benchResult, null, { timeout: 300_000 })
    .then((h) => h.jsonValue());
  const first = runs[0];
  const warm = runs.slice(1);
  const rate = (r) => r.fuel / (r.millis / 1000);
  const best = Math.max(...warm.map(rate));
  const median = warm.map(rate).sort((a, b) => a - b)[Math.floor(warm.length / 2)];
  console.log(`browser (headless Chromium): first run ${(rate(first) / 1e6).toFixed(1)} M fuel/s; ` +
    `warm median ${(median / 1e6).toFixed(1)} M fuel/s, best ${(best / 1e6).toFixed(1)} M fuel/s`);
} finally {
  await browser.close();
  server.close();
}
