// Feature maps of one layer, several layers side by side, and one channel enlarged.
//
// The server draws the panel (input on the left, one titled grid per layer); the page finds
// each tile in it from the same geometry the server uses, so a click on a tile knows its
// layer and channel.

import { h, number, pngData, ResultPane, shape } from "./dom.js";

const FEATURE_MAPS = "/v1/models/{model}/feature-maps";

// Mirrors _MARGIN, _TITLE_HEIGHT and _GAP in service/engine/render.py (tests/test_ui.py checks).
export const RENDER = Object.freeze({ MARGIN: 8, TITLE_HEIGHT: 18, GAP: 2 });

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

/**
 * Every tile of a one-image panel in panel pixels. Grids are laid right to left from the
 * panel's right edge, so the input picture's size need not be known.
 */
export function tileBoxes(layers, { panelWidth, upsample, reduce }) {
  const boxes = [];
  let right = panelWidth - RENDER.MARGIN;
  for (const layer of [...layers].reverse()) {
    const [, k, height, width] = layer.shape;
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
  };
}

function describeChannels(layer, reduce) {
  const picked = layer.channels[0] ?? [];
  const list = picked.length > 12 ? `${picked.slice(0, 12).join(", ")}, …` : picked.join(", ");
  const what = reduce === "none" ? `channels ${list}` : `${reduce} of channels ${list}`;
  return `${layer.name} [${shape(layer.layer_shape)}]: ${what}`;
}

/** Ask for feature maps as JSON, draw the panel and make every tile clickable. */
async function drawMaps(pane, app, layerNames, signal) {
  const { state } = app;
  const tiles = Math.max(
    ...layerNames.map((name) => {
      const channels = app.layer(name)?.output_shape?.[0] ?? 16;
      return state.reduce === "none" ? selectionSize(state.channels, channels) : 1;
    }),
  );
  const upsample = chooseTile(tiles, layerNames.length);
  const params = { image_id: state.image, layers: layerNames, ...mapOptions(state), upsample, format: "json" };
  const answer = await app.post(FEATURE_MAPS, params, signal);
  await pane.show({ src: pngData(answer.png_base64) });
  const width = pane.image.naturalWidth;
  const height = pane.image.naturalHeight;
  const boxes = tileBoxes(answer.layers, { panelWidth: width, upsample, reduce: answer.reduce });
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
  return null;
}

function mapKey(app, layers) {
  const { state } = app;
  return [state.model, state.image, layers.join(","), state.channels, state.reduce, state.cmap, state.scale, state.overlay].join("|");
}

export class FeatureMapsView {
  id = "maps";
  needs = [FEATURE_MAPS];

  constructor(app) {
    this.app = app;
    this.pane = new ResultPane(document.getElementById("maps-result"));
  }

  render() {
    const { state } = this.app;
    if (!state.image) return this.pane.empty("Choose an image on the left (a file, a drop, or a sample) to see its feature maps.");
    if (!state.layer) return this.pane.empty("Pick a layer in the tree.");
    const layers = [state.layer];
    return this.pane.run(mapKey(this.app, layers), (signal) => drawMaps(this.pane, this.app, layers, signal));
  }
}

export class CompareView {
  id = "compare";
  needs = [FEATURE_MAPS];

  constructor(app) {
    this.app = app;
    this.pane = new ResultPane(document.getElementById("compare-result"));
    this.list = document.getElementById("compare-list");
  }

  render() {
    const { state } = this.app;
    const layers = this.app.comparedLayers();
    this.list.replaceChildren(
      ...layers.map((name) =>
        h("button", { type: "button", class: "chip", title: "remove from the comparison", onclick: () => this.app.toggleCompare(name, false) }, `${name} ✕`),
      ),
    );
    if (!state.image) return this.pane.empty("Choose an image on the left to compare layers.");
    if (!layers.length) return this.pane.empty("Tick two or more layers in the tree.");
    return this.pane.run(mapKey(this.app, layers), (signal) => drawMaps(this.pane, this.app, layers, signal));
  }
}

/** The dialog that shows one channel (or one reduction) big, with its value range. */
export class Enlarger {
  constructor(app) {
    this.app = app;
    this.dialog = document.getElementById("enlarge");
    this.title = document.getElementById("enlarge-title");
    this.pane = new ResultPane(document.getElementById("enlarge-result"));
    this.prev = document.getElementById("enlarge-prev");
    this.next = document.getElementById("enlarge-next");
    this.prev.addEventListener("click", () => this.step(-1));
    this.next.addEventListener("click", () => this.step(1));
    this.dialog.addEventListener("keydown", (event) => {
      if (event.key === "ArrowLeft") this.step(-1);
      if (event.key === "ArrowRight") this.step(1);
    });
    this.dialog.addEventListener("close", () => this.pane.cancel());
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
    this.title.textContent = single
      ? `${this.layer} · channel ${this.channel} of ${count}`
      : `${this.layer} · ${state.reduce} of ${state.channels}`;
    const params = {
      image_id: state.image,
      layers: this.layer,
      ...mapOptions(state),
      channels: single ? String(this.channel) : state.channels,
      reduce: single ? "none" : state.reduce,
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
      this.pane.caption.textContent =
        `values from ${number(low)} to ${number(high)} (colormap ${state.cmap} spans this range) · map ${layer.shape[2]}×${layer.shape[3]}`;
      this.pane.figure.dataset.min = String(low);
      this.pane.figure.dataset.max = String(high);
      return null;
    });
  }
}
