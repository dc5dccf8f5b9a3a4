// The trust view: every method the server lists in GET /v1/methods, for one image, class
// and layer, side by side: CAMs (/cam, on the layer) and input attributions (/attributions:
// gradients, perturbations, propagation), each with its deletion and insertion AUCs and the
// model-randomization sanity check, ranked by faithfulness; guided methods flagged (Adebayo
// et al. 2018, "Sanity Checks for Saliency Maps", arXiv:1810.03292).

import { followJob, request } from "./api.js";
import { inputBox, randomWeightsWarning } from "./classes.js";
import { compose, crop, loadImage } from "./colors.js";
import { $, h, number, pngData, View } from "./dom.js";
import { ATTRIBUTIONS, CAM, GRADIENTS, isPerturbation, methodsAt, takesLayer } from "./methods.js";
import { TrustDataset } from "./trust_dataset.js";

const SANITY_FAIL = 0.5; // a map this rank-correlated with its randomized twin ignores the weights
const CARD_WIDTH = 180;
const GUIDED_NOTE = "guided methods fail the model-randomization sanity check (Adebayo et al. 2018): " +
  "their maps stay nearly the same when the model's weights are randomized";

/** Insertion minus deletion: high when the map's top pixels carry the class score. */
export const faithfulness = (row) =>
  row.insertion === null || row.deletion === null ? -Infinity : row.insertion - row.deletion;

export class TrustView extends View {
  constructor(app) {
    super(app, { id: "trust", needs: [CAM, ATTRIBUTIONS], inputs: { tmode: "trust-mode", tlayer: "trust-layer", tsteps: "trust-steps", trand: "trust-randomize" } });
    this.warning = $("trust-warning");
    this.dataset = new TrustDataset(app); // the dataset mode
    $("trust-run").addEventListener("click", () => {
      delete this.pane.figure.dataset.key;
      this.render();
    });
  }

  /** Every method of /v1/methods: CAMs at /cam, the others at /attributions (or /gradients). */
  configure(caps) {
    const listed = (endpoint, path) => {
      const methods = methodsAt(caps.methods ?? [], endpoint);
      return methods.length ? methods : caps.choices(path, "method").map((name) => ({ name, parameters: null }));
    };
    const cams = caps.has(CAM) ? listed("cam", CAM) : [];
    const inputPath = caps.has(ATTRIBUTIONS) ? ATTRIBUTIONS : caps.has(GRADIENTS) ? GRADIENTS : null;
    const inputs = inputPath ? listed(inputPath === ATTRIBUTIONS ? "attributions" : "gradients", inputPath) : [];
    this.methods = [
      ...cams.map((m) => ({ ...m, path: CAM })),
      ...inputs.map((m) => ({ ...m, path: inputPath })),
    ];
    this.async = new Map([CAM, ATTRIBUTIONS].map((path) => [path, caps.parameter(path, "async") !== null]));
    this.dataset.configure(caps).then(() => this.app.state.view === this.id && this.render());
  }

