// The trust view: every CAM method the server offers, for one image, class and layer, side by
// side with its deletion and insertion AUCs and the randomization sanity check, ranked by
// faithfulness; gradient methods with their sanity check, guided ones flagged (Adebayo et al.
// 2018, "Sanity Checks for Saliency Maps", arXiv:1810.03292).

import { followJob, request } from "./api.js";
import { CAM, GRADIENTS, inputBox, randomWeightsWarning } from "./classes.js";
import { compose, crop, loadImage } from "./colors.js";
import { $, h, number, pngData, View } from "./dom.js";

const SANITY_FAIL = 0.5; // a map this rank-correlated with its randomized twin ignores the weights
const CARD_WIDTH = 180;

/** Insertion minus deletion: high when the map's top pixels carry the class score. */
export const faithfulness = (row) =>
  row.insertion === null || row.deletion === null ? -Infinity : row.insertion - row.deletion;

export class TrustView extends View {
  constructor(app) {
    super(app, { id: "trust", needs: [CAM], inputs: { tlayer: "trust-layer", tsteps: "trust-steps", trand: "trust-randomize" } });
    this.warning = $("trust-warning");
    $("trust-run").addEventListener("click", () => {
      delete this.pane.figure.dataset.key;
      this.render();
    });
  }

  configure(caps) {
    this.methods = caps.choices(CAM, "method");
    this.gradientMethods = caps.has(GRADIENTS) ? caps.choices(GRADIENTS, "method") : [];
    this.camAsync = caps.parameter(CAM, "async") !== null;
  }

  render() {
    const { state } = this.app;
    const spatial = this.app.layers.filter((l) => l.spatial);
    const last = spatial[spatial.length - 1]?.name ?? "";
    this.inputs.tlayer.replaceChildren(h("option", { value: "" }, `default: ${last}`),
      ...spatial.map((l) => h("option", { value: l.name, title: l.name }, l.name)));
    this.inputs.tlayer.value = state.tlayer;
    this.inputs.tsteps.value = state.tsteps;
    this.inputs.trand.value = state.trand;
    this.warning.replaceChildren(...[randomWeightsWarning(this.app.model)].filter(Boolean));
    if (!state.image) return this.pane.empty("Choose an image on the left to compare every explanation of its class.");
    const layer = state.tlayer || last;
    const base = {
      image_id: state.image, layer, target: state.target || undefined, format: "json",
      metrics: "deletion,insertion", metric_steps: state.tsteps, randomize: state.trand,
    };
    const key = `${state.model}|${JSON.stringify(base)}`;
    return this.pane.run(key, (signal) => this.#compare(base, signal));
  }

  async #compare(base, signal) {
    const rows = [];
    const cards = h("div", { class: "trust-cards" });
    const table = h("table", { class: "stats trust" });
    const gradients = h("div", { class: "trust-gradients" });
    this.pane.frame.hidden = true;
    this.pane.message.hidden = true;
    this.pane.extra.replaceChildren(table, cards, gradients);
    const targetText = this.app.state.target ? `class ${this.app.state.target}` : "the top class";
    for (const method of this.methods) {
      const row = { method, deletion: null, insertion: null, correlation: null, error: null, picture: null };
      rows.push(row);
      this.#table(table, rows);
      try {
        const answer = await this.#cam({ ...base, method }, signal, (text) => {
          row.progress = text;
          this.#table(table, rows);
        });
        const map = answer.maps[0];
        Object.assign(row, { deletion: map.deletion, insertion: map.insertion, correlation: map.rank_correlation, label: map.label, layer: map.layer });
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
          `${rows.length} of ${this.methods.length} CAM methods on ${done.layer} for ${targetText} '${done.label}', ` +
          `ranked by faithfulness (insertion AUC minus deletion AUC); sanity check: top ${base.randomize} layer${Number(base.randomize) === 1 ? "" : "s"} re-initialized`;
      }
    }
    if (this.gradientMethods.length) await this.#gradients(gradients, base, signal);
    this.pane.figure.dataset.methods = String(rows.filter((r) => r.deletion !== null && r.insertion !== null).length);
    return null;
  }

  async #cam(params, signal, onProgress) {
    const slow = this.camAsync && /score|ablation/.test(params.method);
    const response = await this.app.withImage(() =>
      request(this.app.path(CAM), {
        method: "POST", signal,
        params: this.camAsync ? { ...params, async: slow ? "true" : "false" } : params,
      }));
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
      const sane = row.correlation === null ? "" : Math.abs(row.correlation) < SANITY_FAIL ? "passes" : "fails";
      return h("tr", { dataset: { method: row.method } },
        h("td", { class: "num" }, row.deletion === null ? "" : String(index + 1)),
        h("td", { class: "name" }, row.method),
        h("td", { class: "num auc-deletion" }, row.error ? "" : row.progress ?? (row.deletion === null ? "…" : number(row.deletion))),
        h("td", { class: "num auc-insertion" }, row.insertion === null ? "" : number(row.insertion)),
        h("td", { class: "num" }, row.deletion === null ? "" : number(faithfulness(row))),
        h("td", { class: `num sanity ${sane}`, title: sane === "fails" ? "barely changes when the model's weights are randomized" : "" },
          row.error ? row.error : row.correlation === null ? "" : `${number(row.correlation)} ${sane}`),
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

  /** Gradient methods: the same sanity check; guided ones flagged whatever this image says. */
  async #gradients(box, base, signal) {
    const rows = [];
    const draw = () => box.replaceChildren(
      h("h3", {}, "Gradient methods and the model-randomization sanity check"),
      h("p", { class: "muted small" },
        "Guided backpropagation and guided Grad-CAM fail the model-randomization sanity check " +
        "(Adebayo et al. 2018): their maps stay nearly the same when the model's weights are " +
        "randomized, so they show edges of the picture more than what the model learned."),
      h("table", { class: "stats trust-gradients" },
        h("thead", {}, h("tr", {}, h("th", {}, "method"), h("th", {}, "sanity ρ (this image)"), h("th", {}, "verdict"))),
        h("tbody", {}, ...rows.map((row) => h("tr", { dataset: { method: row.method } },
          h("td", { class: "name" }, row.method),
          h("td", { class: "num" }, row.error ?? (row.correlation === undefined ? "…" : number(row.correlation))),
          h("td", { class: row.guided ? "sanity fails" : "" }, row.guided
            ? "fails the model-randomization sanity check (Adebayo et al. 2018)"
            : row.correlation === undefined || row.correlation === null ? "" : Math.abs(row.correlation) < SANITY_FAIL ? "passes here" : "fails here"))))));
    for (const method of this.gradientMethods) {
      const row = { method, guided: /^guided/.test(method) };
      rows.push(row);
      draw();
      const params = { image_id: base.image_id, target: base.target, method, randomize: base.randomize, format: "json" };
      try {
        const answer = await this.app.post(GRADIENTS, params, signal);
        row.correlation = answer.maps[0].rank_correlation;
      } catch (error) {
        if (signal.aborted) throw error;
        row.error = error.message;
      }
      draw();
    }
  }
}

/** The heatmap of a one-image, one-target CAM answer, cut from the server's panel. */
async function heatmapOnly(answer) {
  const panel = await loadImage(pngData(answer.png_base64));
  const box = inputBox(answer.input_size);
  const map = crop(panel, box.x + box.w + 8, box.y, box.w, box.h);
  return compose(map, { width: CARD_WIDTH, smooth: true });
}
