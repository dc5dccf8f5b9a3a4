// The Dataset tab: the model over a whole dataset, run as a job. The embedding scatter (coloured
// by true or predicted class; a click opens that picture in every tab), the mistakes sorted by
// confidence, the confusion matrix and each layer's histogram and dead units over the set.

import { getJSON, pictureURL } from "./api.js";
import { DatasetJob } from "./dataset_job.js";
import { $, h, JobBox, number, View } from "./dom.js";
import { histogram } from "./insight.js";

const ANALYSIS = "/v1/models/{model}/datasets/{dataset}/analysis";
const SVG = "http://www.w3.org/2000/svg";
const MISTAKES_SHOWN = 48;
// matplotlib's tab10, then evenly spaced hues for larger class counts.
const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const percent = (value) => `${(100 * value).toFixed(1)}%`;

export const classColour = (index, count) =>
  count <= TAB10.length ? TAB10[index] : `hsl(${Math.round((360 * index) / count)} 65% 45%)`;

/** `dataset:NAME/INDEX`, the image reference every endpoint takes. */
export const datasetReference = (dataset, index) => `dataset:${dataset}/${index}`;

function node(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
  if (text !== undefined) element.textContent = text;
  return element;
}

export class DatasetView extends View {
  constructor(app) {
    const inputs = { dset: "dataset-name", dmethod: "dataset-method", dlimit: "dataset-limit", dcolour: "dataset-colour" };
    super(app, { id: "dataset", needs: [ANALYSIS], inputs, pane: false });
    this.figure = $("dataset-result");
    this.run = $("dataset-run");
    this.jobs = new DatasetJob(new JobBox("dataset-job"), $("dataset-cancel"), (text, error) => this.#message(text, error));
    this.results = new Map(); // "model|dataset|method|limit" -> the analysis
    this.run.addEventListener("click", () => this.start());
  }

  async configure(caps) {
    const methods = caps.choices(ANALYSIS, "method", ["tsne", "pca"]);
    this.inputs.dmethod.replaceChildren(...methods.map((value) => h("option", { value }, value)));
    try {
      this.datasets = (await getJSON("/v1/datasets")).data;
    } catch (error) {
      this.datasets = [];
      this.#message(error.message, true);
    }
    this.inputs.dset.replaceChildren(
      ...this.datasets.map((d) => h("option", { value: d.name }, `${d.name} (${d.size} pictures, ${d.classes.length} classes)`)),
    );
    if (this.app.state.view === "dataset") this.render();
  }

  #key() {
    const { state } = this.app;
    return `${state.model}|${state.dset || this.datasets?.[0]?.name}|${state.dmethod}|${state.dlimit}`;
  }

  render() {
    const { state } = this.app;
    if (!this.datasets) return;
    this.inputs.dset.value = state.dset || this.datasets[0]?.name || "";
    this.inputs.dmethod.value = state.dmethod;
    this.inputs.dlimit.value = state.dlimit;
    this.inputs.dcolour.value = state.dcolour;
    const result = this.results.get(this.#key());
    if (result) return this.#draw(result);
    if (!this.jobs.running) this.#message(`Press “Analyse” to run ${state.model} over the dataset: a job, with progress.`);
  }

  #message(text, error = false) {
    this.figure.replaceChildren(h("p", { class: error ? "error" : "message muted", role: error ? "alert" : undefined }, text));
  }

