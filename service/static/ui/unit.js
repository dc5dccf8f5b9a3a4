// The unit page, as Microscope had: one channel of one layer (opened from a feature-map tile
// or a contribution bar) with its feature visualization, the dataset pictures that excite it
// most (boxes drawn by the server), what drives it in the current picture (`unit=L:K`
// Grad-CAM), its mean contribution to each class over the dataset, and the layer's channels
// that carry the current picture's top class, each bar opening that channel's page. Each panel
// shows only what the server offers.

import { followJob, request } from "./api.js";
import { $, ResultPane, h, number, pngData } from "./dom.js";

const MAXIMIZE = "/v1/models/{model}/layers/{layer}/maximize";
const UNITS = "/v1/models/{model}/datasets/{dataset}/units";
const CONTRIBUTIONS = "/v1/models/{model}/datasets/{dataset}/contributions";
const CAM = "/v1/models/{model}/cam";
const PICTURE_CONTRIBUTIONS = "/v1/models/{model}/contributions";
const SAMPLE = 500; // dataset pictures ranked per unit: a few seconds on digits
const TOP = 6; // exemplars shown
const CHANNELS = 8; // the layer's channels listed for the current picture

/** A POST that may answer 202: follow the job, then fetch its result. */
async function answer(path, params, signal) {
  const response = await request(path, { method: "POST", params, signal });
  if (response.status !== 202) return response;
  const location = response.headers.get("Location");
  await followJob(location, { signal });
  return request(`${location}/result`, { signal });
}

/** One horizontal bar: a label, a fill as long as |value| / peak, the value. */
function bar(label, value, peak, attributes = {}) {
  return h(
    "div",
    { class: "unit-bar", ...attributes, dataset: { label, value: String(value ?? ""), ...attributes.dataset } },
    h("span", { class: "unit-bar-label" }, label),
    h("span", { class: `unit-bar-fill${(value ?? 0) < 0 ? " negative" : ""}`, style: { width: `${(60 * Math.abs(value ?? 0)) / peak}%` } }),
    h("span", { class: "unit-bar-value small" }, value === null ? "–" : number(value)),
  );
}

export class UnitPage {
  constructor(app) {
    this.app = app;
    this.section = $("unit-page");
    this.panes = {
      visual: new ResultPane($("unit-visual")),
      exemplars: new ResultPane($("unit-exemplars")),
      drives: new ResultPane($("unit-drives")),
      classes: new ResultPane($("unit-classes")),
      channels: new ResultPane($("unit-channels")),
    };
    this.contributions = new Map(); // "model|dataset|layer" -> the dataset job's result
  }

  /** The dataset the Dataset tab names, else the first the server lists. */
  dataset() {
    return $("dataset-name")?.value || "digits";
  }

