// Insight views, each shown when the server offers its endpoint: layer statistics, a layer's
// filters, and the optimization jobs (activation maximization, feature inversion) with a
// progress bar.

import { followJob, pictureURL, request } from "./api.js";
import { colorbar, loadColormap, parseNpy } from "./colors.js";
import { $, h, JobBox, number, pngData, shape, View } from "./dom.js";

const STATS = "/v1/models/{model}/stats";
const FILTERS = "/v1/models/{model}/layers/{layer}/filters";
const MAXIMIZE = "/v1/models/{model}/layers/{layer}/maximize";
const INVERT = "/v1/models/{model}/layers/{layer}/invert";
const EMBEDDING = "/v1/models/{model}/embedding";
const SVG = "http://www.w3.org/2000/svg";

const percent = (value) => `${(100 * value).toFixed(1)}%`;
const bar = (fraction) => h("span", { class: "bar" }, h("span", { style: { width: percent(fraction) } }));

const STAT_COLUMNS = [
  // [key, heading, title, value of a layer for sorting]
  ["order", "#", "forward order", (l, i) => i],
  ["name", "layer", "", (l) => l.name],
  ["type", "type", "", (l) => l.type],
  ["mean", "mean", "mean activation", (l) => l.mean],
  ["std", "std", "standard deviation", (l) => l.std],
  ["max", "max", "largest activation", (l) => l.max],
  ["sparsity", "≤ 0", "share of activations zero or less", (l) => l.sparsity],
  ["dead", "dead channels", "share of channels never above zero; only after a ReLU-like nonlinearity", (l) => l.dead_fraction ?? -1],
  ["histogram", "histogram", "every activation of this image in 32 bins", null],
];

/** A small SVG histogram; `big` adds axis labels in the values' units. */
export function histogram({ edges, counts }, { width = 120, height = 28, big = false } = {}) {
  const svg = document.createElementNS(SVG, "svg");
  const pad = big ? 22 : 0;
  svg.setAttribute("viewBox", `0 0 ${width} ${height + pad}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height + pad));
  svg.setAttribute("class", big ? "histogram big" : "histogram");
  const top = Math.max(1, ...counts);
  const step = width / counts.length;
  counts.forEach((count, i) => {
    const bar = document.createElementNS(SVG, "rect");
    const barHeight = count ? Math.max(1, (count / top) * height) : 0;
    bar.setAttribute("x", String(i * step));
    bar.setAttribute("y", String(height - barHeight));
    bar.setAttribute("width", String(Math.max(1, step - 1)));
    bar.setAttribute("height", String(barHeight));
    bar.setAttribute("class", edges[i + 1] <= 0 ? "nonpositive" : "positive");
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${number(edges[i])} to ${number(edges[i + 1])}: ${count}`;
    bar.append(title);
    svg.append(bar);
  });
  if (big) {
    for (const [x, value, anchor] of [[0, edges[0], "start"], [width, edges[edges.length - 1], "end"]]) {
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", String(x));
      text.setAttribute("y", String(height + 16));
      text.setAttribute("text-anchor", anchor);
      text.textContent = number(value);
      svg.append(text);
    }
  }
  return svg;
}

export class StatsView extends View {
  constructor(app) {
    super(app, { id: "stats", needs: [STATS] });
    this.sort = { key: "order", descending: false };
  }

  render() {
    const { state } = this.app;
    if (!state.image) return this.pane.empty("Choose an image on the left to see activation statistics for every layer.");
    const key = `${state.model}|${state.image}`;
    if (this.pane.figure.dataset.key === key) return this.#draw();
    return this.pane.run(key, async (signal) => {
      this.answer = await this.app.post(STATS, { image_id: state.image, format: "json" }, signal);
      this.#draw();
      return null;
    });
  }

