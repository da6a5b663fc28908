// The service's page: pictures sent to POST /v1/segment, their instances drawn on a canvas in
// class colours, filtered here (minimum score, classes) without asking the service again.
'use strict';

const ALPHA = 0.5;            // a mask's fill over the picture
const SHOWN_WIDTH = 640;      // a narrower picture is shown enlarged to this many screen pixels (where the page is as wide)
// a class's colour by its index: data/visualize.py's CLASS_PALETTE (tests/serving/test_page.py holds them equal)
const PALETTE = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
  [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40],
  [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [255, 225, 25]];
const state = { classes: [], shown: new Set(), minScore: 0.3, cards: [] };

function colour(label) { return PALETTE[label % PALETTE.length]; }
function css(rgb) { return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`; }

// COCO compressed RLE counts (pycocotools' string form) -> run lengths, column-major.
function rleCounts(text) {
  const counts = [];
  for (let p = 0; p < text.length;) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// An answer's instance -> its mask as a bitmap inside its box, its area, and a canvas of its fill.
function decodeInstance(one, height) {
  const [x0, y0, x1, y1] = one.box, width = Math.max(1, x1 - x0), tall = Math.max(1, y1 - y0);
  const bits = new Uint8Array(width * tall);
  let at = 0, area = 0;
  rleCounts(one.mask.counts).forEach((run, index) => {
    if (index % 2) {
      for (let j = at; j < at + run; j++) {
        const x = Math.floor(j / height) - x0, y = j % height - y0;
        if (x >= 0 && y >= 0 && x < width && y < tall) { bits[y * width + x] = 1; area++; }
      }
    }
    at += run;
  });
  const fill = document.createElement('canvas');
  fill.width = width; fill.height = tall;
  const context = fill.getContext('2d'), pixels = context.createImageData(width, tall), rgb = colour(one.label);
  bits.forEach((bit, index) => {
    if (bit) pixels.data.set([rgb[0], rgb[1], rgb[2], 255], index * 4);
  });
  context.putImageData(pixels, 0, 0);
  const item = { ...one, bits, area, fill, width };
  item.region = largestRegion(item) || one.box;
  return item;
}

// The box [x0, y0, x1, y1] (half-open) of the largest 8-connected part of an instance's mask: where its
// caption goes, as demo.py places it (data/visualize.py's largest_region_box).
function largestRegion(item) {
  const { bits, width } = item, tall = bits.length / width, seen = new Uint8Array(bits.length);
  let best = null, bestCount = 0;
  for (let start = 0; start < bits.length; start++) {
    if (!bits[start] || seen[start]) continue;
    const stack = [start];
    let count = 0, left = width, top = tall, right = -1, bottom = -1;
    seen[start] = 1;
    while (stack.length) {
      const at = stack.pop(), x = at % width, y = (at - x) / width;
      count++;
      left = Math.min(left, x); right = Math.max(right, x); top = Math.min(top, y); bottom = Math.max(bottom, y);
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx, ny = y + dy, next = ny * width + nx;
          if (nx >= 0 && ny >= 0 && nx < width && ny < tall && bits[next] && !seen[next]) { seen[next] = 1; stack.push(next); }
        }
      }
    }
    if (count > bestCount) { best = [left, top, right + 1, bottom + 1]; bestCount = count; }
  }
  const [x0, y0] = item.box;
  return best && [x0 + best[0], y0 + best[1], x0 + best[2], y0 + best[3]];
}

// The caption rects demo.py would choose (data/visualize.py's caption_candidates and place_captions, one
// rule): for each of `shown` (best first) with its caption `size` [w, h], the first candidate around its
// largest part (above, below: left, centred, right; then inside its top-left corner) that meets no caption
// placed and hides no mask, else the one meeting the fewest caption pixels and hiding the least share of
// the masks (each mask's pixels count one over its area, so a small object stays visible).
function placeCaptions(shown, sizes, height, width) {
  const captionWeight = shown.length + 1, placed = [];
  const share = (rect) => shown.reduce((sum, item) => sum + coveredBits(item, rect) / item.area, 0);
  const overlap = (rect) => placed.reduce((sum, other) => sum + Math.max(0, Math.min(rect[2], other[2]) -
    Math.max(rect[0], other[0])) * Math.max(0, Math.min(rect[3], other[3]) - Math.max(rect[1], other[1])), 0);
  shown.forEach((item, index) => {
    const w = Math.min(sizes[index][0], width), h = Math.min(sizes[index][1], height);
    const [x0, y0, x1, y1] = item.region, corners = [];
    [y0 - h, y1].forEach((y) => [x0, Math.floor((x0 + x1 - w) / 2), x1 - w].forEach((x) => corners.push([x, y])));
    corners.push([x0, y0]);
    let best = null, bestCost = Infinity;
    corners.forEach(([x, y]) => {
      const left = Math.max(0, Math.min(x, width - w)), top = Math.max(0, Math.min(y, height - h));
      const rect = [left, top, left + w, top + h], cost = share(rect) + captionWeight * overlap(rect);
      if (cost < bestCost - 1e-9) { best = rect; bestCost = cost; }
    });
    placed.push(best);
  });
  return placed;
}

function coveredBits(item, rect) {
  const [x0, y0, x1, y1] = item.box;
  let count = 0;
  for (let y = Math.max(y0, rect[1]); y < Math.min(y1, rect[3]); y++) {
    for (let x = Math.max(x0, rect[0]); x < Math.min(x1, rect[2]); x++) count += item.bits[(y - y0) * item.width + x - x0];
  }
  return count;
}

function contains(item, x, y) {
  const [x0, y0, x1, y1] = item.box;
  return x >= x0 && y >= y0 && x < x1 && y < y1 && item.bits[(y - y0) * item.width + (x - x0)] === 1;
}

function visible(card) {
  return card.items.filter((item) => item.score >= state.minScore && state.shown.has(item.label));
}

function describe(item) {
  return `${item.name}: score ${item.score.toFixed(3)}, box [${item.box.join(', ')}], area ${item.area} px`;
}

// The marks canvas covers the picture as shown, one canvas pixel to a device pixel: its marks are drawn in
// screen pixels (lines and captions the same size whatever the picture's), at the picture's places.
function fit(card) {
  const ratio = window.devicePixelRatio || 1, width = card.marks.clientWidth, height = card.marks.clientHeight;
  card.marks.width = Math.max(1, Math.round(width * ratio));
  card.marks.height = Math.max(1, Math.round(height * ratio));
  card.shownSize = [Math.max(1, width), Math.max(1, height)];     // CSS pixels
}

function paint(card) {
  const view = card.view.getContext('2d'), marks = card.marks.getContext('2d');
  view.globalAlpha = 1;
  view.drawImage(card.bitmap, 0, 0);
  const shown = visible(card).sort((a, b) => a.score - b.score);     // the best drawn last, on top
  view.globalAlpha = ALPHA;
  shown.forEach((item) => view.drawImage(item.fill, item.box[0], item.box[1]));
  view.globalAlpha = 1;
  const [height, width] = card.answer.image_size, scale = card.shownSize[0] / width;  // screen px per picture px
  marks.setTransform(1, 0, 0, 1, 0, 0);
  marks.clearRect(0, 0, card.marks.width, card.marks.height);
  marks.setTransform(card.marks.width / card.shownSize[0], 0, 0, card.marks.height / card.shownSize[1], 0, 0);
  marks.font = '13px system-ui, sans-serif';
  shown.forEach((item) => {
    const [x0, y0, x1, y1] = item.box;
    marks.lineWidth = item === card.focused ? 4 : 1.5;
    marks.strokeStyle = css(colour(item.label));
    marks.strokeRect(x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale);
  });
  const best = [...shown].reverse(), texts = best.map((item) => `${item.name} ${item.score.toFixed(2)}`);
  const screen = texts.map((text) => [Math.ceil(marks.measureText(text).width + 6), 17]);
  const sizes = screen.map(([w, h]) => [Math.ceil(w / scale), Math.ceil(h / scale)]);    // in picture px
  const rects = placeCaptions(best, sizes, height, width);
  card.captions = best.map((item, index) => ({ text: texts[index], rect: rects[index] }));
  card.captions.forEach(({ text, rect }, index) => {
    const [left, top] = [Math.round(rect[0] * scale), Math.round(rect[1] * scale)];     // on whole screen px
    marks.fillStyle = 'rgba(0, 0, 0, 0.65)';
    marks.fillRect(left, top, screen[index][0], screen[index][1]);
    marks.fillStyle = '#fff';
    marks.fillText(text, left + 3, top + 13);
  });
  card.info.textContent = card.focused && shown.includes(card.focused) ? describe(card.focused) : '';
  return shown;
}

function draw(card) {
  listInstances(card, paint(card).reverse());
}

function listInstances(card, shown) {
  card.list.replaceChildren(...shown.map((item) => {
    const entry = document.createElement('li'), button = document.createElement('button');
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = css(colour(item.label));
    button.type = 'button';
    button.append(swatch, `${item.name} ${item.score.toFixed(2)}`);
    button.item = item;
    button.setAttribute('aria-pressed', String(item === card.focused));
    button.addEventListener('focus', () => focus(card, item));
    button.addEventListener('mouseenter', () => focus(card, item));
    entry.append(button);
    return entry;
  }));
}

function focus(card, item) {
  if (card.focused === item) return;
  card.focused = item;
  paint(card);
  card.list.querySelectorAll('button').forEach((button) => button.setAttribute('aria-pressed',
    String(button.item === item)));
}

function pointed(card, event) {
  const box = card.marks.getBoundingClientRect(), [height, width] = card.answer.image_size;
  const x = Math.floor((event.clientX - box.left) * width / box.width);
  const y = Math.floor((event.clientY - box.top) * height / box.height);
  const under = visible(card).filter((item) => contains(item, x, y)).sort((a, b) => b.score - a.score)[0];
  focus(card, under || null);
}

// The service's refusal in plain words: what happened and what to do, the service's own text only where it
// adds a figure.
async function problem(response, file) {
  let said = '';
  try { said = (await response.json()).error || ''; } catch (error) { said = ''; }
  const wait = response.headers.get('Retry-After'), size = said.match(/(\d+)x(\d+)/);
  if (response.status === 413 && file.size > state.maxBytes) {
    return `This file is too large: ${(file.size / 2 ** 20).toFixed(1)} MB, and the service takes pictures ` +
      `up to ${state.maxBytes / 2 ** 20} MB. Send a smaller file.`;
  }
  if (response.status === 413) {
    const pixels = size ? `${size[1]} x ${size[2]} pixels` : 'larger';
    return `This picture is too large: ${pixels}, and the service takes pictures up to ` +
      `${state.maxPixels / 1e6} megapixels. Shrink it and send it again.`;
  }
  if (response.status === 400 || response.status === 415) {
    return 'This file is not a picture the service can read. Send a JPEG, PNG, BMP, WebP or TIFF picture.';
  }
  if (response.status === 503) return `The service is busy. Try again in ${wait || 'a few'} seconds.`;
  if (response.status === 504 || response.status === 408) {
    return 'The service took too long to answer. Try again later, or send a smaller picture.';
  }
  return `The service could not answer (error ${response.status}). ${said}`;
}

async function segment(file, query) {
  const response = await fetch(`/v1/segment?${new URLSearchParams(query)}`, {
    method: 'POST', body: file, headers: { 'Content-Type': 'application/octet-stream' } });
  if (!response.ok) throw new Error(await problem(response, file));
  return response.json();
}

function save(name, data) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([JSON.stringify(data, null, 1)], { type: 'application/json' }));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

async function download(card, kind) {
  const stem = card.file.name.replace(/\.[^.]*$/, '') || 'picture';
  const shown = new Set(visible(card));
  if (kind === 'json') {
    const instances = card.answer.instances.filter((one, index) => shown.has(card.items[index]));
    return save(`${stem}.answer.json`, { ...card.answer, instances });
  }
  // COCO results hold every instance, as demo.py --save-json writes them: scoring them needs the low scores.
  const query = { format: kind, min_score: kind === 'coco' ? 0 : state.minScore, name: card.file.name };
  try {
    const got = await segment(card.file, query);
    if (kind === 'coco') return save(`${stem}.coco.json`, got);
    const names = new Set([...state.shown].map((label) => state.classes[label]));
    return save(`${stem}.json`, { ...got, shapes: got.shapes.filter((shape) => names.has(shape.label)) });
  } catch (error) {
    showError(card, error.message);
  }
}

function showError(card, message) {
  card.error.textContent = message;
  card.error.hidden = false;
}

// A card for `file`, put after the card `after` (the one chosen before it) or first: pictures chosen
// together keep their order, the newest choice on top.
function open(file, after) {
  const card = { file, items: [], focused: null };
  const node = document.getElementById('card').content.firstElementChild.cloneNode(true);
  ['status', 'error', 'info'].forEach((key) => { card[key] = node.querySelector(`.${key}`); });
  Object.assign(card, { node, view: node.querySelector('.view'), marks: node.querySelector('.marks'),
    list: node.querySelector('.instances'), stage: node.querySelector('.stage') });
  node.querySelector('.name').textContent = file.name;
  card.status.textContent = 'Segmenting…';
  if (after) after.node.after(node); else document.getElementById('results').prepend(node);
  segmentCard(card);
  return card;
}

async function segmentCard(card) {
  const { file, node } = card;
  try {
    const answer = await segment(file, { min_score: 0 });
    card.bitmap = await createImageBitmap(file);
    card.answer = answer;
    card.view.width = answer.image_size[1];
    card.view.height = answer.image_size[0];
    card.stage.style.width = `${Math.max(answer.image_size[1], SHOWN_WIDTH)}px`;     // pointable, at most the page
    card.items = answer.instances.map((one) => decodeInstance(one, answer.image_size[0]));
    card.status.textContent = `${answer.instances.length} instances found`;
    [card.stage, card.info, card.list, node.querySelector('.downloads')].forEach((part) => { part.hidden = false; });
    card.view.classList.toggle('enlarged', answer.image_size[1] < SHOWN_WIDTH);
    state.cards.push(card);
    fit(card);
    draw(card);
  } catch (error) {
    card.status.textContent = '';
    showError(card, error.message.startsWith('The service') || error.message.startsWith('This')
      ? error.message : 'Could not reach the service. Check that it is running, then try again.');
    return;
  }
  card.marks.addEventListener('pointermove', (event) => pointed(card, event));
  card.marks.addEventListener('pointerdown', (event) => pointed(card, event));
  card.marks.addEventListener('pointerleave', () => focus(card, null));
  node.querySelectorAll('[data-download]').forEach((button) =>
    button.addEventListener('click', () => download(card, button.dataset.download)));
}

function redraw() { state.cards.forEach(draw); }

// The page resized or zoomed (a new device pixel ratio): each card's marks fitted to their new screen size.
function refit() {
  state.cards.forEach((card) => {
    const ratio = window.devicePixelRatio || 1;
    if (card.marks.width !== Math.max(1, Math.round(card.marks.clientWidth * ratio)) ||
        card.marks.height !== Math.max(1, Math.round(card.marks.clientHeight * ratio))) {
      fit(card);
      paint(card);
    }
  });
}

function classToggles() {
  const box = document.getElementById('classes');
  state.classes.forEach((name, label) => {
    const field = document.createElement('label'), tick = document.createElement('input');
    const swatch = document.createElement('span');
    tick.type = 'checkbox';
    tick.checked = true;
    tick.value = String(label);
    tick.addEventListener('change', () => {
      if (tick.checked) state.shown.add(label); else state.shown.delete(label);
      redraw();
    });
    swatch.className = 'swatch';
    swatch.style.background = css(colour(label));
    swatch.dataset.colour = colour(label).join(',');
    field.append(tick, swatch, name);
    box.append(field);
    state.shown.add(label);
  });
}

async function connect() {
  const said = document.getElementById('model');
  try {
    const response = await fetch('/v1/model');
    if (!response.ok) {
      said.textContent = `${(await response.json()).error || 'The service is not ready'}; trying again…`;
      return setTimeout(connect, 2000);
    }
    const model = await response.json();
    state.classes = model.classes;
    state.maxBytes = model.max_body_mb * 2 ** 20;
    state.maxPixels = model.max_pixels;
    said.textContent = `Config ${model.config} (${model.config_name}) on ${model.backend}, ${model.classes.length} ` +
      `classes; pictures up to ${model.max_body_mb} MB` + (model.max_pixels ? ` and ${model.max_pixels / 1e6} MP.` : '.');
    classToggles();
  } catch (error) {
    said.textContent = 'Could not reach the service; trying again…';
    setTimeout(connect, 2000);
  }
}

function start() {
  const input = document.getElementById('files'), drop = document.getElementById('drop');
  const slider = document.getElementById('min-score'), value = document.getElementById('min-score-value');
  const openAll = (files) => files.reduce((after, file) => open(file, after), null);
  input.addEventListener('change', () => { openAll([...input.files]); input.value = ''; });
  ['dragenter', 'dragover'].forEach((name) => drop.addEventListener(name, (event) => {
    event.preventDefault(); drop.classList.add('over'); }));
  ['dragleave', 'drop'].forEach((name) => drop.addEventListener(name, () => drop.classList.remove('over')));
  drop.addEventListener('drop', (event) => { event.preventDefault(); openAll([...event.dataTransfer.files]); });
  window.addEventListener('resize', refit);
  slider.addEventListener('input', () => {
    state.minScore = Number(slider.value);
    value.textContent = state.minScore.toFixed(2);
    redraw();
  });
  connect();
}

start();
