// Feature maps of one layer, several layers side by side, and one channel enlarged.
//
// The server draws the panel (input on the left, one titled grid per layer); the page finds
// each tile in it from the same geometry the server uses, so a click on a tile knows its
// layer and channel.

import { availableWidth, colorbar, compose, fetchNpy, loadColormap, mapCanvas, range } from "./colors.js";
import { randomWeightsWarning } from "./classes.js";
import { $, h, number, pngData, ResultPane, shape, View } from "./dom.js";

const FEATURE_MAPS = "/v1/models/{model}/feature-maps";
const PREDICT = "/v1/models/{model}/predict";
const SVG = "http://www.w3.org/2000/svg";

// Mirrors _MARGIN, _TITLE_HEIGHT and _GAP in service/engine/render.py and BAR_CHART_WIDTH in
// service/engine/charts.py (tests/test_ui.py and tests/routes/test_ui_routes.py check).
export const RENDER = Object.freeze({ MARGIN: 8, TITLE_HEIGHT: 18, GAP: 2, BAR_CHART_WIDTH: 320 });

/** Python's round(): halves go to the even neighbour, as in render.tile_size. */
function roundHalfEven(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5 || (diff === 0.5 && floor % 2 === 1)) return floor + 1;
  return floor;
}

/** render.tile_size: the longer side becomes `upsample` pixels. */
export function tileSize(height, width, upsample) {
  const factor = upsample / Math.max(height, width);
  return [Math.max(1, roundHalfEven(height * factor)), Math.max(1, roundHalfEven(width * factor))];
}

/** How many maps a channel selection gives for a layer with `count` channels (a guess for lists
 *  the server will reject anyway). */
export function selectionSize(channels, count) {
  const text = channels.trim().toLowerCase();
  if (text === "all") return count;
  const match = /^(first|last|top):(\d+)$/.exec(text);
  if (match) return Math.min(Number(match[2]), count);
  let size = 0;
  for (const item of text.split(",")) {
    const range = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(item);
    if (!range) return 16;
    size += range[2] === undefined ? 1 : Math.max(0, Number(range[2]) - Number(range[1]) + 1);
  }
  return size;
}

/** Tile size in pixels: big for a few maps, small for many, smaller when layers share the row. */
export function chooseTile(tiles, layerCount = 1) {
  const base = tiles <= 1 ? 224 : tiles <= 4 ? 128 : tiles <= 16 ? 80 : tiles <= 64 ? 56 : 36;
  return layerCount > 1 ? Math.max(32, Math.round(base * 0.75)) : base;
}

/** The panel's width in pixels for tiles of `upsample` (as render_feature_maps lays it out;
 *  `inputSide` is the longer side of the model input). */
export function panelWidth(layers, upsample, reduce, inputSide = Infinity) {
  let width = RENDER.MARGIN;
  let tallest = 0;
  for (const layer of layers) {
    const [k, height, width_] = layer.spatial_shape ?? [1, 1, 1];
    if (reduce === "none" && height === 1 && width_ === 1) {
      width += RENDER.BAR_CHART_WIDTH + RENDER.MARGIN;
      tallest = Math.max(tallest, Math.min(k, 24) * 14 + 20);
      continue;
    }
    const count = reduce === "none" ? layer.tiles : 1;
    const [th, tw] = tileSize(height, width_, upsample);
    const columns = Math.max(1, Math.min(Math.ceil(Math.sqrt(count)), count));
    const rows = Math.ceil(count / columns);
    width += columns * tw + (columns - 1) * RENDER.GAP + RENDER.MARGIN;
    tallest = Math.max(tallest, rows * th + (rows - 1) * RENDER.GAP);
  }
  const side = Math.min(320, Math.max(128, tallest));
  const input = inputSide < 128 ? side : Math.min(side, inputSide); // input_side()
  return width + input + RENDER.MARGIN;
}

/** The largest tile size (up to twice chooseTile's) whose panel fits in `available` pixels:
 *  the panels use the width they have and are never shrunk by the browser. */
export function fittingTile(layers, reduce, available, inputSide = Infinity) {
  const tiles = Math.max(...layers.map((l) => (reduce === "none" ? l.tiles : 1)));
  let upsample = Math.min(256, 2 * chooseTile(tiles, layers.length));
  while (upsample > 16 && panelWidth(layers, upsample, reduce, inputSide) > available) upsample -= 2;
  return upsample;
}