  #draw() {
    const layers = this.answer?.layers ?? [];
    const [key, , , value] = STAT_COLUMNS.find(([k]) => k === this.sort.key);
    const rows = layers.map((layer, index) => ({ layer, index, value: value(layer, index) }));
    rows.sort((a, b) => {
      const order = typeof a.value === "string" ? a.value.localeCompare(b.value) : a.value - b.value;
      return this.sort.descending ? -order : order;
    });
    const head = h("tr", {}, ...STAT_COLUMNS.map(([column, text, title, sortable]) =>
      h("th", {
        title: sortable ? `${title ? `${title} · ` : ""}click to sort` : title,
        class: sortable ? "sortable" : "",
        "aria-sort": column === key ? (this.sort.descending ? "descending" : "ascending") : undefined,
        dataset: { column },
        onclick: sortable ? () => {
          this.sort = { key: column, descending: column === this.sort.key ? !this.sort.descending : column !== "order" && column !== "name" && column !== "type" };
          this.#draw();
        } : undefined,
      }, text, column === key ? (this.sort.descending ? " ▼" : " ▲") : "")));
    const body = rows.map(({ layer, index }) =>
      h("tr", { dataset: { layer: layer.name }, title: `${layer.name}: show this layer`, onclick: () => this.app.selectLayer(layer.name) },
        h("td", { class: "num" }, String(index)),
        h("td", { class: "name" }, layer.name),
        h("td", {}, layer.type),
        h("td", { class: "num" }, number(layer.mean)),
        h("td", { class: "num" }, number(layer.std)),
        h("td", { class: "num" }, number(layer.max)),
        h("td", { class: "num" }, bar(layer.sparsity), ` ${percent(layer.sparsity)}`),
        layer.dead_fraction === null || layer.dead_fraction === undefined
          ? h("td", { class: "num muted", title: "not after a ReLU-like nonlinearity: “never above zero” means nothing here" }, "–")
          : h("td", { class: "num" }, bar(layer.dead_fraction), ` ${percent(layer.dead_fraction)}`),
        h("td", {}, layer.histogram ? histogram(layer.histogram) : ""),
      ));
    this.table = h("table", { class: "stats sortable" }, h("thead", {}, head), h("tbody", {}, ...body));
    const selected = layers.find((l) => l.name === this.app.state.layer);
    const detail = selected?.histogram
      ? h("div", { class: "histogram-detail" }, h("h3", {}, `${selected.name}: activations of this image`),
        histogram(selected.histogram, { width: 360, height: 90, big: true }))
      : null;
    this.pane.extra.replaceChildren(...[detail, h("div", { class: "table-wrap" }, this.table)].filter(Boolean));
    this.pane.caption.textContent = `${layers.length} layers over ${this.answer?.images ?? 0} image · click a row to select the layer, a heading to sort`;
    for (const row of this.table.querySelectorAll("tr[data-layer]")) {
      row.classList.toggle("selected", row.dataset.layer === this.app.state.layer);
    }
  }
}

export class FiltersView extends View {
  httpMethod = "get"; // of `needs`; the others are POST

  constructor(app) {
    super(app, { id: "filters", needs: [FILTERS], inputs: { fscale: "filter-scale", fview: "filter-view" } });
    this.channels = $("filter-channels");
    this.channels.addEventListener("change", () => app.update({ fchannels: this.channels.value.trim() || "first:64" }));
  }

  configure(caps) {
    const choices = caps.choices(FILTERS, "view", ["auto", "rgb", "mean", "inputs"], "get");
    this.inputs.fview.replaceChildren(...choices.map((value) => h("option", { value }, value)));
    const scales = caps.choices(FILTERS, "scale", ["channel", "shared"], "get");
    this.inputs.fscale.replaceChildren(...scales.map((value) => h("option", { value }, value)));
  }

  render() {
    const { state } = this.app;
    this.channels.value = state.fchannels;
    this.inputs.fview.value = state.fview;
    this.inputs.fscale.value = state.fscale;
    if (!state.layer) return this.pane.empty("Pick a convolution in the tree to see its filters.");
    // No numbers drawn on the tiles: a badge would hide a 3x3 kernel's corner weight.
    const params = { format: "png", channels: state.fchannels, view: state.fview, scale: state.fscale, upsample: 56, labels: "false" };
    const path = this.app.path(FILTERS);
    return this.pane.run(`${path}|${JSON.stringify(params)}`, async (signal) => {
      const [src, weights, lut] = await Promise.all([
        pictureURL(path, { params, signal }),
        request(path, { params: { format: "npy", channels: state.fchannels }, signal }).then(async (r) => parseNpy(await r.arrayBuffer())),
        loadColormap("RdBu_r"),
      ]);
      const [count, inputs] = weights.shape;
      const view = state.fview === "auto" ? (inputs === 3 ? "rgb" : "mean") : state.fview;
      await this.pane.show({ src, objectURL: true });
      const shared = state.fscale === "shared";
      const reach = shared && view === "mean" ? meanReach(weights) : null;
      const what = {
        rgb: "each kernel's weights on the red, green and blue inputs as colour; mid-grey is 0",
        mean: `each kernel's mean over its ${inputs} inputs, RdBu_r centred on 0`,
        inputs: "one row per filter, one tile per input, RdBu_r centred on 0",
      }[view];
      const scaled = shared ? "one scale for all tiles" : "each tile scaled to its largest |weight|";
      this.pane.caption.textContent =
        `${state.layer}: ${count} filters (${state.fchannels}) in reading order, ${what}; ${scaled}. Hover a tile for its filter number.`;
      if (view !== "rgb") {
        this.pane.scale.replaceChildren(reach !== null
          ? colorbar(lut, -reach, reach, { label: "weight" })
          : colorbar(lut, -1, 1, {
              label: "weight",
              marks: [[0, shared ? "−max |w|" : "−tile max |w|"], [0.5, "0"], [1, shared ? "+max |w|" : "+tile max |w|"]],
            }));
      }
      this.#hotspots(weights.shape);
      const channels = expandChannels(state.fchannels, weights.shape[0]);
      this.pane.hover = view === "inputs" ? null : (x, y) => filterValue(weights, view, x, y, channels);
      return null;
    });
  }

