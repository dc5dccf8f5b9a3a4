// The Compare models tab: two models over one dataset as a job (POST /v1/compare/datasets),
// drawn as the CKA heatmap (a click shows both layers' feature maps for the current picture),
// the flipped pictures (a click shows both explanations side by side, POST /v1/compare),
// per-class accuracy bars and, for two checkpoints of one architecture, drift by depth.

import { getJSON, pictureURL } from "./api.js";
import { colorbar, loadColormap } from "./colors.js";
import { $, h, JobBox, number, View } from "./dom.js";
import { DatasetJob } from "./dataset_job.js";
import { classColour, datasetReference } from "./dataset.js";

const COMPARE = "/v1/compare/datasets/{dataset}";
const PICTURE = "/v1/compare";
const FEATURE_MAPS = "/v1/models/{model}/feature-maps";
const SVG = "http://www.w3.org/2000/svg";
const FLIPS_SHOWN = 48;
const CKA_COLORMAP = "viridis";
const percent = (value) => (value === null ? "–" : `${(100 * value).toFixed(1)}%`);

function node(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
  if (text !== undefined) element.textContent = text;
  return element;
}

export class ModelsView extends View {
  constructor(app) {
    const inputs = { ma: "models-a", mb: "models-b", mset: "models-dataset", mlimit: "models-limit" };
    super(app, { id: "models", needs: [COMPARE], inputs, pane: false });
    this.figure = $("models-result");
    this.jobs = new DatasetJob(new JobBox("models-job"), $("models-cancel"), (text, error) => this.#message(text, error));
    this.results = new Map(); // "a|b|dataset|limit" -> the comparison
    $("models-run").addEventListener("click", () => this.start());
  }

  async configure() {
    try {
      this.datasets = (await getJSON("/v1/datasets")).data;
    } catch (error) {
      this.datasets = [];
      this.#message(error.message, true);
    }
    const names = this.app.models.map((m) => h("option", { value: m.name }, m.name));
    this.inputs.ma.replaceChildren(...names);
    this.inputs.mb.replaceChildren(...names.map((o) => o.cloneNode(true)));
    this.inputs.mset.replaceChildren(
      ...this.datasets.map((d) => h("option", { value: d.name }, `${d.name} (${d.size} pictures)`)),
    );
    if (this.app.state.view === this.id) this.render();
  }

  #choice() {
    const { state, models } = this.app;
    const a = state.ma || models[0]?.name || "";
    const b = state.mb || models.find((m) => m.name !== a)?.name || a;
    return { a, b, dataset: state.mset || this.datasets?.[0]?.name || "", limit: state.mlimit };
  }

