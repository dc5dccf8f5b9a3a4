// The class view: top-k predictions; pick a class and a method to see where the network looks
// (CAM overlay) and what an input attribution says (gradients, perturbations, propagation).
// Methods and their parameters come from the server's GET /v1/methods (`methods.js`); the
// maps are drawn here from their npy values, at the column's width, with a colorbar, an
// opacity slider and the value under the cursor.

import { followJob, request } from "./api.js";
import { availableWidth, colorbar, compose, crop, fetchNpy, loadColormap, loadImage, mapCanvas, range } from "./colors.js";
import { $, h, JobBox, number, pngData, ResultPane, View } from "./dom.js";
import { ATTRIBUTIONS, CAM, GRADIENTS, isPerturbation, methodsAt, ParameterFields, paramsFor, readParams, takesLayer, writeParams } from "./methods.js";

export { CAM, GRADIENTS };
export const PREDICT = "/v1/models/{model}/predict";

// Mirrors _MARGIN, _TITLE_HEIGHT (render.py) and MAX/MIN_DISPLAY (engine/upload_view.py):
// where the server's panel puts the input picture.
const PANEL = Object.freeze({ MARGIN: 8, TITLE_HEIGHT: 18, MIN: 128, MAX: 320 });

/** The input picture's box in a server attribution panel, for a model input of [h, w]. */
export function inputBox([height, width]) {
  const side = Math.min(PANEL.MAX, Math.max(PANEL.MIN, height, width));
  const factor = side / Math.max(height, width);
  return { x: PANEL.MARGIN, y: PANEL.MARGIN + PANEL.TITLE_HEIGHT, w: Math.round(width * factor), h: Math.round(height * factor) };
}

/** A warning shown wherever a model without trained weights predicts or explains. */
export function randomWeightsWarning(model) {
  if (!model || model.pretrained) return null;
  return h("p", { class: "warning random-weights", role: "note" },
    `⚠ ${model.name} runs with random weights (no trained weights were loaded). ` +
    "Its predictions are noise and its explanations show what an untrained network computes, " +
    "not what a trained one has learned.");
}

export class ClassesView extends View {
  constructor(app) {
    const inputs = {
      cam: "cam-method", camlayer: "cam-layer", ccmap: "cam-colormap", norm: "cam-normalize",
      grad: "grad-method", gview: "grad-view", gcmap: "grad-colormap", topk: "top-k",
    };
    super(app, { id: "classes", needs: [PREDICT], inputs, pane: false });
    this.list = $("predictions");
    this.predictions = new ResultPane(h("figure", { class: "result" }));
    this.cam = new ResultPane($("cam-result"));
    this.gradients = new ResultPane($("grad-result"));
    this.warning = $("classes-warning");
    this.note = $("classes-note");
    this.list.after(this.predictions.figure);
    this.alpha = $("overlay-alpha");
    this.alpha.addEventListener("input", () => {
      // Opacity is the page's own: redraw the pictures already here, ask the server nothing.
      this.app.state.alpha = this.alpha.value;
      this.#redraw(this.cam);
      this.#redraw(this.gradients);
    });
    this.alpha.addEventListener("change", () => app.update({ alpha: this.alpha.value }));
    this.job = new JobBox("cam-job");
    $("cam-job-cancel").addEventListener("click", () => this.#cancelJob());
  }

  /** Fill the method pickers and parameter inputs from GET /v1/methods, once it is known. */
  configure(caps) {
    this.caps = caps;
    this.hasCam = caps.has(CAM);
    // Every input-space method at /attributions; a server without it: /gradients' methods.
    this.inputPath = caps.has(ATTRIBUTIONS) ? ATTRIBUTIONS : GRADIENTS;
    this.hasGradients = caps.has(this.inputPath);
    this.camAsync = caps.parameter(CAM, "async") !== null;
    this.camMethods = listed(caps, "cam", CAM);
    this.inputMethods = listed(caps, this.inputPath === ATTRIBUTIONS ? "attributions" : "gradients", this.inputPath);
    fill(this.inputs.cam, this.camMethods);
    fill(this.inputs.grad, this.inputMethods);
    fill(this.inputs.gview, caps.choices(this.inputPath, "view").map((name) => ({ name })));
    const fields = (box, path, prefix, key) => new ParameterFields($(box), {
      caps, path, prefix, layers: () => this.spatialLayers ?? [], skip: path === CAM ? ["layer"] : [],
      onChange: (values) => this.app.update({ [key]: writeParams(values) }),
    });
    this.camParams = fields("cam-params", CAM, "cam-param", "cparams");
    this.gradParams = fields("grad-params", this.inputPath, "grad-param", "gparams");
    $("cam-column").hidden = !this.hasCam;
    $("grad-column").hidden = !this.hasGradients;
    const missing = [!this.hasCam && "POST /v1/models/{model}/cam", !this.hasGradients && "POST /v1/models/{model}/attributions"].filter(Boolean);
    this.note.hidden = !missing.length;
    this.note.textContent = `Class activation maps and input attributions appear here once the server offers ${missing.join(" and ")}.`;
  }

  /** The chosen method's entry of /v1/methods (name only where the server lists none). */
  #method(methods, name) {
    return methods.find((m) => m.name === name) ?? { name, parameters: null };
  }