  /** One tooltip per tile, from the grid's geometry in insight/filters.py and draw.titled:
   *  the grid at (8, 28), tiles of the kernel enlarged by ceil(56 / kernel), 2 px apart. */
  #hotspots(shape) {
    const [count, , kh, kw] = shape;
    const width = this.pane.image.naturalWidth;
    const height = this.pane.image.naturalHeight;
    const columns = Math.max(1, Math.min(Math.ceil(Math.sqrt(count)), count));
    const channels = expandChannels(this.app.state.fchannels, count);
    this.pane.hotspots.replaceChildren();
    if (this.app.state.fview === "inputs" || !channels) return;
    const kernel = Math.max(kh, kw);
    const factor = Math.max(1, Math.ceil(56 / kernel));
    const [tileH, tileW] = [kh * factor, kw * factor];
    this.pane.hotspots.append(...channels.map((channel, i) => h("span", {
      class: "tile passive",
      title: `filter ${channel}`,
      dataset: { filter: String(channel) },
      style: {
        left: `${(100 * (8 + (i % columns) * (tileW + 2))) / width}%`,
        top: `${(100 * (28 + Math.floor(i / columns) * (tileH + 2))) / height}%`,
        width: `${(100 * tileW) / width}%`,
        height: `${(100 * tileH) / height}%`,
      },
    })));
  }
}

/** The weight under the cursor in the rgb or mean view's grid (geometry as in #hotspots). */
function filterValue({ shape, data }, view, x, y, channels) {
  const [count, inputs, kh, kw] = shape;
  const columns = Math.max(1, Math.min(Math.ceil(Math.sqrt(count)), count));
  const factor = Math.max(1, Math.ceil(56 / Math.max(kh, kw)));
  const [tileH, tileW] = [kh * factor + 2, kw * factor + 2];
  const column = Math.floor((x - 8) / tileW);
  const row = Math.floor((y - 28) / tileH);
  const kx = Math.floor(((x - 8) % tileW) / factor);
  const ky = Math.floor(((y - 28) % tileH) / factor);
  const index = row * columns + column;
  if (x < 8 || y < 28 || column >= columns || index >= count || kx >= kw || ky >= kh) return null;
  const weight = (i) => data[((index * inputs + i) * kh + ky) * kw + kx];
  const where = `filter ${channels ? channels[index] : `#${index + 1} shown`} · kernel x ${kx}, y ${ky}`;
  if (view === "rgb") return `${where}: R ${number(weight(0))}, G ${number(weight(1))}, B ${number(weight(2))}`;
  let sum = 0;
  for (let i = 0; i < inputs; i++) sum += weight(i);
  return `${where}: mean weight ${number(sum / inputs)}`;
}

/** Largest |mean over inputs| of a weight [out, in, kh, kw] (the mean view's shared scale). */
function meanReach({ shape, data }) {
  const [count, inputs, kh, kw] = shape;
  let reach = 0;
  for (let o = 0; o < count; o++) {
    for (let k = 0; k < kh * kw; k++) {
      let sum = 0;
      for (let i = 0; i < inputs; i++) sum += data[((o * inputs + i) * kh * kw) + k];
      reach = Math.max(reach, Math.abs(sum / inputs));
    }
  }
  return reach;
}

/** The channel numbers of a first/last/list selection (null for top:N, ranked by the server). */
function expandChannels(text, count) {
  const first = /^first:(\d+)$/.exec(text);
  if (first) return [...Array(count).keys()];
  if (/^(last|top):/.test(text) || text === "all") return text === "all" ? [...Array(count).keys()] : null;
  const picked = [];
  for (const item of text.split(",")) {
    const range = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(item);
    if (!range) return null;
    const end = range[2] === undefined ? Number(range[1]) : Number(range[2]);
    for (let c = Number(range[1]); c <= end; c++) picked.push(c);
  }
  return picked.length === count ? picked : null;
}

