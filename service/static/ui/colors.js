// Values as colours, drawn by the page from the API's npy answers: colormaps (the server's own
// lookup tables), colorbars with ticks in the values' units, maps and overlays on a canvas at
// the size they are shown, and the value under the cursor.

import { request } from "./api.js";
import { h, number } from "./dom.js";

const luts = new Map();

/** A matplotlib colormap as 256 RGB rows, from the server (cached per page). */
export function loadColormap(name) {
  if (!luts.has(name)) {
    const lut = request(`/ui/colormaps/${encodeURIComponent(name)}`)
      .then((r) => r.json())
      .then((body) => Uint8ClampedArray.from(body.lut.flat()));
    lut.catch(() => luts.delete(name));
    luts.set(name, lut);
  }
  return luts.get(name);
}

/** Round ticks (1, 2, 2.5 or 5 times a power of ten) inside [low, high]: charts.nice_ticks. */
export function niceTicks(low, high, count = 5) {
  if (!Number.isFinite(low) || !Number.isFinite(high)) return [];
  if (high < low) [low, high] = [high, low];
  if (high === low) return [low];
  const raw = (high - low) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw * (1 - 1e-9));
  const ticks = [];
  for (let value = Math.ceil(low / step - 1e-9) * step; value <= high + step * 1e-9; value += step) {
    ticks.push(Math.abs(value) < step * 1e-9 ? 0 : Number(value.toPrecision(12)));
  }
  return ticks;
}

/** An npy file (little-endian float32, C order) as {shape, data: Float32Array}. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.slice(1, 6));
  if (bytes[0] !== 0x93 || magic !== "NUMPY") throw new Error("The server's array is not an npy file.");
  const view = new DataView(buffer);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.slice(start, start + headerLength));
  if (!header.includes("'<f4'") || header.includes("'fortran_order': True")) {
    throw new Error(`Unexpected npy layout: ${header.trim()}`);
  }
  const shape = /'shape': \(([^)]*)\)/.exec(header)[1].split(",").filter((s) => s.trim()).map(Number);
  const data = new Float32Array(buffer.slice(start + headerLength));
  return { shape, data };
}

/** POST for format=npy and parse the answer. */
export async function fetchNpy(app, template, params, signal) {
  const response = await app.withImage(() =>
    request(app.path(template), { method: "POST", params: { ...params, format: "npy" }, signal }),
  );
  return parseNpy(await response.arrayBuffer());
}

/** Min and max of a typed array (or of a [start, start + length) slice of it). */
export function range(data, start = 0, length = data.length - start) {
  let low = Infinity;
  let high = -Infinity;
  for (let i = start; i < start + length; i++) {
    const v = data[i];
    if (v < low) low = v;
    if (v > high) high = v;
  }
  return [low, high];
}

/**
 * A colorbar: the colormap from `low` to `high` and ticks in the values' units, as HTML text
 * (sharp at any zoom). `ends` labels only the ends instead (tiles each on their own range).
 */
export function colorbar(lut, low, high, { ends = null, marks: given = null, label = "" } = {}) {
  const strip = h("canvas", { class: "strip", width: 256, height: 1, "aria-hidden": "true" });
  const context = strip.getContext("2d");
  const row = context.createImageData(256, 1);
  for (let i = 0; i < 256; i++) row.data.set([lut[3 * i], lut[3 * i + 1], lut[3 * i + 2], 255], 4 * i);
  context.putImageData(row, 0, 0);
  const span = high - low;
  const marks = given ?? (ends
    ? [[0, ends[0]], [1, ends[1]]]
    : span > 0
      ? niceTicks(low, high, 5).map((v) => [(v - low) / span, number(v)])
      : [[0, number(low)]]);
  const ticks = h("div", { class: "ticks" },
    ...marks.map(([fraction, text]) =>
      h("span", { class: "tick", style: { left: `${(100 * fraction).toFixed(2)}%` } }, text)),
  );
  return h("div", {
    class: "colorbar",
    dataset: { low: String(low), high: String(high) },
    title: ends ? "each tile is scaled to its own minimum and maximum" : `colours span ${number(low)} to ${number(high)}`,
  }, label ? h("span", { class: "bar-label small muted" }, label) : null, h("div", { class: "cbar" }, strip, ticks));
}

/**
 * One map [height, width] (a view into `data` at `offset`) coloured through `lut` between
 * `low` and `high`, as an off-screen canvas at the map's own size.
 */
export function mapCanvas(data, offset, height, width, lut, low, high) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const span = high - low;
  for (let i = 0; i < height * width; i++) {
    const unit = span > 0 ? (data[offset + i] - low) / span : 0;
    const index = 3 * Math.min(255, Math.max(0, Math.round(unit * 255)));
    image.data[4 * i] = lut[index];
    image.data[4 * i + 1] = lut[index + 1];
    image.data[4 * i + 2] = lut[index + 2];
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

/**
 * The picture at its display size: `map` (a canvas) scaled to `width` pixels wide, over
 * `background` (an image or canvas) with opacity `alpha` when given. Small maps are enlarged
 * pixel for pixel (`smooth` false) so each value stays one visible square. Returns a PNG data
 * URL, shown by an <img> at exactly this size.
 */
export function compose(map, { width, background = null, alpha = 1, smooth = false }) {
  const height = Math.round((width * map.height) / map.width);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  if (background) {
    context.imageSmoothingEnabled = true;
    context.drawImage(background, 0, 0, width, height);
    context.globalAlpha = alpha;
  }
  context.imageSmoothingEnabled = smooth;
  context.drawImage(map, 0, 0, width, height);
  return canvas.toDataURL("image/png");
}

/** Load an image from a URL (data, blob or same-origin) and wait until it is decoded. */
export async function loadImage(src) {
  const image = new Image();
  image.src = src;
  await image.decode();
  return image;
}

/** A region of a picture as a canvas: e.g. the input picture inside a server panel. */
export function crop(image, x, y, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(image, x, y, width, height, 0, 0, width, height);
  return canvas;
}

/** The pixel width a figure can show without scrolling. */
export function availableWidth(figure, fallback = 480) {
  const width = figure.clientWidth || figure.parentElement?.clientWidth || fallback;
  return Math.max(120, Math.floor(width) - 4);
}
