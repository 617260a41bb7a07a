import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { startServer, type RunningServer } from '../../src/main/serve.js';
import { chestLikePng } from '../helpers/fixtures.js';
import { ctSeries } from '../helpers/dicom-fixtures.js';
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

  it('opens a DICOM series (its files), segments it and steps through its slices with the masks over them', async () => {
    const series = ctSeries(4, 64, 2.5);
    const dir = mkdtempSync(path.join(tmpdir(), 'promptseg-web-series-'));
    const files = series.files.map((f) => {
      const p = path.join(dir, f.name);
      writeFileSync(p, f.bytes);
      return p;
    });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(srv.url + '/');
    await page.setInputFiles('#volume', files);
    await page.fill('#vprompts', 'lungs');
    await page.click('#vrun');
    await page.waitForSelector('#viewer:not([hidden]) #vresults tbody tr', { timeout: 60_000 });
    expect(await page.textContent('#vstatus')).toMatch(/Done in [\d.]+ s: 64 x 64 x 4 voxels/);
    const shown = async () => page.$eval('#sliceImg', (img) => ({ slice: (img as HTMLImageElement).dataset.slice, w: (img as HTMLImageElement).naturalWidth, loaded: (img as HTMLImageElement).complete }));
    await page.waitForFunction(() => (document.getElementById('sliceImg') as HTMLImageElement).naturalWidth > 0);
    const before = await shown();
    expect(before.w).toBe(64);
    // step to another slice: a different preview is fetched and shown
    const other = before.slice === '0' ? '3' : '0';
    await page.$eval('#slice', (el, v) => {
      (el as HTMLInputElement).value = v;
      el.dispatchEvent(new Event('input'));
    }, other);
    await page.waitForFunction((v) => (document.getElementById('sliceImg') as HTMLImageElement).dataset.slice === v, other);
    expect((await shown()).slice).toBe(other);
    expect(await page.textContent('#sliceLabel')).toContain(`${other} of 0–3`);
    expect(await page.textContent('#seg')).toContain('DICOM SEG of the series');
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);

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