  /** The CAM layer choices follow the model: its layers with a spatial map, forward order. */
  setLayers(layers) {
    const spatial = layers.filter((l) => l.spatial);
    // As the server's default: a segmentation or detection model's last backbone map (its
    // heads and a detector's proposals come after it).
    const task = this.app.model?.task ?? "classification";
    const backbone = task === "classification" ? [] : spatial.filter((l) => l.name.startsWith("backbone."));
    const pool = backbone.length ? backbone : spatial;
    const last = pool[pool.length - 1]?.name ?? "";
    const options = [h("option", { value: "" }, `default: ${last}`)];
    for (const layer of spatial) options.push(h("option", { value: layer.name, title: layer.name }, layer.name));
    this.inputs.camlayer.replaceChildren(...options);
    this.spatialLayers = spatial.map((l) => l.name);
    this.defaultLayer = last;
  }

  #sync() {
    const { state } = this.app;
    const values = {
      cam: state.cam, camlayer: state.camlayer, ccmap: state.ccmap, grad: state.grad, gview: state.gview,
      gcmap: state.gcmap, topk: state.topk,
    };
    for (const [key, value] of Object.entries(values)) this.inputs[key].value = value;
    this.inputs.norm.checked = state.norm === "1";
    this.alpha.value = state.alpha;
    // Only the chosen method's own parameters are shown: another method's would be a 422.
    const cam = this.#method(this.camMethods, state.cam);
    this.camParams.show(cam, readParams(state.cparams));
    this.inputs.camlayer.disabled = !takesLayer(cam);
    this.inputs.camlayer.closest("label").title = takesLayer(cam) ? "" : `${cam.name} reads the whole model: no layer`;
    this.gradParams.show(this.#method(this.inputMethods, state.grad), readParams(state.gparams));
    const colourless = state.gview === "gradient";
    this.inputs.gcmap.disabled = colourless;
    this.inputs.gcmap.closest("label").title = colourless ? "the gradient view is an RGB image: no colormap applies" : "";
  }

  render() {
    const { state } = this.app;
    this.#sync();
    this.warning.replaceChildren(...[randomWeightsWarning(this.app.model)].filter(Boolean));
    if (!state.image) {
      this.list.replaceChildren();
      this.predictions.empty("Choose an image on the left to see the model's top classes.");
      this.cam.empty("");
      this.gradients.empty("");
      return;
    }
    this.#predict();
    const target = targetParams(state.target);
    const targetText = state.target.startsWith("#")
      ? `detection ${state.target.slice(1)}`
      : state.target ? `class ${state.target}` : "the top class";
    if (this.hasCam && state.cam) this.#camView(target, targetText);
    if (this.hasGradients && state.grad) this.#gradientView(target, targetText);
  }