/**
 * Every tile of a one-image panel in panel pixels. Grids are laid right to left from the
 * panel's right edge, so the input picture's size need not be known.
 */
export function tileBoxes(layers, { panelWidth, upsample, reduce }) {
  const boxes = [];
  let right = panelWidth - RENDER.MARGIN;
  for (const layer of [...layers].reverse()) {
    const [, k, height, width] = layer.shape;
    if (reduce === "none" && height === 1 && width === 1) {
      right -= RENDER.BAR_CHART_WIDTH + RENDER.MARGIN; // a vector is drawn as a bar chart
      continue;
    }
    const count = reduce === "pca" ? 1 : k;
    const [th, tw] = tileSize(height, width, upsample);
    const columns = Math.max(1, Math.min(Math.ceil(Math.sqrt(count)), count));
    const gridWidth = columns * tw + (columns - 1) * RENDER.GAP;
    const left = right - gridWidth;
    for (let i = 0; i < count; i++) {
      boxes.push({
        layer,
        index: i,
        x: left + (i % columns) * (tw + RENDER.GAP),
        y: RENDER.MARGIN + RENDER.TITLE_HEIGHT + Math.floor(i / columns) * (th + RENDER.GAP),
        w: tw,
        h: th,
      });
    }
    right = left - RENDER.MARGIN;
  }
  return boxes;
}

function mapOptions(state) {
  return {
    channels: state.channels,
    reduce: state.reduce,
    colormap: state.cmap,
    scale: state.scale,
    overlay: state.overlay === "1" ? "true" : undefined,
    // Tiles are laid out from the maps' own shape (tileBoxes), so overlays stay on the model
    // input rather than the upload's geometry.
    canvas: state.overlay === "1" ? "input" : undefined,
    // No numbers drawn over the tiles (they hid each map's corner) and no colorbar in the
    // picture: the page draws the colorbars and names each tile on hover.
    labels: "false",
  };
}

/** One colorbar per layer of a feature-map answer, in the values' units where one scale
 *  applies (a shared scale, a single map), else from each tile's min to its max. */
async function layerColorbars(answer, state) {
  if (answer.reduce === "pca") return [];
  const lut = await loadColormap(state.cmap);
  return answer.layers
    .filter((layer) => !(answer.reduce === "none" && layer.shape[2] === 1 && layer.shape[3] === 1))
    .map((layer) => {
      const low = Math.min(...layer.min[0]);
      const high = Math.max(...layer.max[0]);
      const perTile = state.scale === "channel" && layer.min[0].length > 1;
      return colorbar(lut, low, high, { label: layer.name, ends: perTile ? ["tile min", "tile max"] : null });
    });
}

function describeChannels(layer, reduce) {
  const picked = layer.channels[0] ?? [];
  const list = picked.length > 12 ? `${picked.slice(0, 12).join(", ")}, …` : picked.join(", ");
  const what = reduce === "none" ? `channels ${list}` : `${reduce} of channels ${list}`;
  return `${layer.name} [${shape(layer.layer_shape)}]: ${what}`;
}

/** Ask for feature maps as JSON (and, for one layer, the values as npy), draw the panel at
 *  its own size, make every tile clickable and read the value under the cursor. */