  async start() {
    const { state } = this.app;
    const dataset = this.inputs.dset.value;
    const key = this.#key();
    const path = this.app.path(ANALYSIS).replace("{dataset}", encodeURIComponent(dataset));
    const params = { method: state.dmethod, limit: state.dlimit || undefined };
    const working = `Analysing ${dataset} with ${state.model}…`;
    const job = await this.jobs.run(path, params, { working, onProgress: (j) => this.#progress(j) });
    if (!job) return;
    this.results.set(key, job.result);
    this.figure.dataset.key = key;
    if (this.#key() === key) this.#draw(job.result);
  }

  #progress(job) {
    const total = job.progress.total;
    const tail = job.progress.step >= total && job.status === "running" ? " · projecting…" : "";
    this.jobs.box.show(job, `${job.status}: ${job.progress.step} of ${total} pictures${tail}`);
  }


  /** Open a picture of the dataset in every tab. */
  open(result, index) {
    this.app.useDatasetImage(result.dataset, index);
  }

  #draw(result) {
    const parts = [
      h("p", { class: "dataset-summary" }, this.#summary(result)),
      h("div", { class: "columns" },
        h("div", { class: "column" }, h("h3", {}, `Embedding (${result.embedding.method} of ${result.embedding.layer}, pooled)`), this.#scatter(result)),
        result.confusion ? h("div", { class: "column" }, h("h3", {}, "Confusion (rows: true, columns: predicted)"), this.#confusion(result)) : null),
      result.misclassified ? h("h3", {}, `Mistakes, most confident first (${result.misclassified.length})`) : null,
      result.misclassified ? this.#mistakes(result) : null,
      h("h3", {}, "Layers over the set"),
      this.#layers(result),
    ];
    this.figure.replaceChildren(...parts.filter(Boolean));
  }

  #summary(result) {
    const accuracy = result.accuracy === null
      ? "the class names do not match the model's labels: no accuracy or mistakes"
      : `accuracy ${percent(result.accuracy)}`;
    const skipped = result.skipped.length ? ` · ${result.skipped.length} unreadable file(s) skipped` : "";
    return `${result.model} on ${result.dataset}: ${result.images} pictures · ${accuracy}${skipped} · click a point or a mistake to open it in every tab`;
  }

  #scatter(result) {
    const width = 560, height = 420, pad = 16;
    const { points } = result.embedding;
    const byPredicted = this.app.state.dcolour === "predicted" && result.predicted;
    const classes = byPredicted ? result.predicted : result.labels;
    const span = (axis) => {
      const values = points.map((p) => p[axis]);
      const low = Math.min(...values), range = Math.max(...values) - low || 1;
      return (v) => pad + ((v - low) / range) * ((axis ? height : width) - 2 * pad);
    };
    const x = span(0), y = span(1);
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, class: "embedding dataset-scatter", role: "img" });
    svg.append(node("rect", { x: 0.5, y: 0.5, width: width - 1, height: height - 1, class: "frame" }));
    points.forEach(([px, py], i) => {
      const index = result.indices[i];
      const wrong = result.predicted && result.predicted[i] !== result.labels[i];
      const label = result.classes[result.labels[i]];
      const guess = result.predicted ? ` · predicted ${result.classes[result.predicted[i]]}` : "";
      const dot = node("circle", {
        cx: x(px), cy: height - y(py), r: wrong ? 4 : 3, fill: classColour(classes[i], result.classes.length),
        class: wrong ? "point wrong" : "point", "data-index": index,
      });
      dot.append(node("title", {}, `#${index}: ${label}${guess}`));
      dot.addEventListener("click", () => this.open(result, index));
      svg.append(dot);
    });
    const legend = h("p", { class: "legend small" }, ...result.classes.map((name, i) =>
      h("span", { class: "swatch-item" }, h("span", { class: "swatch", style: { background: classColour(i, result.classes.length) } }), name)));
    const note = byPredicted || !result.predicted ? "" : " · larger dots are mistakes";
    return h("div", {}, svg, legend, h("p", { class: "muted small" }, `coloured by ${byPredicted ? "predicted" : "true"} class${note}`));
  }

  #confusion(result) {
    const matrix = result.confusion;
    const head = h("tr", {}, h("th", {}, ""), ...result.classes.map((name) => h("th", { title: `predicted ${name}` }, name)));
    const rows = matrix.map((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      return h("tr", {}, h("th", { title: `true ${result.classes[i]}` }, result.classes[i]), ...row.map((count, j) => {
        const share = count / total;
        const cell = h("td", { class: i === j ? "diagonal" : count ? "off" : "", title: `true ${result.classes[i]}, predicted ${result.classes[j]}: ${count}` }, count ? String(count) : "");
        cell.style.setProperty("--share", String(share));
        return cell;
      }));
    });
    return h("div", { class: "table-wrap" }, h("table", { class: "confusion" }, h("thead", {}, head), h("tbody", {}, ...rows)));
  }

  #mistakes(result) {
    const grid = h("div", { class: "mistakes" });
    for (const mistake of result.misclassified.slice(0, MISTAKES_SHOWN)) {
      const image = h("img", { alt: `picture ${mistake.index}` });
      const path = `/v1/datasets/${encodeURIComponent(result.dataset)}/images/${mistake.index}`;
      pictureURL(path).then((src) => { image.src = src; }, () => { image.alt = "could not be shown"; });
      grid.append(h("button", {
        type: "button", class: "mistake", dataset: { index: String(mistake.index) },
        title: `#${mistake.index}: open in every tab`, onclick: () => this.open(result, mistake.index),
      }, image, h("span", { class: "small" },
        `${result.classes[mistake.label]} → ${result.classes[mistake.predicted]} ${percent(mistake.probability)}`)));
    }
    return grid;
  }

  #layers(result) {
    const head = h("tr", {}, ...["layer", "type", "shape", "dead units", "≤ 0", "mean", "std", "histogram"].map((t) => h("th", {}, t)));
    const rows = result.layers.map((layer) => h("tr", { dataset: { layer: layer.name } },
      h("td", { class: "name" }, layer.name),
      h("td", {}, layer.type),
      h("td", {}, layer.shape.join("×")),
      layer.dead_fraction === null
        ? h("td", { class: "num muted", title: "not after a ReLU-like nonlinearity" }, "–")
        : h("td", { class: "num dead", title: layer.dead_channels.length ? `dead channels: ${layer.dead_channels.join(", ")}` : "none" },
          `${layer.dead_channels.length} (${percent(layer.dead_fraction)})`),
      h("td", { class: "num" }, percent(layer.sparsity)),
      h("td", { class: "num" }, number(layer.mean)),
      h("td", { class: "num" }, number(layer.std)),
      h("td", {}, histogram(layer.histogram)),
    ));
    return h("div", { class: "table-wrap" }, h("table", { class: "stats dataset-layers" }, h("thead", {}, head), h("tbody", {}, ...rows)));
  }
}