  #camView(target, targetText) {
    const { state } = this.app;
    // The page lays its own maps over the model input (inputBox), so the server's panel is
    // asked for that canvas rather than the upload's geometry.
    const params = {
      image_id: state.image, method: state.cam, ...target,
      layer: takesLayer(this.#method(this.camMethods, state.cam)) ? state.camlayer || this.defaultLayer : undefined,
      colormap: state.ccmap, normalize: state.norm === "1" ? "true" : undefined, canvas: "input",
      ...paramsFor(this.#method(this.camMethods, state.cam), state.cparams),
    };
    const key = `${state.model}|${JSON.stringify(params)}`;
    if (this.cam.figure.dataset.key !== key) {
      // While it runs, the pill says what is coming; the old picture is dimmed under it.
      this.cam.figure.dataset.pending = `computing ${state.cam} on ${params.layer ?? "the whole model"} for ${targetText}…`;
    }
    this.cam.run(key, async (signal) => {
      const sync = this.camAsync ? { async: "false" } : {};
      // Perturbation CAMs (ScoreCAM, AblationCAM) run one forward pass per channel batch:
      // they are not asked twice for their values, and run as jobs where the server can.
      const perturbation = /score|ablation/.test(state.cam);
      const slow = !this.camAsync && perturbation;
      if (slow) this.#showWaiting(`${state.cam}: one forward pass per channel batch; this takes a while`);
      const values = perturbation ? null : fetchNpy(this.app, CAM, { ...params, ...sync }, signal);
      values?.catch(() => {});
      let answer;
      try {
        answer = await this.#camAnswer(params, signal);
      } finally {
        if (slow) this.job.box.hidden = true;
      }
      const map = answer.maps[0];
      const caption = `${answer.method} on ${map.layer} for ${targetText} '${map.label}'` +
        (state.norm === "1" ? " · normalized to [0, 1]" : "");
      await this.#draw(this.cam, answer, values && (await values), {
        colormap: state.ccmap, caption, label: "CAM value", view: "cam", low: map.min, high: map.max,
      });
      return null;
    });
  }

  /** Methods that answer in well under a second; the others (ScoreCAM, AblationCAM: one
   *  forward pass per channel) run as jobs when the server can, and their values are not
   *  asked for twice. */
  #quick(method) {
    return !this.camAsync || !/score|ablation/.test(method);
  }

  async #camAnswer(params, signal) {
    if (!this.camAsync || this.#quick(params.method)) {
      return this.app.post(CAM, { ...params, format: "json", ...(this.camAsync ? { async: "false" } : {}) }, signal);
    }
    const response = await this.app.withImage(() =>
      request(this.app.path(CAM), { method: "POST", params: { ...params, format: "json", async: "true" }, signal }));
    if (response.status !== 202) return response.json();
    this.jobLocation = response.headers.get("Location");
    this.job.start(`${params.method}: queued`);
    try {
      const job = await followJob(this.jobLocation, {
        signal,
        onProgress: (job) => {
          const eta = job.eta_s !== null && job.eta_s !== undefined ? `, about ${Math.ceil(job.eta_s)} s left` : "";
          this.job.show(job, `${params.method}: ${job.status}, step ${job.progress.step} of ${job.progress.total}${eta}`);
        },
      });
      return job.result;
    } finally {
      this.jobLocation = null;
      this.job.box.hidden = true;
    }
  }

  /** A request the server answers only when done: an indeterminate bar and Cancel. */
  #showWaiting(text) {
    this.job.start(text, { waiting: true });
  }

  async #cancelJob() {
    const location = this.jobLocation;
    this.cam.cancel();
    this.job.box.hidden = true;
    this.cam.empty("Cancelled: pick a method or a class to draw a map.");
    if (location) await request(location, { method: "DELETE" }).catch(() => {});
  }

  #gradientView(target, targetText) {
    const { state } = this.app;
    const method = this.#method(this.inputMethods, state.grad);
    const params = {
      image_id: state.image, method: state.grad, ...target, view: state.gview, colormap: state.gcmap,
      canvas: "input", ...paramsFor(method, state.gparams),
    };
    this.gradients.run(`${state.model}|${this.inputPath}|${JSON.stringify(params)}`, async (signal) => {
      // A perturbation method re-runs the model per part: asked once (no second npy call),
      // and followed as a job when the server makes it one.
      const values = isPerturbation(method) ? null : fetchNpy(this.app, this.inputPath, params, signal);
      values?.catch(() => {});
      const answer = await this.#inputAnswer(params, signal);
      const map = answer.maps[0];
      const what = { heatmap: "largest |attribution| over colour channels", positive: "largest positive attribution", negative: "largest negative attribution (as a magnitude)" }[state.gview];
      const caption = `${answer.method} for ${targetText} '${map.label}' · ${what ?? "the attribution as an image: grey is zero"}`;
      await this.#draw(this.gradients, answer, values && (await values), {
        // the server's picture (no values asked) colours |values|, or one sign's magnitude
        colormap: state.gcmap, caption, label: "attribution", view: state.gview, low: 0,
        high: { positive: Math.max(map.max, 0), negative: Math.max(-map.min, 0) }[state.gview] ?? Math.max(-map.min, map.max),
      });
      return null;
    });
  }

  async #inputAnswer(params, signal) {
    const response = await this.app.withImage(() =>
      request(this.app.path(this.inputPath), { method: "POST", params: { ...params, format: "json" }, signal }));
    if (response.status !== 202) return response.json();
    const job = await followJob(response.headers.get("Location"), {
      signal,
      onProgress: (job) => {
        this.gradients.figure.dataset.pending = `${params.method}: ${job.status}, step ${job.progress.step} of ${job.progress.total}`;
      },
    });
    return job.result;
  }

  /**
   * Draw an attribution at the column's width: the map coloured from its npy values over the
   * input picture cut from the server's panel, with a colorbar and the value under the cursor.
   * Without values (a job's answer) the server's own picture is shown, with its colorbar.
   */
  async #draw(pane, answer, npy, { colormap, caption, label, view, low, high }) {
    const panel = await loadImage(pngData(answer.png_base64));
    const box = inputBox(answer.input_size ?? this.app.model.input_size);
    const background = crop(panel, box.x, box.y, box.w, box.h);
    const lut = await loadColormap(colormap);
    const width = Math.min(640, availableWidth(pane.figure));
    if (!npy || view === "gradient") {
      const server = crop(panel, box.x + box.w + PANEL.MARGIN, box.y, box.w, box.h);
      await pane.show({ src: compose(server, { width, smooth: true }), caption });
      if (view !== "gradient") pane.scale.replaceChildren(colorbar(lut, low, high, { label }));
      pane.readout.textContent = view === "gradient" ? "" : "(values under the cursor are read for quick methods only)";
      pane.drawn = null;
      return;
    }
    const [height, mapWidth] = npy.shape.slice(-2);
    const channels = npy.shape.length === 4 ? npy.shape[1] : 1;
    const plane = reducePlane(npy.data, channels, height * mapWidth, view);
    const [from, to] = range(plane);
    const map = mapCanvas(plane, 0, height, mapWidth, lut, from, to);
    const overlay = view === "heatmap" || view === "cam";
    // CAMs are coarse maps the server enlarges smoothly; gradients are per pixel: squares.
    pane.drawn = { map, background: overlay ? background : null, width, smooth: view === "cam" };
    await pane.show({ src: this.#compose(pane.drawn), caption });
    pane.scale.replaceChildren(colorbar(lut, from, to, { label }));
    const scale = mapWidth / width;
    pane.hover = (x, y) => {
      const col = Math.min(mapWidth - 1, Math.max(0, Math.floor(x * scale)));
      const row = Math.min(height - 1, Math.max(0, Math.floor(y * scale)));
      return `${label} at x ${col}, y ${row}: ${number(plane[row * mapWidth + col])}`;
    };
  }

  #compose({ map, background, width, smooth }) {
    return compose(map, { width, background, alpha: Number(this.app.state.alpha), smooth });
  }

  #redraw(pane) {
    if (pane.drawn?.background) pane.image.src = this.#compose(pane.drawn);
  }

  #predict() {
    const { state } = this.app;
    const params = { image_id: state.image, top_k: state.topk || 5 };
    this.predictions.run(`${state.model}|${state.image}|${state.target}|${params.top_k}`, async (signal) => {
      let answer;
      try {
        answer = await this.app.post(PREDICT, params, signal);
      } catch (error) {
        this.list.replaceChildren(); // never leave another image's classes beside an error
        throw error;
      }
      if (answer.task === "segmentation" || answer.task === "detection") {
        await this.dense(answer, params, signal);
        return null;
      }
      const rows = answer.predictions[0];
      const chosen = state.target === "" ? rows[0]?.class_index : Number(state.target);
      this.list.replaceChildren(
        ...rows.map((row) =>
          h("li", {},
            h("button", {
              type: "button",
              class: row.class_index === chosen ? "class selected" : "class",
              "aria-pressed": row.class_index === chosen ? "true" : "false",
              dataset: { class: String(row.class_index) },
              title: `${row.label} (class ${row.class_index}): explain this class`,
              onclick: () => this.app.update({ target: String(row.class_index) }),
            },
            h("span", { class: "label" }, row.label),
            h("span", { class: "bar" }, h("span", { style: { width: `${(100 * row.probability).toFixed(1)}%` } })),
            h("span", { class: "probability" }, `${(100 * row.probability).toFixed(1)}%`)),
          ),
        ),
      );
      this.predictions.message.hidden = true;
      return null;
    });
  }
}