async function drawMaps(pane, app, layerNames, signal) {
  const { state } = app;
  const layers = layerNames.map((name) => {
    const info = app.layer(name);
    const channels = info?.spatial_shape?.[0] ?? info?.output_shape?.[0] ?? 16;
    return { spatial_shape: info?.spatial_shape, tiles: selectionSize(state.channels, channels) };
  });
  const inputSide = Math.max(...(app.model?.input_size ?? [Infinity]));
  const upsample = fittingTile(layers, state.reduce, availableWidth(pane.figure), inputSide);
  const params = { image_id: state.image, layers: layerNames, ...mapOptions(state), upsample, format: "json" };
  const values = layerNames.length === 1 && state.reduce !== "pca"
    ? fetchNpy(app, FEATURE_MAPS, params, signal).catch(() => null) // hover only: never fails the view
    : Promise.resolve(null);
  const answer = await app.post(FEATURE_MAPS, params, signal);
  await pane.show({ src: pngData(answer.png_base64) });
  const width = pane.image.naturalWidth;
  const height = pane.image.naturalHeight;
  const boxes = tileBoxes(answer.layers, { panelWidth: width, upsample, reduce: answer.reduce });
  app.forwardOrder = new Map(answer.layers.map((l, i) => [l.name, i])); // the server's order
  app.gridRanges = new Map(answer.layers.map((l) => [l.name, [Math.min(...l.min[0]), Math.max(...l.max[0])]]));
  pane.hotspots.replaceChildren(
    ...boxes.map(({ layer, index, x, y, w, h: boxHeight }) => {
      const channel = answer.reduce === "none" ? layer.channels[0][index] : null;
      const range = answer.reduce === "pca"
        ? "3 principal components as RGB"
        : `min ${number(layer.min[0][index])} · max ${number(layer.max[0][index])}`;
      const what = channel === null ? `${answer.reduce} of ${layer.channels[0].length} channels` : `channel ${channel}`;
      return h("button", {
        type: "button",
        class: "tile",
        title: `${layer.name} · ${what} · ${range} — click to enlarge`,
        "aria-label": `enlarge ${layer.name} ${what}`,
        dataset: { layer: layer.name, channel: channel ?? "" },
        style: {
          left: `${(100 * x) / width}%`,
          top: `${(100 * y) / height}%`,
          width: `${(100 * w) / width}%`,
          height: `${(100 * boxHeight) / height}%`,
        },
        onclick: () => app.enlarge(layer.name, channel),
      });
    }),
  );
  pane.caption.textContent = answer.layers.map((l) => describeChannels(l, answer.reduce)).join(" · ");
  pane.scale.replaceChildren(...(await layerColorbars(answer, state)));
  const npy = await values;
  if (npy && !signal.aborted) {
    const [, k, mapHeight, mapWidth] = npy.shape;
    pane.hover = (px, py) => {
      const box = boxes.find((b) => px >= b.x && px < b.x + b.w && py >= b.y && py < b.y + b.h);
      if (!box) return null;
      const col = Math.min(mapWidth - 1, Math.floor(((px - box.x) * mapWidth) / box.w));
      const row = Math.min(mapHeight - 1, Math.floor(((py - box.y) * mapHeight) / box.h));
      const value = npy.data[(box.index * mapHeight + row) * mapWidth + col];
      const what = answer.reduce === "none"
        ? `channel ${box.layer.channels[0][box.index]}`
        : `${answer.reduce} of ${box.layer.channels[0].length} channels`;
      return `${box.layer.name} · ${what} · x ${col}, y ${row}: ${number(value)}`;
    };
    pane.figure.dataset.values = String(k);
  }
  return null;
}

/** A vector (a 1x1 map or a linear output) as a sorted bar chart of its values. */
async function drawVector(pane, app, name, signal) {
  const { state } = app;
  const info = app.layer(name);
  const params = { image_id: state.image, layers: name, channels: "all", reduce: "none" };
  const npy = await fetchNpy(app, FEATURE_MAPS, params, signal);
  const values = npy.data.slice(0, npy.shape[1]);
  const names = await classNames(app, info, values.length, signal);
  const order = [...values.keys()].sort((a, b) => values[b] - values[a]);
  const top = order.slice(0, 20);
  const total = values.length;
  pane.frame.hidden = true;
  pane.scale.replaceChildren();
  pane.hover = null;
  // Class scores are predictions: a model without trained weights says so here too.
  const warning = names ? randomWeightsWarning(app.model) : null;
  pane.extra.replaceChildren(...[warning, barChart(top.map((i) => ({ index: i, value: values[i], label: names?.[i] })), availableWidth(pane.figure))].filter(Boolean));
  const [low, high] = range(values);
  pane.caption.textContent =
    `${name} [${shape(info?.output_shape)}]: a vector of ${total} values, not a map; ` +
    `${top.length < total ? `the ${top.length} largest` : "all"}, sorted · values from ${number(low)} to ${number(high)}`;
  pane.message.hidden = true;
  return null;
}

/** Class names for the classifier's output (its last layer, one value per class). */
async function classNames(app, info, count, signal) {
  const last = app.layers[app.layers.length - 1];
  if (!info || info !== last || count !== app.model.num_classes) return null;
  const answer = await app.post(PREDICT, { image_id: app.state.image, top_k: count }, signal);
  const names = [];
  for (const row of answer.predictions[0]) names[row.class_index] = row.label;
  return names;
}