  render() {
    const { state } = this.app;
    const overData = state.tmode === "dataset";
    this.inputs.tmode.value = state.tmode;
    $("trust-dataset").hidden = !overData;
    $("trust-image").hidden = overData;
    this.warning.replaceChildren(...[randomWeightsWarning(this.app.model)].filter(Boolean));
    if (overData) {
      this.pane.cancel();
      return this.dataset.render();
    }
    const spatial = this.app.layers.filter((l) => l.spatial);
    const last = spatial[spatial.length - 1]?.name ?? "";
    this.inputs.tlayer.replaceChildren(h("option", { value: "" }, `default: ${last}`),
      ...spatial.map((l) => h("option", { value: l.name, title: l.name }, l.name)));
    this.inputs.tlayer.value = state.tlayer;
    this.inputs.tsteps.value = state.tsteps;
    this.inputs.trand.value = state.trand;
    if (!state.image) return this.pane.empty("Choose an image on the left to compare every explanation of its class.");
    const layer = state.tlayer || last;
    const base = {
      image_id: state.image, target: state.target || undefined, format: "json", canvas: "input",
      metrics: "deletion,insertion", metric_steps: state.tsteps, randomize: state.trand,
    };
    const key = `${state.model}|${layer}|${JSON.stringify(base)}`;
    return this.pane.run(key, (signal) => this.#compare(base, layer, signal));
  }

  async #compare(base, layer, signal) {
    const rows = [];
    const cards = h("div", { class: "trust-cards" });
    const table = h("table", { class: "stats trust" });
    this.pane.frame.hidden = true;
    this.pane.message.hidden = true;
    this.pane.extra.replaceChildren(table, cards);
    const targetText = this.app.state.target ? `class ${this.app.state.target}` : "the top class";
    for (const method of this.methods) {
      const row = { method: method.name, path: method.path, guided: /^guided/.test(method.name), deletion: null, insertion: null, correlation: null, error: null, picture: null };
      rows.push(row);
      this.#table(table, rows);
      try {
        const answer = await this.#ask(method, this.#params(method, base, layer), signal, (text) => {
          row.progress = text;
          this.#table(table, rows);
        });
        const map = answer.maps[0];
        Object.assign(row, { deletion: map.deletion ?? null, insertion: map.insertion ?? null, correlation: map.rank_correlation ?? null, label: map.label });
        row.picture = await heatmapOnly(answer);
      } catch (error) {
        if (signal.aborted) throw error;
        row.error = error.message;
      }
      row.progress = null;
      this.#table(table, rows);
      this.#cards(cards, rows);
      const done = rows.find((r) => r.label);
      if (done) {
        this.pane.caption.textContent =
          `${rows.length} of ${this.methods.length} methods (CAMs on ${layer}, the others on the input pixels) for ${targetText} '${done.label}', ` +
          `ranked by faithfulness (insertion AUC minus deletion AUC); sanity check: top ${base.randomize} layer${Number(base.randomize) === 1 ? "" : "s"} re-initialized`;
      }
    }
    this.pane.figure.dataset.methods = String(rows.filter((r) => r.deletion !== null && r.insertion !== null).length);
    return null;
  }

  /** A method's request: CAMs on the layer; /gradients (no metrics there) the sanity check only. */
  #params(method, base, layer) {
    if (method.path === CAM) return { ...base, method: method.name, layer: takesLayer(method) ? layer : undefined };
    if (method.path === GRADIENTS) return { image_id: base.image_id, target: base.target, method: method.name, randomize: base.randomize, format: "json", canvas: "input" };
    return { ...base, method: method.name };
  }

  /** Slow methods (a forward pass per channel batch or per perturbation) run as jobs. */
  async #ask(method, params, signal, onProgress) {
    const slow = method.path === CAM ? /score|ablation/.test(method.name) : isPerturbation(method);
    const sync = this.async.get(method.path) ? { async: slow ? "true" : "false" } : {};
    const response = await this.app.withImage(() =>
      request(this.app.path(method.path), { method: "POST", signal, params: { ...params, ...sync } }));
    if (response.status !== 202) return response.json();
    const job = await followJob(response.headers.get("Location"), {
      signal,
      onProgress: (job) => onProgress(`${job.status}, step ${job.progress.step} of ${job.progress.total}`),
    });
    return job.result;
  }

  #table(table, rows) {
    const ranked = [...rows].sort((a, b) => faithfulness(b) - faithfulness(a));
    const head = h("tr", {},
      h("th", {}, "rank"), h("th", {}, "method"),
      h("th", { title: "area under the class score as the top pixels are removed: lower is more faithful" }, "deletion AUC ↓"),
      h("th", { title: "area under the class score as the top pixels are added: higher is more faithful" }, "insertion AUC ↑"),
      h("th", { title: "insertion AUC minus deletion AUC" }, "faithfulness ↑"),
      h("th", { title: "Spearman rank correlation with the map of the randomized model: near 1 means the map ignores the weights" }, "sanity ρ"),
    );
    const body = ranked.map((row, index) => {
      const measured = row.correlation === null ? "" : Math.abs(row.correlation) < SANITY_FAIL ? "passes" : "fails";
      const sane = row.guided ? "fails" : measured;
      const verdict = row.guided ? "fails (guided: Adebayo et al. 2018)" : measured;
      return h("tr", { dataset: { method: row.method, endpoint: row.path === CAM ? "cam" : "attributions" } },
        h("td", { class: "num" }, row.deletion === null ? "" : String(index + 1)),
        h("td", { class: "name" }, row.method),
        h("td", { class: "num auc-deletion" }, row.error ? "" : row.progress ?? (row.deletion === null && !row.label ? "…" : number(row.deletion))),
        h("td", { class: "num auc-insertion" }, row.insertion === null ? "" : number(row.insertion)),
        h("td", { class: "num" }, row.deletion === null ? "" : number(faithfulness(row))),
        h("td", { class: `num sanity ${sane}`, title: row.guided ? GUIDED_NOTE : sane === "fails" ? "barely changes when the model's weights are randomized" : "" },
          row.error ? row.error : row.correlation === null ? (row.guided ? verdict : "") : `${number(row.correlation)} ${verdict}`),
      );
    });
    table.replaceChildren(h("thead", {}, head), h("tbody", {}, ...body));
  }

  #cards(cards, rows) {
    const ranked = [...rows].filter((r) => r.picture).sort((a, b) => faithfulness(b) - faithfulness(a));
    cards.replaceChildren(...ranked.map((row, index) =>
      h("figure", { class: "trust-card", dataset: { method: row.method } },
        h("img", { src: row.picture, alt: `${row.method} map`, width: CARD_WIDTH }),
        h("figcaption", { class: "small" }, `${index + 1}. ${row.method} · del ${number(row.deletion)} · ins ${number(row.insertion)}`))));
  }
}

/** The heatmap of a one-image, one-target CAM answer, cut from the server's panel. */
async function heatmapOnly(answer) {
  const panel = await loadImage(pngData(answer.png_base64));
  const box = inputBox(answer.input_size);
  const map = crop(panel, box.x + box.w + 8, box.y, box.w, box.h);
  return compose(map, { width: CARD_WIDTH, smooth: true });
}
