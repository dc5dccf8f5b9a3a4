// The Trust tab's dataset mode: chosen methods scored by chosen metrics over a dataset, as a
// job (POST /v1/models/{model}/datasets/{dataset}/evaluate). A table of methods x metrics with
// each mean and its 95% bootstrap interval (a click on a column sorts by it), a bar chart per
// metric with the interval as error bars, and a click on a method for its best and worst
// pictures with its map over them (/cam or /attributions on image=dataset:NAME/INDEX).

import { getJSON, pictureURL, request } from "./api.js";
import { compose, loadColormap, loadImage, mapCanvas, niceTicks, parseNpy, range } from "./colors.js";
import { classColour, datasetReference } from "./dataset.js";
import { $, h, JobBox, number, View } from "./dom.js";
import { DatasetJob } from "./dataset_job.js";
import { ATTRIBUTIONS, CAM } from "./methods.js";

export const EVALUATE = "/v1/models/{model}/datasets/{dataset}/evaluate";
const SVG = "http://www.w3.org/2000/svg";
const THUMB = 84;
const RANK = "mean rank";
const arrow = (metric) => (metric.higher_is_better ? "↑" : "↓");
const direction = (metric) => (metric.higher_is_better ? "higher is better" : "lower is better");
const interval = (s) => (s.ci95 ? `[${number(s.ci95[0])}, ${number(s.ci95[1])}]` : "");

function node(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, String(v));
  if (text !== undefined) element.textContent = text;
  return element;
}

export class TrustDataset extends View {
  constructor(app) {
    super(app, { id: "trust-dataset", needs: [EVALUATE], inputs: { tset: "trust-dataset-name", tlimit: "trust-limit" }, pane: false });
    this.figure = $("trust-dataset-result");
    this.jobs = new DatasetJob(new JobBox("trust-dataset-job"), $("trust-dataset-cancel"), (text, error) => this.#message(text, error));
    this.results = new Map(); // "model|dataset|limit|methods|metrics" -> the evaluation
    this.sort = { column: RANK, best: true };
    this.maps = new Map(); // "model|method|dataset/index" -> a picture's overlay (a promise)
    $("trust-dataset-run").addEventListener("click", () => this.start());
  }

  async configure(caps) {
    this.available = caps.has(EVALUATE);
    this.methods = (caps.methods ?? []).filter((m) => m.endpoints.includes("cam") || m.endpoints.includes("attributions"));
    this.metrics = caps.metrics ?? [];
    try {
      this.datasets = (await getJSON("/v1/datasets")).data;
    } catch (error) {
      this.datasets = [];
      this.#message(error.message, true);
    }
    this.inputs.tset.replaceChildren(...this.datasets.map((d) => h("option", { value: d.name }, `${d.name} (${d.size} pictures)`)));
  }

  #choice() {
    const { state } = this.app;
    const known = (list, names) => names.split(",").filter((n) => list.some((m) => m.name === n));
    return {
      dataset: state.tset || this.datasets?.[0]?.name || "", limit: state.tlimit,
      methods: known(this.methods ?? [], state.tmethods), metrics: known(this.metrics ?? [], state.tmetrics),
    };
  }