/** An SVG bar chart: one labelled bar per item, positive right of zero, negative left. */
export function barChart(items, available) {
  const width = Math.min(720, Math.max(320, available));
  const row = 20;
  const labelWidth = 150;
  const valueWidth = 64;
  const height = items.length * row + 8;
  const low = Math.min(0, ...items.map((i) => i.value));
  const high = Math.max(0, ...items.map((i) => i.value));
  const span = high - low || 1;
  const x = (v) => labelWidth + ((v - low) / span) * (width - labelWidth - valueWidth);
  const svg = document.createElementNS(SVG, "svg");
  const node = (tag, attributes, text) => {
    const element = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
    if (text !== undefined) element.textContent = text;
    return element;
  };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("class", "barchart");
  items.forEach((item, i) => {
    const y = 4 + i * row;
    const name = !item.label ? `channel ${item.index}`
      : item.label === String(item.index) ? `class ${item.index}` : `${item.index} ${item.label}`;
    const g = node("g", { class: item.value >= 0 ? "bar-row positive" : "bar-row negative", "data-index": item.index, "data-value": item.value });
    g.append(
      node("title", {}, `${name}: ${item.value}`),
      node("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end", class: "bar-name" }, name.length > 22 ? `${name.slice(0, 21)}…` : name),
      node("rect", { x: Math.min(x(0), x(item.value)), y: y + 3, width: Math.max(1, Math.abs(x(item.value) - x(0))), height: row - 6 }),
      node("text", { x: width - valueWidth + 4, y: y + 14, class: "bar-value" }, number(item.value)),
    );
    svg.append(g);
  });
  svg.append(node("line", { x1: x(0), x2: x(0), y1: 0, y2: height, class: "zero" }));
  return svg;
}

/** True when the catalog says the layer's output is a vector: no map to draw. */
export function isVector(info) {
  const shape_ = info?.spatial_shape;
  return Boolean(shape_) && shape_[1] === 1 && shape_[2] === 1;
}

function mapKey(app, layers) {
  const { state } = app;
  return [state.model, state.image, layers.join(","), state.channels, state.reduce, state.cmap, state.scale, state.overlay].join("|");
}

export class FeatureMapsView extends View {
  constructor(app) {
    super(app, { id: "maps", needs: [FEATURE_MAPS] });
  }

  render() {
    const { state } = this.app;
    if (!state.image) return this.pane.empty("Choose an image on the left (a file, a drop, or a sample) to see its feature maps.");
    if (!state.layer) return this.pane.empty("Pick a layer in the tree.");
    const layers = [state.layer];
    const info = this.app.layer(state.layer);
    if (info && !info.spatial_shape) return this.pane.empty(`${state.layer} has no output that can be drawn (${shape(info.output_shape)}).`);
    if (isVector(info)) {
      return this.pane.run(`vector|${state.model}|${state.image}|${state.layer}`, (signal) => drawVector(this.pane, this.app, state.layer, signal));
    }
    return this.pane.run(mapKey(this.app, layers), (signal) => drawMaps(this.pane, this.app, layers, signal));
  }
}

export class CompareView extends View {
  constructor(app) {
    super(app, { id: "compare", needs: [FEATURE_MAPS] });
    this.list = $("compare-list");
  }

  render() {
    const { state } = this.app;
    const layers = this.app.comparedLayers();
    this.#chips(layers);
    if (!state.image) return this.pane.empty("Choose an image on the left to compare layers.");
    if (!layers.length) return this.pane.empty("Tick two or more layers in the tree.");
    return this.pane.run(mapKey(this.app, layers), async (signal) => {
      await drawMaps(this.pane, this.app, layers, signal);
      this.#chips(layers); // now in the forward order the server reported
      return null;
    });
  }

  /** One chip per compared layer, in forward order; the full name in the tooltip. */
  #chips(names) {
    const order = this.app.forwardOrder;
    const layers = order && names.every((n) => order.has(n))
      ? [...names].sort((a, b) => order.get(a) - order.get(b))
      : names;
    this.list.replaceChildren(
      ...layers.map((name) =>
        h("button", { type: "button", class: "chip", dataset: { layer: name }, title: `${name}: remove from the comparison`, onclick: () => this.app.toggleCompare(name, false) }, `${name} ✕`),
      ),
    );
  }
}

/** The dialog that shows one channel (or one reduction) big, with its value range. */
export class Enlarger {
  constructor(app) {
    this.app = app;
    this.dialog = $("enlarge");
    this.title = $("enlarge-title");
    this.pane = new ResultPane($("enlarge-result"));
    this.prev = $("enlarge-prev");
    this.next = $("enlarge-next");
    this.prev.addEventListener("click", () => this.step(-1));
    this.next.addEventListener("click", () => this.step(1));
    this.dialog.addEventListener("keydown", (event) => {
      if (event.key === "ArrowLeft") this.step(-1);
      if (event.key === "ArrowRight") this.step(1);
    });
    this.dialog.addEventListener("close", () => {
      this.pane.cancel();
      this.app.unitPage?.hide();
    });
  }