/** A segmentation model's classes (with their share of pixels) or a detection model's boxes,
 *  each a button that explains it, and the server's mask or boxes picture above them. */
ClassesView.prototype.denseList = function denseList(answer) {
  const { state } = this.app;
  const choose = (value, text, share, title) => {
    const chosen = state.target === value;
    return h("li", {},
      h("button", {
        type: "button", class: chosen ? "class selected" : "class", "aria-pressed": chosen ? "true" : "false",
        dataset: { class: value }, title, onclick: () => this.app.update({ target: value }),
      },
      h("span", { class: "label" }, text),
      h("span", { class: "bar" }, h("span", { style: { width: `${(100 * share).toFixed(1)}%` } })),
      h("span", { class: "probability" }, `${(100 * share).toFixed(1)}%`)));
  };
  if (answer.task === "segmentation") {
    return answer.segmentation[0].classes.map((c) =>
      choose(String(c.class_index), c.label, c.fraction, `${c.label}: explain the pixels predicted as this class`));
  }
  return answer.detections[0].map((d, i) =>
    choose(`#${i}`, `${d.label} [${d.box.map((v) => Math.round(v)).join(", ")}]`, d.score,
      `detection ${i}, score ${d.score.toFixed(3)}: explain this box`));
};

/** Fetch the mask or boxes picture and list the classes or boxes to explain. */
ClassesView.prototype.dense = async function dense(answer, params, signal) {
  this.list.replaceChildren(...this.denseList(answer));
  const response = await this.app.withImage(() =>
    request(this.app.path(PREDICT), { method: "POST", params: { ...params, format: "png" }, signal }));
  const src = URL.createObjectURL(await response.blob());
  const caption = answer.task === "segmentation"
    ? "predicted classes (click a class to explain its pixels)"
    : "detections (click a box to explain it)";
  await this.predictions.show({ src, caption, objectURL: true });
};

/** The query parameters that name what is explained: a class, or `#i` the i-th detection. */
export function targetParams(target) {
  if (!target) return {};
  return target.startsWith("#") ? { detection: target.slice(1) } : { target };
}

/** One plane [H*W] from [C, H, W] values as the server's views draw them. */
export function reducePlane(data, channels, size, view) {
  if (view === "cam") return data.subarray(0, size); // one map, drawn as it is
  const plane = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    let best = 0;
    for (let c = 0; c < channels; c++) {
      const v = data[c * size + i];
      const candidate = view === "positive" ? Math.max(0, v) : view === "negative" ? Math.max(0, -v) : Math.abs(v);
      if (candidate > best) best = candidate;
    }
    plane[i] = best;
  }
  return plane;
}

/** The methods /v1/methods lists at `endpoint`; names from the OpenAPI enum where it lists none. */
function listed(caps, endpoint, path) {
  const methods = methodsAt(caps.methods ?? [], endpoint);
  return methods.length ? methods : caps.choices(path, "method").map((name) => ({ name, parameters: null }));
}

function fill(select, methods) {
  select.replaceChildren(...methods.map((m) => h("option", { value: m.name, title: m.summary ?? "" }, m.name)));
}