  #key() {
    const { a, b, dataset, limit } = this.#choice();
    return `${a}|${b}|${dataset}|${limit}`;
  }

  render() {
    if (!this.datasets) return;
    const { a, b, dataset, limit } = this.#choice();
    Object.assign(this.inputs.ma, { value: a });
    Object.assign(this.inputs.mb, { value: b });
    Object.assign(this.inputs.mset, { value: dataset });
    this.inputs.mlimit.value = limit;
    const result = this.results.get(this.#key());
    if (result) return this.#draw(result);
    if (!this.jobs.running) this.#message(`Press “Compare” to run ${a} and ${b} over ${dataset}: a job, with progress.`);
  }

  #message(text, error = false) {
    this.figure.replaceChildren(h("p", { class: error ? "error" : "message muted", role: error ? "alert" : undefined }, text));
  }

  async start() {
    const { a, b, dataset, limit } = this.#choice();
    const key = this.#key();
    const path = COMPARE.replace("{dataset}", encodeURIComponent(dataset));
    const params = { models: `${a},${b}`, limit: limit || undefined };
    const job = await this.jobs.run(path, params, { working: `Comparing ${a} and ${b} on ${dataset}…` });
    if (!job) return;
    this.results.set(key, job.result);
    if (this.#key() === key) await this.#draw(job.result);
  }


  /** The picture the heatmap's clicks show: the portal's image, else the first compared. */
  #picture(result) {
    const image = this.app.state.image;
    return image || datasetReference(result.dataset, result.indices[0]);
  }

  async #draw(result) {
    const [a, b] = result.models;
    this.detail = h("div", { class: "models-detail", id: "models-detail" });
    const lut = await loadColormap(CKA_COLORMAP);
    const accuracy = Object.fromEntries(result.accuracy.map((row) => [row.model, row.accuracy]));
    const summary = `${a} vs ${b} on ${result.dataset}: ${result.images} pictures · accuracy ${percent(accuracy[a])} vs ${percent(accuracy[b])}` +
      ` · agreement ${percent(result.agreement)} · ${result.flips.length} flipped`;
    const unmatched = result.accuracy.some((row) => row.accuracy === null)
      ? h("p", { class: "muted small" }, "A model's labels do not match the dataset's classes: its accuracy is not shown.") : null;
    this.figure.replaceChildren(...[
      h("p", { class: "dataset-summary" }, summary), unmatched,
      h("div", { class: "columns" },
        h("div", { class: "column" }, h("h3", {}, `Linear CKA between layers (${result.pool} pooled)`), this.#heatmap(result, lut)),
        h("div", { class: "column" }, this.detail)),
      h("div", { class: "columns" },
        h("div", { class: "column" }, h("h3", {}, "Accuracy per class"), this.#bars(result)),
        result.drift.length ? h("div", { class: "column" }, h("h3", {}, "Drift by depth: mean ‖a − b‖ / ‖a‖"), this.#drift(result)) : null),
      h("h3", {}, `Flipped pictures, largest change first (${result.flips.length}): ${a}'s answer → ${b}'s`),
      this.#flips(result),
    ].filter(Boolean));
    this.detail.append(h("p", { class: "muted small" }, "Click a cell for both layers' feature maps, or a flipped picture for both explanations."));
  }

  #heatmap(result, lut) {
    const { layers_a: rows, layers_b: columns, matrix } = result.cka;
    const [a, b] = result.models;
    const colour = (value) => {
      const i = 3 * Math.min(255, Math.max(0, Math.round(value * 255)));
      return `rgb(${lut[i]} ${lut[i + 1]} ${lut[i + 2]})`;
    };
    const head = h("tr", {}, h("th", { class: "corner small" }, ""),
      ...columns.map((name) => h("th", { class: "name", title: `${b}: ${name}` }, name)));
    const body = rows.map((row, i) => h("tr", {}, h("th", { class: "name", title: `${a}: ${row}` }, row),
      ...columns.map((column, j) => {
        const value = matrix[i][j];
        const cell = h("td", {
          class: "cka-cell", dataset: { row: row, column: column }, tabindex: "0",
          title: `${a} ${row} × ${b} ${column}: CKA ${number(value)} (click: both feature maps)`,
          onclick: () => this.#featureMaps(result, row, column),
        }, value === null ? "–" : value.toFixed(2));
        if (value !== null) {
          cell.style.setProperty("background", colour(value));
          cell.style.setProperty("color", value > 0.6 ? "#1d2430" : "white");
        }
        return cell;
      })));
    return h("div", {},
      h("p", { class: "muted small" }, `rows: ${a}'s layers, columns: ${b}'s, in forward order`),
      h("div", { class: "table-wrap" }, h("table", { class: "cka" }, h("thead", {}, head), h("tbody", {}, ...body))),
      colorbar(lut, 0, 1, { label: "CKA" }));
  }

  async #featureMaps(result, layerA, layerB) {
    const [a, b] = result.models;
    const image = this.#picture(result);
    const figures = [[a, layerA], [b, layerB]].map(([model, layer]) => {
      const img = h("img", { class: "feature-map", alt: `${model} ${layer} feature maps` });
      return { model, layer, img, figure: h("figure", { class: "side" }, img, h("figcaption", { class: "small" }, `${model} · ${layer}`)) };
    });
    this.detail.replaceChildren(h("h3", {}, `Feature maps of ${image}`), h("div", { class: "side-by-side" }, ...figures.map((f) => f.figure)));
    this.detail.dataset.kind = "feature-maps";
    await Promise.all(figures.map(async ({ model, layer, img }) => {
      const path = FEATURE_MAPS.replace("{model}", encodeURIComponent(model));
      try {
        img.src = await pictureURL(path, { method: "POST", params: { layers: layer, channels: "top:8", image_id: image } });
      } catch (error) {
        img.replaceWith(h("p", { class: "error", role: "alert" }, error.message));
      }
    }));
  }

  async #explain(result, index) {
    const [a, b] = result.models;
    const image = datasetReference(result.dataset, index);
    const img = h("img", { class: "explanations", alt: `both explanations of picture ${index}` });
    this.detail.replaceChildren(h("h3", {}, `#${index}: Grad-CAM of each model's top class (${a} left, ${b} right)`), img);
    this.detail.dataset.kind = "explanations";
    try {
      img.src = await pictureURL(PICTURE, { method: "POST", params: { models: `${a},${b}`, method: "gradcam", image_id: image } });
    } catch (error) {
      img.replaceWith(h("p", { class: "error", role: "alert" }, error.message));
    }
  }

  #flips(result) {
    const grid = h("div", { class: "mistakes flips" });
    for (const flip of result.flips.slice(0, FLIPS_SHOWN)) {
      const image = h("img", { alt: `picture ${flip.index}` });
      pictureURL(`/v1/datasets/${encodeURIComponent(result.dataset)}/images/${flip.index}`)
        .then((src) => { image.src = src; }, () => { image.alt = "could not be shown"; });
      grid.append(h("button", {
        type: "button", class: "mistake flip", dataset: { index: String(flip.index) },
        title: `#${flip.index} (${flip.label}): ${result.models[0]} says ${flip.predicted_a}, ${result.models[1]} says ${flip.predicted_b}; click for both explanations`,
        onclick: () => this.#explain(result, flip.index),
      }, image, h("span", { class: "small" }, `${flip.predicted_a} → ${flip.predicted_b} (true ${flip.label})`)));
    }
    if (!result.flips.length) grid.append(h("p", { class: "muted small" }, "Both models predict the same for every picture."));
    return grid;
  }

  /** Two bars per class (first model, second model), 0 to 100%. */
  #bars(result) {
    const rows = result.per_class;
    const [a, b] = result.models;
    const left = 70, barHeight = 9, rowHeight = 24, width = 420, top = 18;
    const span = width - left - 50;
    const svg = node("svg", { viewBox: `0 0 ${width} ${top + rows.length * rowHeight + 20}`, class: "barchart class-bars", role: "img" });
    [0, 0.5, 1].forEach((tick) => {
      const x = left + tick * span;
      svg.append(node("line", { x1: x, x2: x, y1: top - 4, y2: top + rows.length * rowHeight, class: "zero" }));
      svg.append(node("text", { x, y: top - 6, "text-anchor": "middle" }, `${100 * tick}%`));
    });
    rows.forEach((row, i) => {
      const y = top + i * rowHeight;
      const group = node("g", { "data-class": row.class });
      group.append(node("text", { x: left - 6, y: y + 14, "text-anchor": "end" }, row.class));
      [[row.accuracy_a, a, 0], [row.accuracy_b, b, 1]].forEach(([value, model, k]) => {
        const bar = node("rect", { x: left, y: y + 2 + k * (barHeight + 1), height: barHeight, width: Math.max(0, (value ?? 0) * span), fill: classColour(k, 10), class: "class-bar" });
        bar.append(node("title", {}, `${model} on ${row.class}: ${percent(value)} of ${row.n}`));
        group.append(bar);
      });
      group.append(node("text", { x: left + span + 4, y: y + 14, class: "small" }, `n=${row.n}`));
      svg.append(group);
    });
    const legend = h("p", { class: "legend small" }, ...[a, b].map((model, k) =>
      h("span", { class: "swatch-item" }, h("span", { class: "swatch", style: { background: classColour(k, 10) } }), model)));
    return h("div", {}, svg, legend);
  }

  /** Drift of the layers the two models share, in forward order. */
  #drift(result) {
    const points = result.drift.filter((d) => d.drift !== null);
    const width = 420, height = 220, left = 48, bottom = 60, top = 12, right = 12;
    const high = Math.max(...points.map((p) => p.drift), 1e-9);
    const x = (i) => left + (points.length > 1 ? (i * (width - left - right)) / (points.length - 1) : 0);
    const y = (v) => top + (1 - v / high) * (height - top - bottom);
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, class: "barchart drift-curve", role: "img" });
    svg.append(node("line", { x1: left, x2: width - right, y1: y(0), y2: y(0), class: "zero" }));
    svg.append(node("line", { x1: left, x2: left, y1: top, y2: y(0), class: "zero" }));
    [0, high / 2, high].forEach((v) => svg.append(node("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end" }, number(v))));
    svg.append(node("polyline", { points: points.map((p, i) => `${x(i)},${y(p.drift)}`).join(" "), fill: "none", stroke: classColour(0, 10), "stroke-width": 2 }));
    points.forEach((p, i) => {
      const dot = node("circle", { cx: x(i), cy: y(p.drift), r: 4, fill: classColour(0, 10), class: "drift-point", "data-layer": p.layer });
      dot.append(node("title", {}, `${p.layer}: ${number(p.drift)}`));
      svg.append(dot);
      svg.append(node("text", { x: x(i), y: y(0) + 14, "text-anchor": "end", transform: `rotate(-35 ${x(i)} ${y(0) + 14})` }, p.layer));
    });
    return h("div", {}, svg, h("p", { class: "muted small" }, "layers in forward order (left: near the input); 0 means the same activations"));
  }
}