  open(layer, channel) {
    this.layer = layer;
    this.channel = channel;
    if (!this.dialog.open) this.dialog.showModal();
    this.draw();
  }

  step(delta) {
    if (this.channel === null || this.channel === undefined) return;
    const count = this.app.layer(this.layer)?.output_shape?.[0] ?? 1;
    this.channel = (this.channel + delta + count) % count;
    this.draw();
  }

  draw() {
    const { state } = this.app;
    const single = this.channel !== null && this.channel !== undefined;
    const count = this.app.layer(this.layer)?.output_shape?.[0];
    this.prev.hidden = this.next.hidden = !single;
    if (single) this.app.unitPage?.show(this.layer, this.channel);
    else this.app.unitPage?.hide();
    this.title.textContent = single
      ? `${this.layer} · channel ${this.channel} of ${count}`
      : `${this.layer} · ${state.reduce} of ${state.channels}`;
    if (!single && state.reduce === "pca") return this.#drawReduced(); // RGB: no one scale
    const params = single
      ? { image_id: state.image, layers: this.layer, channels: String(this.channel), reduce: "none" }
      : { image_id: state.image, layers: this.layer, channels: state.channels, reduce: state.reduce };
    this.pane.run(`${state.model}|${state.image}|${state.cmap}|${state.scale}|${JSON.stringify(params)}`, async (signal) => {
      const [npy, lut] = await Promise.all([fetchNpy(this.app, FEATURE_MAPS, params, signal), loadColormap(state.cmap)]);
      const [, , height, width] = npy.shape;
      const [low, high] = range(npy.data);
      // The grid's shared scale, when it has one, so a channel looks as bright here as there.
      const shared = state.scale === "shared" ? this.app.gridRanges?.get(this.layer) : null;
      const [from, to] = shared ?? [low, high];
      // Full resolution: every value at least one whole pixel, enlarged by a whole factor.
      const room = Math.min(720, Math.floor(window.innerWidth * 0.9) - 40);
      const factor = Math.max(1, Math.floor(room / width));
      const map = mapCanvas(npy.data, 0, height, width, lut, from, to);
      await this.pane.show({ src: compose(map, { width: width * factor, smooth: false }) });
      this.pane.scale.replaceChildren(colorbar(lut, from, to, { label: shared ? "the grid's shared scale" : "" }));
      this.pane.hover = (x, y) => {
        const col = Math.min(width - 1, Math.floor(x / factor));
        const row = Math.min(height - 1, Math.floor(y / factor));
        return `x ${col}, y ${row}: ${number(npy.data[row * width + col])}`;
      };
      this.pane.caption.textContent =
        `values from ${number(low)} to ${number(high)}` +
        (shared ? ` (colours span the grid's shared scale ${number(from)} to ${number(to)})` : ` (colormap ${state.cmap} spans this range)`) +
        ` · map ${height}×${width}, ${factor}× enlarged, one square per value`;
      this.pane.figure.dataset.min = String(low);
      this.pane.figure.dataset.max = String(high);
      return null;
    });
  }

  /** PCA enlarged: the server's RGB picture at full size. */
  #drawReduced() {
    const { state } = this.app;
    const params = {
      image_id: state.image,
      layers: this.layer,
      ...mapOptions(state),
      upsample: 320,
      labels: "false",
      format: "json",
    };
    this.pane.run(JSON.stringify(params), async (signal) => {
      const answer = await this.app.post(FEATURE_MAPS, params, signal);
      const layer = answer.layers[0];
      await this.pane.show({ src: pngData(answer.png_base64) });
      const low = Math.min(...layer.min[0]);
      const high = Math.max(...layer.max[0]);
      this.pane.caption.textContent = state.reduce === "pca"
        ? `the first 3 principal components as red, green and blue · map ${layer.shape[2]}×${layer.shape[3]}`
        : `values from ${number(low)} to ${number(high)} (colormap ${state.cmap} spans this range) · map ${layer.shape[2]}×${layer.shape[3]}`;
      this.pane.figure.dataset.min = String(low);
      this.pane.figure.dataset.max = String(high);
      return null;
    });
  }
}