  #key() {
    const c = this.#choice();
    return `${this.app.state.model}|${c.dataset}|${c.limit}|${c.methods}|${c.metrics}`;
  }

  render() {
    if (!this.datasets) return;
    const choice = this.#choice();
    this.inputs.tset.value = choice.dataset;
    this.inputs.tlimit.value = choice.limit;
    this.#checkboxes("trust-methods", this.methods, choice.methods, "tmethods", (m) => `${m.family}: ${m.summary ?? ""}`);
    this.#checkboxes("trust-metrics", this.metrics, choice.metrics, "tmetrics",
      (m) => `${m.family} · ${direction(m)} · ${m.reference}${m.needs.length ? ` · needs ${m.needs.join(", ")}` : ""}`, arrow);
    if (!this.available) return this.#message("This server has no dataset evaluation (POST /v1/models/{model}/datasets/{dataset}/evaluate).", true);
    const result = this.results.get(this.#key());
    if (result) return this.#draw(result);
    if (!this.jobs.running) this.#message(`Press “Evaluate” to score ${choice.methods.length} methods by ${choice.metrics.length} metrics over ${choice.dataset}: a job, with progress.`);
  }

  /** One checkbox per listed name, grouped by family; a change writes the names to `key`. */
  #checkboxes(id, list, chosen, key, title, mark = () => "") {
    const box = $(id);
    const families = [...new Set(list.map((m) => m.family))];
    box.replaceChildren(...families.map((family) => h("span", { class: "pick-family" },
      h("span", { class: "muted small" }, `${family}:`),
      ...list.filter((m) => m.family === family).map((m) => h("label", { class: "pick", title: title(m) },
        h("input", {
          type: "checkbox", value: m.name, checked: chosen.includes(m.name),
          onchange: () => this.app.update({ [key]: [...box.querySelectorAll("input:checked")].map((i) => i.value).join(",") }),
        }), ` ${m.name} ${mark(m)}`)))));
  }

  #message(text, error = false) {
    this.figure.replaceChildren(h("p", { class: error ? "error" : "message muted", role: error ? "alert" : undefined }, text));
  }

  async start() {
    const { dataset, limit, methods, metrics } = this.#choice();
    if (!methods.length || !metrics.length) return this.#message("Choose at least one method and one metric.", true);
    const key = this.#key();
    const path = this.app.path(EVALUATE).replace("{dataset}", encodeURIComponent(dataset));
    const params = { methods: methods.join(","), metrics: metrics.join(","), limit: limit || undefined };
    const working = `Evaluating ${methods.length} methods by ${metrics.length} metrics on ${dataset}…`;
    const job = await this.jobs.run(path, params, { working });
    if (!job) return;
    this.results.set(key, job.result);
    if (this.#key() === key) this.#draw(job.result);
  }


  #draw(result) {
    const metrics = result.rankings.map((r) => ({ ...(this.metrics.find((m) => m.name === r.metric) ?? {}), name: r.metric, higher_is_better: r.higher_is_better, reference: r.reference }));
    this.table = h("div", { class: "table-wrap" });
    this.detail = h("div", { class: "trust-detail", id: "trust-dataset-detail" },
      h("p", { class: "muted small" }, "Click a method for its best and worst pictures, its map over each."));
    const masks = result.without_mask ? ` · ${result.without_mask} without a mask` : "";
    const skipped = result.skipped.length ? ` · ${result.skipped.length} unreadable` : "";
    this.figure.replaceChildren(
      h("p", { class: "dataset-summary" },
        `${result.model} on ${result.dataset}: ${result.images} pictures (seed ${result.seed}), explaining the ${result.target === "label" ? "labelled" : "predicted"} class${masks}${skipped}` +
        ` · mean [95% percentile bootstrap interval, ${result.resamples} resamples] · overall best: ${result.overall[0] ?? "–"}`),
      this.table, this.detail,
      h("h3", {}, "Each metric: the mean per method, the 95% interval as error bars"),
      h("div", { class: "trust-charts" }, ...metrics.map((m) => this.#chart(result, m))));
    this.#table(result, metrics);
  }

  #table(result, metrics) {
    const { column, best } = this.sort;
    const metric = metrics.find((m) => m.name === column);
    const value = (row) => (metric ? row.metrics[column]?.mean : row.mean_rank) ?? null;
    const up = metric ? metric.higher_is_better : false; // a lower mean rank is better
    const rows = [...result.methods].sort((a, b) => {
      if (value(a) === null || value(b) === null) return (value(a) === null) - (value(b) === null);
      return (best === up ? 1 : -1) * (value(b) - value(a));
    });
    const header = (name, title, text) => h("th", {
      class: `sortable num${column === name ? " sorted" : ""}`, title: `${title} (click: sort)`, dataset: { column: name },
      onclick: () => {
        this.sort = { column: name, best: column === name ? !best : true };
        this.#table(result, metrics);
      },
    }, text, column === name ? h("span", { class: "small sort-note" }, best ? " best first" : " worst first") : null);
    const head = h("tr", {}, h("th", {}, "method"),
      header(RANK, "the method's rank averaged over the metrics: lower is better", `${RANK} ↓`),
      ...metrics.map((m) => header(m.name, `${m.family ?? ""} · ${direction(m)} · ${m.reference}`, `${m.name} ${arrow(m)}`)));
    const leaders = new Map(result.rankings.map((r) => [r.metric, r.methods[0]]));
    const body = rows.map((row) => h("tr", { dataset: { method: row.method } },
      h("td", { class: "name" }, h("button", {
        type: "button", class: "link trust-method", title: "its best and worst pictures", onclick: () => this.#extremes(result, metrics, row),
      }, row.method)),
      h("td", { class: "num" }, number(row.mean_rank)),
      ...metrics.map((m) => {
        const s = row.metrics[m.name];
        return h("td", {
          class: `num metric-cell${leaders.get(m.name) === row.method ? " leader" : ""}`,
          dataset: { metric: m.name, mean: String(s.mean ?? "") },
          title: `${row.method} · ${m.name}: mean ${number(s.mean)}, std ${number(s.std)}, 95% interval ${interval(s) || "–"}, n = ${s.n}`,
        }, number(s.mean), h("span", { class: "ci small" }, ` ${interval(s)}`));
      })));
    this.table.replaceChildren(h("table", { class: "stats trust-dataset-table" }, h("thead", {}, head), h("tbody", {}, ...body)));
  }

  /** Horizontal bars from 0 to each method's mean, the interval as an error bar. */
  #chart(result, metric) {
    const rows = result.methods;
    const left = 130, right = 16, top = 22, rowHeight = 22, width = 380;
    const stats = rows.map((r) => r.metrics[metric.name]);
    const values = stats.flatMap((s) => [s.mean, ...(s.ci95 ?? [])]).filter((v) => v !== null && Number.isFinite(v));
    const ticks = axisTicks(Math.min(0, ...values), Math.max(0, ...values));
    const low = ticks[0], high = Math.max(ticks[ticks.length - 1], low + 1e-9);
    const x = (v) => left + ((v - low) / (high - low)) * (width - left - right);
    const height = top + rows.length * rowHeight + 8;
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, class: "barchart metric-chart", role: "img", "data-metric": metric.name });
    svg.append(node("title", {}, `${metric.name}: mean per method with its 95% interval; ${direction(metric)}`));
    for (const tick of ticks) {
      svg.append(node("line", { x1: x(tick), x2: x(tick), y1: top - 4, y2: height - 8, class: tick === 0 ? "zero" : "grid" }));
      svg.append(node("text", { x: x(tick), y: top - 8, "text-anchor": "middle", class: "small" }, number(tick)));
    }
    rows.forEach((row, i) => {
      const s = stats[i];
      const y = top + i * rowHeight;
      const group = node("g", { "data-method": row.method });
      group.append(node("text", { x: left - 6, y: y + 15, "text-anchor": "end" }, row.method));
      if (s.mean !== null) {
        const bar = node("rect", { x: Math.min(x(0), x(s.mean)), y: y + 4, width: Math.abs(x(s.mean) - x(0)), height: rowHeight - 8, fill: classColour(i, rows.length), class: "metric-bar" });
        bar.append(node("title", {}, `${row.method}: ${number(s.mean)} ${interval(s)} (n = ${s.n})`));
        group.append(bar);
      }
      if (s.ci95) {
        const [a, b] = s.ci95.map(x), mid = y + rowHeight / 2;
        for (const [x1, y1, x2, y2] of [[a, mid, b, mid], [a, mid - 5, a, mid + 5], [b, mid - 5, b, mid + 5]]) {
          group.append(node("line", { x1, y1, x2, y2, class: "error-bar" }));
        }
      }
      svg.append(group);
    });
    return h("figure", { class: "metric-figure" },
      h("figcaption", {}, h("strong", {}, `${metric.name} ${arrow(metric)}`), h("span", { class: "muted small" }, ` ${direction(metric)} · ${metric.family ?? ""} · ${metric.reference}`)),
      svg);
  }

  /** A method's best and worst pictures on each metric, its map over each. */
  async #extremes(result, metrics, row) {
    for (const tr of this.table.querySelectorAll("tr[data-method]")) tr.classList.toggle("selected", tr.dataset.method === row.method);
    const method = this.methods.find((m) => m.name === row.method);
    const lines = metrics.map((m) => {
      const s = row.metrics[m.name];
      const strip = (kind, indices) => h("div", { class: `extremes ${kind}` },
        h("span", { class: "small muted extremes-label" }, kind),
        ...indices.map((index) => this.#thumb(result, method, index)));
      return h("div", { class: "extremes-row", dataset: { metric: m.name } },
        h("p", { class: "small" }, h("strong", {}, `${m.name} ${arrow(m)}`), ` ${direction(m)}`),
        strip("best", s.best), strip("worst", s.worst));
    });
    this.detail.replaceChildren(
      h("h3", {}, `${row.method}: its best and worst pictures per metric (its map over each picture in ${CAM_MAP} colours, scaled per picture: red = most relevant, blue = least)`),
      ...lines);
    this.detail.dataset.method = row.method;
  }

  #thumb(result, method, index) {
    const image = h("img", { class: "extreme", alt: `${method.name} on picture ${index}`, width: THUMB, height: THUMB });
    const key = `${result.model}|${method.name}|${result.dataset}/${index}`;
    if (!this.maps.has(key)) this.maps.set(key, overlay(this.app, result, method, index));
    this.maps.get(key).then((src) => { image.src = src; }, (error) => { image.alt = error.message; });
    return h("figure", { class: "extreme-figure", dataset: { index: String(index) } }, image, h("figcaption", { class: "small" }, `#${index}`));
  }
}

