/**
 * The page people use: pick an image, type prompts, see each mask in its own colour over the
 * image with presence and trust figures, and download the masks. Plain HTML and script, served
 * by the app itself, so it needs no network beyond this server.
 */
export const WEB_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>promptseg</title>
<style>
  body { font: 15px system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
  header { padding: .8rem 1.2rem; background: #1d1d1d; border-bottom: 1px solid #333; }
  header b { font-size: 1.2rem; } header span { color: #aaa; margin-left: .6rem; }
  main { display: grid; grid-template-columns: 320px 1fr; gap: 1.2rem; padding: 1.2rem; }
  label { display: block; margin: .7rem 0 .2rem; color: #bbb; }
  textarea, input[type=text], input[type=password], input[type=number] { width: 100%; box-sizing: border-box; background: #222; color: #eee; border: 1px solid #444; padding: .4rem; }
  button { margin-top: 1rem; padding: .5rem 1.2rem; background: #2b6cb0; color: white; border: 0; cursor: pointer; font-size: 1rem; }
  button:disabled { background: #555; }
  #stage { position: relative; display: inline-block; max-width: 100%; }
  #stage canvas { max-width: 100%; height: auto; display: block; }
  #vform { margin-top: 1.5rem; border-top: 1px solid #333; padding-top: .5rem; }
  #slice { width: 100%; } #sliceImg { image-rendering: pixelated; width: 384px; max-width: 100%; margin-top: .5rem; }
  table { border-collapse: collapse; margin-top: 1rem; width: 100%; }
  td, th { border-bottom: 1px solid #333; padding: .35rem .5rem; text-align: left; vertical-align: top; }
  .swatch { display: inline-block; width: .9rem; height: .9rem; border-radius: 2px; vertical-align: middle; margin-right: .3rem; }
  .accept { color: #6f6; } .review { color: #fc3; } .reject { color: #f66; }
  #status { color: #aaa; margin-top: .6rem; min-height: 1.2rem; }
  .note { color: #888; font-size: .85rem; margin-top: 1.5rem; }
  a { color: #8cf; }
</style>
</head>
<body>
<header><b>promptseg</b><span>text-prompted medical image segmentation with trust figures</span></header>
<main>
  <div>
  <form id="form">
    <label for="image">Image (PNG, JPEG, WebP, TIFF, DICOM, 2D NIfTI)</label>
    <input id="image" name="image" type="file" accept="image/*,.dcm,.nii,.gz,application/dicom">
    <label for="prompts">Prompts, one per line</label>
    <textarea id="prompts" name="prompts" rows="4">left lung
right lung
heart</textarea>
    <label for="threshold">Threshold (empty: each structure's threshold fitted on val, else 0.5)</label>
    <input id="threshold" type="number" min="0.05" max="0.95" step="0.05" placeholder="fitted">
    <label for="token">API token (only if the server needs one)</label>
    <input id="token" type="password" autocomplete="off">
    <button id="run" type="submit">Segment</button>
    <div id="status" role="status"></div>
  </form>
  <form id="vform">
    <label for="volume">Volume or DICOM series: a .nii / .nii.gz, a .zip of a series, or the series' files</label>
    <input id="volume" type="file" multiple accept=".nii,.gz,.zip,.dcm,application/dicom,application/zip">
    <label for="folder">or a folder holding one series</label>
    <input id="folder" type="file" webkitdirectory multiple>
    <label for="vprompts">Prompts, one per line</label>
    <textarea id="vprompts" rows="2">lungs
heart</textarea>
    <button id="vrun" type="submit">Segment volume</button>
    <div id="vstatus" role="status"></div>
    <p class="note">Structures the model knows: <a href="/v1/structures" target="_blank">/v1/structures</a>. API: <a href="/docs">/docs</a>. Research use only; not for clinical decisions.</p>
  </form>
  </div>
  <section>
    <div id="stage"><canvas id="canvas" width="1" height="1"></canvas></div>
    <div id="viewer" hidden>
      <label for="slice">Slice <span id="sliceLabel"></span></label>
      <input id="slice" type="range" min="0" max="0" value="0">
      <div><img id="sliceImg" alt="the slice with the masks over it"></div>
      <table id="vresults">
        <thead><tr><th>prompt</th><th>volume (mm³)</th><th>slices where found</th><th>verdicts (accept / review / reject)</th><th>mask</th></tr></thead>
        <tbody></tbody>
      </table>
      <p id="seg"></p>
    </div>
    <table id="results" hidden>
      <thead><tr><th>prompt</th><th>verdict</th><th>presence</th><th>quality</th><th>area (px)</th><th>reasons</th><th>mask</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
const COLOURS = [[255,64,64],[64,200,255],[255,200,0],[120,255,120],[255,80,255],[255,140,40],[160,120,255],[0,255,200]];
const $ = (id) => document.getElementById(id);
const status = (t) => { $('status').textContent = t; };
function authHeaders() { const t = $('token').value.trim(); return t ? { authorization: 'Bearer ' + t } : {}; }
function loadImage(src) { return new Promise((res, rej) => { const i = new Image(); i.onload = () => res(i); i.onerror = rej; i.src = src; }); }
async function fetchBlob(url) { const r = await fetch(url, { headers: authHeaders() }); if (!r.ok) throw new Error('mask download failed: ' + r.status); return r.blob(); }
$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const file = $('image').files[0];
  if (!file) { status('Choose an image first.'); return; }
  const prompts = $('prompts').value.split(/\\n|,/).map((s) => s.trim()).filter(Boolean);
  if (!prompts.length) { status('Type at least one prompt.'); return; }
  const fd = new FormData();
  fd.append('image', file);
  for (const p of prompts) fd.append('prompt', p);
  if ($('threshold').value !== '') fd.append('threshold', $('threshold').value);
  fd.append('overlay', 'true'); // the server's rendering stands in for files the browser cannot show (DICOM, NIfTI)
  $('run').disabled = true; status('Segmenting…');
  try {
    const r = await fetch('/v1/segment', { method: 'POST', body: fd, headers: authHeaders() });
    const body = await r.json();
    if (!r.ok) { status((body.title || 'Error') + ': ' + (body.detail || r.status)); return; }
    await draw(file, body);
    status('Done in ' + Object.values(body.timings_ms).reduce((a, b) => a + b, 0).toFixed(0) + ' ms (' + body.model + ').');
  } catch (e) { status('Failed: ' + e.message); }
  finally { $('run').disabled = false; }
});
async function draw(file, body) {
  let img;
  try { img = await loadImage(URL.createObjectURL(file)); }
  catch { img = await loadImage('data:image/png;base64,' + body.overlay_png_base64); }
  const c = $('canvas'); c.width = body.width; c.height = body.height;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0, body.width, body.height);
  const base = g.getImageData(0, 0, body.width, body.height);
  const tbody = $('results').querySelector('tbody'); tbody.innerHTML = '';
  for (const res of body.results) {
    const col = COLOURS[res.index % COLOURS.length];
    if (res.mask_produced) {
      const m = await loadImage(URL.createObjectURL(await fetchBlob(res.mask_url)));
      const off = document.createElement('canvas'); off.width = body.width; off.height = body.height;
      const og = off.getContext('2d'); og.drawImage(m, 0, 0);
      const md = og.getImageData(0, 0, body.width, body.height).data;
      for (let i = 0; i < md.length; i += 4) if (md[i] > 127) {
        base.data[i] = base.data[i] * 0.55 + col[0] * 0.45; base.data[i+1] = base.data[i+1] * 0.55 + col[1] * 0.45; base.data[i+2] = base.data[i+2] * 0.55 + col[2] * 0.45;
      }
    }
    const tr = document.createElement('tr');
    tr.dataset.verdict = res.verdict;
    const cells = [
      '<span class="swatch"></span>' + escapeHtml(res.prompt),
      '<span class="' + res.verdict + '">' + res.verdict + '</span>',
      (res.presence * 100).toFixed(1) + '%',
      res.predicted_quality.toFixed(2),
      String(res.area_px),
      res.reasons.map((x) => escapeHtml(x.message)).join('<br>') || '–',
      res.mask_produced ? '<a href="#" data-url="' + res.mask_url + '" data-name="mask-' + res.index + '.png">PNG</a>' : '–',
    ];
    tr.innerHTML = cells.map((x) => '<td>' + x + '</td>').join('');
    tr.querySelector('.swatch').style.background = 'rgb(' + col.join(',') + ')'; // set through the DOM: the page's CSP allows no inline style attributes
    tbody.appendChild(tr);
  }
  g.putImageData(base, 0, 0);
  c.dataset.drawn = String(body.results.filter((r) => r.mask_produced).length);
  $('results').hidden = false;
}
$('results').addEventListener('click', async (ev) => {
  const a = ev.target.closest('a[data-url]'); if (!a) return;
  ev.preventDefault();
  const blob = await fetchBlob(a.dataset.url);
  const link = document.createElement('a'); link.href = URL.createObjectURL(blob); link.download = a.dataset.name; link.click();
});
$('vform').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const files = [...$('volume').files, ...$('folder').files].filter((f) => !f.name.startsWith('.'));
  if (!files.length) { $('vstatus').textContent = 'Choose a volume, a zip of a series, its files or its folder first.'; return; }
  const prompts = $('vprompts').value.split(/\\n|,/).map((s) => s.trim()).filter(Boolean);
  if (!prompts.length) { $('vstatus').textContent = 'Type at least one prompt.'; return; }
  const fd = new FormData();
  for (const f of files) fd.append('image', f, f.name);
  for (const p of prompts) fd.append('prompt', p);
  fd.append('previews', 'true');
  $('vrun').disabled = true; $('vstatus').textContent = 'Segmenting ' + (files.length > 1 ? files.length + ' files' : files[0].name) + '…';
  try {
    const r = await fetch('/v1/segment-volume', { method: 'POST', body: fd, headers: authHeaders() });
    const body = await r.json();
    if (!r.ok) { $('vstatus').textContent = (body.title || 'Error') + ': ' + (body.detail || r.status); return; }
    showVolume(body);
    $('vstatus').textContent = 'Done in ' + (body.timings_ms.total / 1000).toFixed(1) + ' s: ' + body.dims.join(' x ') + ' voxels.';
  } catch (e) { $('vstatus').textContent = 'Failed: ' + e.message; }
  finally { $('vrun').disabled = false; }
});
let volume;
function showVolume(body) {
  volume = body;
  const [first, last] = body.slices;
  const found = body.results.flatMap((r) => r.slices_present);
  const start = found.length ? found[Math.floor(found.length / 2)] : first;
  $('slice').min = String(first); $('slice').max = String(last); $('slice').value = String(start);
  const tbody = $('vresults').querySelector('tbody'); tbody.innerHTML = '';
  for (const res of body.results) {
    const tr = document.createElement('tr');
    const v = res.verdicts;
    const cells = [
      '<span class="swatch"></span>' + escapeHtml(res.prompt),
      res.volume_mm3.toFixed(0),
      res.slices_present.length ? res.slices_present[0] + '–' + res.slices_present[res.slices_present.length - 1] + ' (' + res.slices_present.length + ')' : 'none',
      v.accept + ' / ' + v.review + ' / ' + v.reject,
      '<a href="#" data-url="' + res.mask_url + '" data-name="mask-' + res.index + '.nii.gz">NIfTI</a>',
    ];
    tr.innerHTML = cells.map((x) => '<td>' + x + '</td>').join('');
    tr.querySelector('.swatch').style.background = 'rgb(' + COLOURS[res.index % COLOURS.length].join(',') + ')';
    tbody.appendChild(tr);
  }
  $('seg').innerHTML = body.dicom_seg_url ? '<a href="#" data-url="' + body.dicom_seg_url + '" data-name="seg.dcm">DICOM SEG of the series</a>' : '';
  $('viewer').hidden = false;
  return showSlice();
}
async function showSlice() {
  const k = $('slice').value;
  $('sliceLabel').textContent = k + ' of ' + volume.slices[0] + '–' + volume.slices[1];
  const blob = await fetchBlob(volume.previews_url.replace('{k}', k));
  $('sliceImg').src = URL.createObjectURL(blob);
  $('sliceImg').dataset.slice = k;
}
$('slice').addEventListener('input', () => { showSlice().catch((e) => { $('vstatus').textContent = 'Failed: ' + e.message; }); });
$('viewer').addEventListener('click', async (ev) => {
  const a = ev.target.closest('a[data-url]'); if (!a) return;
  ev.preventDefault();
  const blob = await fetchBlob(a.dataset.url);
  const link = document.createElement('a'); link.href = URL.createObjectURL(blob); link.download = a.dataset.name; link.click();
});
function escapeHtml(s) { return s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]); }
</script>
</body>
</html>
`;
