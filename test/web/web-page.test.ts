import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { chestLikePng } from '../helpers/fixtures.js';
import { testConfig } from '../helpers/service.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const noChromium = existsSync(CHROMIUM) ? undefined : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;

describe.skipIf(!!noChromium)(`web page in headless Chromium${noChromium ? ` (skipped: ${noChromium})` : ''}`, () => {
  let srv: RunningServer;
  let browser: Browser;
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'promptseg-web-')), 'chest.png');

  beforeAll(async () => {
    writeFileSync(file, await chestLikePng(256));
    srv = await startServer(testConfig(), { log: false });
    await srv.ctx.pipeline.registry.get().load();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await srv?.close();
  });

  it('uploads an image, draws the masks over it and shows presence and trust per prompt', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(srv.url + '/');
    await page.setInputFiles('#image', file);
    await page.fill('#prompts', 'lungs\nheart\nbanana');
    await page.click('#run');
    await page.waitForSelector('#results:not([hidden]) tbody tr:nth-child(3)', { timeout: 30_000 });
    const rows = await page.$$eval('#results tbody tr', (trs) => trs.map((tr) => ({ verdict: (tr as HTMLElement).dataset.verdict, cells: Array.from(tr.querySelectorAll('td')).map((td) => td.textContent ?? '') })));
    expect(rows.map((r) => r.cells[0])).toEqual(['lungs', 'heart', 'banana']);
    for (const r of rows) {
      expect(['accept', 'review', 'reject']).toContain(r.verdict);
      expect(r.cells[2]).toMatch(/^\d+(\.\d)?%$/); // presence
    }
    const canvas = await page.$eval('#canvas', (c) => {
      const cv = c as HTMLCanvasElement;
      const d = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
      let tinted = 0; // the fixture is grey: any pixel with colour is overlay
      for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - d[i + 1]) > 20 || Math.abs(d[i + 1] - d[i + 2]) > 20) tinted++;
      return { w: cv.width, h: cv.height, tinted, drawn: Number(cv.dataset.drawn) };
    });
    expect([canvas.w, canvas.h]).toEqual([256, 256]);
    expect(canvas.drawn).toBeGreaterThanOrEqual(0);
    if (canvas.drawn > 0) expect(canvas.tinted).toBeGreaterThan(0);
    expect(await page.textContent('#status')).toMatch(/Done in \d+ ms/);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('shows the server error message for a file that is not an image', async () => {
    const bad = file.replace('chest.png', 'notes.png');
    writeFileSync(bad, 'this is not an image');
    const page = await browser.newPage();
    await page.goto(srv.url + '/');
    await page.setInputFiles('#image', bad);
    await page.click('#run');
    await page.waitForFunction(() => /Unsupported format/.test(document.querySelector('#status')?.textContent ?? ''), undefined, { timeout: 15_000 });
    await page.close();
  });
});