  #path(template, layer) {
    return template
      .replace("{model}", encodeURIComponent(this.app.state.model))
      .replace("{layer}", encodeURIComponent(layer))
      .replace("{dataset}", encodeURIComponent(this.dataset()));
  }

  hide() {
    this.section.hidden = true;
    for (const pane of Object.values(this.panes)) pane.cancel();
  }

  show(layer, channel) {
    const caps = this.app.caps;
    this.section.hidden = false;
    this.section.dataset.unit = `${layer}:${channel}`;
    $("unit-title").textContent = `unit ${layer}:${channel} · dataset ${this.dataset()}`;
    const offered = {
      visual: caps.has(MAXIMIZE),
      exemplars: caps.has(UNITS),
      drives: Boolean(caps.parameter(CAM, "unit")) && Boolean(this.app.state.image),
      classes: caps.has(CONTRIBUTIONS),
      channels: caps.has(PICTURE_CONTRIBUTIONS) && Boolean(this.app.state.image),
    };
    for (const [name, on] of Object.entries(offered)) this.panes[name].figure.parentElement.hidden = !on;
    if (offered.visual) this.#visual(layer, channel);
    if (offered.exemplars) this.#exemplars(layer, channel);
    if (offered.drives) this.#drives(layer, channel);
    if (offered.classes) this.#classes(layer, channel);
    if (offered.channels) this.#channels(layer);
  }

  #key(layer, channel, more = "") {
    return `${this.app.state.model}|${this.dataset()}|${layer}|${channel}|${more}`;
  }

  #visual(layer, channel) {
    const params = { channel, steps: 64, format: "json", async: "true" };
    this.panes.visual.run(this.#key(layer, channel, "visual"), async (signal) => {
      const result = await (await answer(this.#path(MAXIMIZE, layer), params, signal)).json();
      return { src: pngData(result.png_base64), caption: `activation ${number(result.activation)} after ${result.steps} steps` };
    });
  }

  #exemplars(layer, channel) {
    const params = { layer, channels: String(channel), k: TOP, limit: SAMPLE, format: "png" };
    const pane = this.panes.exemplars;
    pane.run(this.#key(layer, channel, "exemplars"), async (signal) => {
      const blob = await (await answer(this.#path(UNITS, layer), params, signal)).blob();
      return {
        src: URL.createObjectURL(blob),
        objectURL: true,
        caption: `the ${TOP} of ${SAMPLE} ${this.dataset()} pictures with its largest activation; red: the receptive field of its strongest position, cropped below`,
      };
    });
  }

  #drives(layer, channel) {
    const { state } = this.app;
    const params = { image_id: state.image, unit: `${layer}:${channel}`, method: "gradcam", format: "png" };
    this.panes.drives.run(`${this.#key(layer, channel, "drives")}|${state.image}`, async (signal) => {
      const response = await this.app.withImage(() => request(this.#path(CAM, layer), { method: "POST", params, signal }));
      return { src: URL.createObjectURL(await response.blob()), objectURL: true, caption: "Grad-CAM of the unit's spatial mean in the current picture" };
    });
  }

  #classes(layer, channel) {
    const key = `${this.app.state.model}|${this.dataset()}|${layer}`;
    const pane = this.panes.classes;
    pane.run(this.#key(layer, channel, "classes"), async (signal) => {
      let result = this.contributions.get(key);
      if (!result) {
        const params = { layer, limit: SAMPLE };
        result = await (await answer(this.#path(CONTRIBUTIONS, layer), params, signal)).json();
        this.contributions.set(key, result);
      }
      const values = result.matrix.map((row) => (row ? row[channel] : null));
      const peak = Math.max(1e-12, ...values.map((v) => Math.abs(v ?? 0)));
      const bars = result.classes.map((c, i) => bar(c.label, values[i], peak));
      pane.frame.hidden = true;
      pane.extra.replaceChildren(...bars);
      pane.caption.textContent = `mean ${result.method} contribution of channel ${channel} to each class, over the ${result.images} pictures of ${result.dataset}`;
      return null;
    });
  }

  /** The layer's channels that carry the top class in the current picture, largest first;
   * clicking a bar opens that channel's page. */
  #channels(layer) {
    const { state } = this.app;
    const params = { image_id: state.image, layer, top: CHANNELS, format: "json" };
    const pane = this.panes.channels;
    pane.run(`${state.model}|${state.image}|${layer}|channels`, async (signal) => {
      const send = () => request(this.#path(PICTURE_CONTRIBUTIONS, layer), { method: "POST", params, signal });
      const result = await (await this.app.withImage(send)).json();
      const { channels, target } = result.items[0];
      const peak = Math.max(1e-12, ...channels.map((c) => Math.abs(c.contribution)));
      const bars = channels.map((c) =>
        bar(`${layer}:${c.channel}`, c.contribution, peak, {
          role: "button",
          tabindex: "0",
          title: `open unit ${layer}:${c.channel}`,
          dataset: { channel: String(c.channel) },
          onclick: () => this.app.enlarge(layer, c.channel),
          onkeydown: (event) => event.key === "Enter" && this.app.enlarge(layer, c.channel),
        }),
      );
      pane.frame.hidden = true;
      pane.extra.replaceChildren(...bars);
      pane.caption.textContent = `${result.method} contribution of ${layer}'s channels to "${target.label}" in this picture; click a bar to open its unit`;
      return null;
    });
  }
}