/** Activation maximization and feature inversion run as jobs: progress bar, cancel, result. */
export class SynthesisView extends View {
  constructor(app) {
    super(app, { id: "synthesis", needs: [MAXIMIZE, INVERT], inputs: { unit: "synth-channel", steps: "synth-steps" } });
    this.maximizeButton = $("maximize-run");
    this.invertButton = $("invert-run");
    this.cancelButton = $("job-cancel");
    this.job = new JobBox("job");
    this.maximizeButton.addEventListener("click", () => this.start("maximize"));
    this.invertButton.addEventListener("click", () => this.start("invert"));
    this.cancelButton.addEventListener("click", () => this.cancel());
  }

  configure(caps) {
    this.maximizeButton.hidden = !caps.has(MAXIMIZE);
    this.invertButton.hidden = !caps.has(INVERT);
  }

  #hint() {
    const { state } = this.app;
    const lines = [];
    if (!this.maximizeButton.hidden) {
      lines.push(`Maximize: the picture that excites channel ${state.unit} of ${state.layer || "a layer"} most.`);
    }
    if (!this.invertButton.hidden) lines.push("Invert: the picture your image's features at that layer describe.");
    lines.push("These run as jobs, with a progress bar.");
    return lines.join(" ");
  }

  render() {
    const { state } = this.app;
    this.inputs.unit.value = state.unit;
    this.inputs.steps.value = state.steps;
    const count = this.app.layer(state.layer)?.output_shape?.[0];
    this.inputs.unit.max = count ? String(count - 1) : "";
    this.invertButton.disabled = !state.image;
    if (!this.pane.controller && !this.pane.figure.dataset.key) {
      this.pane.empty(this.#hint());
    }
  }

  async start(kind) {
    const { state } = this.app;
    if (!state.layer) return this.pane.fail(new Error("Pick a layer in the tree first."));
    const params = { steps: state.steps, format: "json", async: "true" };
    if (kind === "maximize") params.channel = state.unit;
    else params.image_id = state.image;
    const path = this.app.path(kind === "maximize" ? MAXIMIZE : INVERT);
    const what = kind === "maximize" ? `channel ${state.unit} of ${state.layer}` : `${state.layer}'s features`;
    this.job.start("submitting…");
    // Never leave the previous result on screen under the new job's progress.
    this.pane.empty(`${kind === "maximize" ? "Maximizing" : "Inverting"} ${what}…`);
    this.cancelButton.hidden = false;
    await this.pane.run(`${kind}|${path}|${JSON.stringify(params)}|${Date.now()}`, async (signal) => {
      const response = await this.app.withImage(() => request(path, { method: "POST", params, signal }));
      let result;
      if (response.status === 202) {
        this.location = response.headers.get("Location");
        const job = await followJob(this.location, { signal, onProgress: (job) => this.#progress(job) });
        result = job.result;
      } else {
        result = await response.json();
      }
      this.location = null;
      const detail = kind === "maximize"
        ? `activation ${number(result.activation)} (noise gives ${number(result.noise_activation)})`
        : `feature distance down ${percent(result.distance_drop)}`;
      return { src: pngData(result.png_base64), caption: `${kind} ${what}, ${result.steps} steps · ${detail}` };
    });
    this.cancelButton.hidden = true;
    if (!this.pane.errorBox.hidden) this.job.say("failed");
  }

  #progress(job) {
    const running = job.status === "running" && job.eta_s !== null && job.eta_s !== undefined;
    const eta = running ? `, about ${Math.ceil(job.eta_s)} s left` : "";
    this.job.show(job, `${job.status}: step ${job.progress.step} of ${job.progress.total}${eta}`);
  }

  async cancel() {
    const location = this.location;
    this.pane.cancel();
    this.cancelButton.hidden = true;
    this.job.say("cancelled");
    this.pane.empty("Cancelled.");
    if (location) await request(location, { method: "DELETE" }).catch(() => {});
  }
}

/** Your image among the built-in samples, as 2-D points from the model's features. */
export class EmbeddingView extends View {
  constructor(app) {
    super(app, { id: "embedding", needs: [EMBEDDING], inputs: { embed: "embed-method", elayer: "embed-layer" } });
  }

  configure(caps) {
    const choices = caps.choices(EMBEDDING, "method", ["pca", "tsne"]);
    this.inputs.embed.replaceChildren(...choices.map((value) => h("option", { value }, value)));
  }

  render() {
    const { state } = this.app;
    this.inputs.embed.value = state.embed;
    this.inputs.elayer.value = state.elayer;
    if (!state.image) return this.pane.empty("Choose an image on the left to see where the model puts it among the samples.");
    const layer = state.elayer === "selected" ? state.layer : "";
    const params = { method: state.embed, layer, format: "json" };
    const key = `${state.model}|${state.image}|${JSON.stringify(params)}`;
    return this.pane.run(key, async (signal) => {
      this.references ??= request("/ui/references").then((r) => r.json()).then((b) => b.data);
      const references = await this.references;
      const points = [
        ...this.app.samples.filter((s) => s.name !== state.sample).map((s) => ({
          name: s.name, url: s.url, sample: true,
          label: s.name.replace(/^digit-\d+-label(\d+)\.png$/, "$1").replace(/\.jpg$/, ""),
        })),
        ...references.map((r) => ({ name: r.name, url: r.url, sample: false, label: r.label })),
      ];
      const form = new FormData();
      for (const point of points) form.append("image", await this.app.sampleBlob(point.name), point.name);
      const labels = points.map((p) => p.label);
      const mine = this.app.picture;
      if (mine) {
        form.append("image", mine.blob, mine.name);
        labels.push("your image");
      }
      form.append("labels", labels.join(","));
      const response = await request(this.app.path(EMBEDDING), { method: "POST", params, body: form, signal });
      const answer = response.status === 202
        ? (await followJob(response.headers.get("Location"), { signal })).result
        : await response.json();
      this.#draw(answer, points, Boolean(mine));
      return null;
    });
  }

  #draw(answer, points, withMine) {
    const width = 640, height = 440, pad = 44;
    const node = (tag, attributes = {}, text) => {
      const element = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
      if (text !== undefined) element.textContent = text;
      return element;
    };
    const xs = answer.points.map((p) => p[0]), ys = answer.points.map((p) => p[1]);
    const scale = (values, size) => {
      const low = Math.min(...values), span = Math.max(...values) - low || 1;
      return (v) => pad + ((v - low) / span) * (size - 2 * pad);
    };
    const x = scale(xs, width), y = scale(ys, height);
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, class: "embedding", role: "img" });
    svg.append(node("rect", { x: 0.5, y: 0.5, width: width - 1, height: height - 1, class: "frame" }));
    const colour = (label) => (/^\d$/.test(label) ? PALETTE[Number(label)] : "#667085");
    const order = answer.points.map((_, i) => i).sort((a, b) => Number(points[a]?.sample ?? 2) - Number(points[b]?.sample ?? 2));
    for (const index of order) {
      const [px, py] = answer.points[index];
      const cx = x(px), cy = height - y(py);
      const point = points[index];
      const label = answer.labels?.[index] ?? String(index);
      const title = node("title", {}, point ? `${label} (${point.name})` : label);
      if (!point) {
        const mine = node("g", { class: "point mine", "data-label": label });
        const right = cx > width - 110;
        mine.append(title, node("circle", { cx, cy, r: 10 }),
          node("text", { x: right ? cx - 14 : cx + 14, y: cy + 4, "text-anchor": right ? "end" : "start", class: "mine-label" }, "your image"));
        svg.append(mine);
      } else if (point.sample) {
        const g = node("g", { class: "point sample", "data-label": label });
        g.append(title,
          node("rect", { x: cx - 20, y: cy - 20, width: 40, height: 40, fill: colour(label), class: "thumb-frame" }),
          node("image", { href: point.url, x: cx - 18, y: cy - 18, width: 36, height: 36 }));
        svg.append(g);
      } else {
        const g = node("g", { class: "point reference", "data-label": label });
        g.append(title, node("circle", { cx, cy, r: 7, fill: colour(label) }),
          node("text", { x: cx, y: cy + 3.5, "text-anchor": "middle", class: "dot-label" }, label));
        svg.append(g);
      }
    }
    const legend = node("g", { class: "legend" });
    PALETTE.forEach((fill, digit) => {
      legend.append(node("circle", { cx: 14 + digit * 26, cy: 14, r: 7, fill }),
        node("text", { x: 14 + digit * 26, y: 17.5, "text-anchor": "middle", class: "dot-label" }, String(digit)));
    });
    svg.append(legend);
    const variance = answer.explained_variance
      ? ` · axes explain ${answer.explained_variance.map((v) => percent(v)).join(" and ")} of the variance`
      : "";
    this.pane.extra.replaceChildren(svg);
    this.pane.caption.textContent =
      `${answer.method} of ${answer.count} images by their features at ${answer.layer} (${answer.feature_dim} values): ` +
      `thumbnails are the samples, dots more digits, coloured by class${variance}` +
      (withMine ? "" : " · choose your image again to place it too");
  }
}

// matplotlib's tab10: one colour per digit class.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