const CAM_MAP = "jet";

/** Round ticks that enclose [low, high] (niceTicks stays inside it): one more step each side. */
function axisTicks(low, high) {
  const ticks = niceTicks(low, high, 4);
  if (ticks.length < 2) return [low, high > low ? high : low + 1];
  const step = ticks[1] - ticks[0];
  const round = (v) => Number(v.toPrecision(12));
  if (ticks[0] > low + step * 1e-9) ticks.unshift(round(ticks[0] - step));
  if (ticks[ticks.length - 1] < high - step * 1e-9) ticks.push(round(ticks[ticks.length - 1] + step));
  return ticks;
}

/** The dataset picture with `method`'s map over it (|values| summed over channels). */
async function overlay(app, result, method, index) {
  const path = (method.endpoints.includes("cam") ? CAM : ATTRIBUTIONS).replace("{model}", encodeURIComponent(result.model));
  const params = { image: datasetReference(result.dataset, index), method: method.name, format: "npy" };
  const [picture, answer, lut] = await Promise.all([
    pictureURL(`/v1/datasets/${encodeURIComponent(result.dataset)}/images/${index}`).then(loadImage),
    request(path, { method: "POST", params }).then((r) => r.arrayBuffer()).then(parseNpy),
    loadColormap(CAM_MAP),
  ]);
  const [height, width] = answer.shape.slice(-2);
  const attribution = answer.shape.length === 4; // [1, C, H, W]: |values| summed, as evaluated
  const channels = attribution ? answer.shape[1] : 1;
  const map = new Float32Array(height * width);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < map.length; i++) {
      const v = answer.data[c * map.length + i];
      map[i] += attribution ? Math.abs(v) : v;
    }
  }
  const [low, high] = range(map);
  return compose(mapCanvas(map, 0, height, width, lut, low, high), { width: THUMB, background: picture, alpha: 0.45, smooth: true });
}
