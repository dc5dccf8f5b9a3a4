// The portal: wires the model list, the image intake, the layer tree and the views to one state
// object kept in the URL. Views appear only when /openapi.json lists their endpoints.

import { ApiError, Capabilities, getJSON, pictureURL, postJSON, request, setApiKey, uploadImage } from "./api.js";
import { ClassesView } from "./classes.js";
import { ModelsView } from "./compare.js";
import { ConceptsView } from "./concepts.js";
import { DatasetView, datasetReference } from "./dataset.js";
import { $, h } from "./dom.js";
import { EmbeddingView, FiltersView, StatsView, SynthesisView } from "./insight.js";
import { defaultComparison, defaultLayer, LayerTree } from "./layers.js";
import { CompareView, Enlarger, FeatureMapsView, isVector } from "./maps.js";
import { readState, writeState } from "./state.js";
import { TrustView } from "./trust.js";
import { UnitPage } from "./unit.js";

const COLORMAPS = ["viridis", "magma", "inferno", "plasma", "cividis", "turbo", "jet", "gray", "coolwarm", "RdBu_r", "twilight"];
const MAP_VIEWS = new Set(["maps", "compare"]);

class Portal {
  constructor() {
    this.state = readState();
    this.models = [];
    this.catalogs = new Map();
    this.layers = [];
    this.samples = [];
    this.tree = new LayerTree($("layer-tree"), $("layer-search"), {
      onSelect: (name) => this.selectLayer(name),
      onToggleCompare: (name, on) => this.toggleCompare(name, on),
    });
    this.views = [
      new FeatureMapsView(this), new CompareView(this), new ClassesView(this), new TrustView(this),
      new StatsView(this), new FiltersView(this), new SynthesisView(this), new EmbeddingView(this),
      new DatasetView(this), new ConceptsView(this), new ModelsView(this),
    ];
    this.unitPage = new UnitPage(this);
    this.enlarger = new Enlarger(this);
  }

  // --- helpers the views use -------------------------------------------------------------

  /** An API path template with the current model (and layer) filled in. */
  path(template) {
    return template
      .replace("{model}", encodeURIComponent(this.state.model))
      .replace("{layer}", encodeURIComponent(this.state.layer));
  }

  /** POST to a v1 endpoint (a path template) and return its JSON answer. */
  post(template, params, signal) {
    return this.withImage(() => postJSON(this.path(template), { params, signal }));
  }

  /**
   * Send a request that names the image by id. If the server forgot the image (evicted,
   * restarted, or another replica answered), upload the copy kept here again, once, and
   * retry: ids are hashes of the bytes, so the retry names the same picture.
   */
  async withImage(send) {
    try {
      return await send();
    } catch (error) {
      const forgotten = error instanceof ApiError && error.status === 404 && error.body?.field === "image_id";
      if (!forgotten || !this.picture) throw error;
      this.reupload ??= uploadImage(this.picture.blob, this.picture.name).finally(() => {
        this.reupload = null;
      });
      await this.reupload;
      return send();
    }
  }

  layer(name) {
    return this.layers.find((l) => l.name === name);
  }

  comparedLayers() {
    return this.state.compare.split(",").filter((name) => name && this.layer(name));
  }

  update(patch) {
    Object.assign(this.state, patch);
    writeState(this.state);
    this.render();
  }

  selectLayer(name) {
    if (name !== this.state.layer) this.update({ layer: name });
  }

  toggleCompare(name, on) {
    const names = this.comparedLayers().filter((n) => n !== name);
    if (on) names.push(name);
    const byDepth = (a, b) => this.layers.indexOf(this.layer(a)) - this.layers.indexOf(this.layer(b));
    this.update({ compare: names.sort(byDepth).join(",") });
  }

  enlarge(layer, channel) {
    this.enlarger.open(layer, channel);
  }

  // --- start-up ----------------------------------------------------------------------------

  async start() {
    this.#wireIntake();
    this.#wireControls();
    window.addEventListener("hashchange", () => this.#restore(readState()));
    document.addEventListener("layerscope:answer", (event) => {
      $("status").textContent = `answered in ${event.detail.ms} ms`;
    });
    try {
      const [caps, models] = await Promise.all([Capabilities.load(), this.#loadModels()]);
      this.caps = caps;
      this.models = models;
    } catch (error) {
      return this.banner(error);
    }
    if (!this.models.length) return this.banner(new Error("The server serves no model; see LAYERSCOPE_MODELS."));
    this.#buildTabs();
    for (const view of this.views) view.configure?.(this.caps);
    $("model").replaceChildren(
      ...this.models.map((m) => h("option", { value: m.name }, `${m.name} (${m.in_channels}×${m.input_size.join("×")}, ${m.num_classes} classes)`)),
    );
    this.#loadSamples(); // thumbnails may arrive after the first view
    await this.#restore(this.state);
    document.body.dataset.ready = "true";
  }

  /** The model list; while the server warms up (503) ask again rather than fail. */
  async #loadModels() {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await getJSON("/v1/models")).data;
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 503 || attempt >= 60) throw error;
        $("status").textContent = "models are loading…";
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  /** Apply a state read from the URL: model, image (re-uploading a sample if needed), view. */
  async #restore(state) {
    this.state = state;
    const model = this.models.find((m) => m.name === state.model) ?? this.models[0];
    await this.setModel(model.name, { keep: true });
    if (state.sample) {
      // Samples are re-uploaded: the id is a hash of the bytes, so the link keeps working
      // even after the server restarted and forgot the image.
      await this.useSample(state.sample, { quiet: true });
    } else if (state.image.startsWith("dataset:")) {
      this.#showDatasetImage(state.image);
      this.render();
    } else if (state.image) {
      $("image-info").textContent = `image ${state.image.slice(0, 12)}… from the link`;
      this.render();
    } else {
      this.render();
    }
  }

  async setModel(name, { keep = false } = {}) {
    const model = this.models.find((m) => m.name === name);
    if (!model) return;
    this.model = model;
    if (!this.catalogs.has(name)) {
      try {
        this.catalogs.set(name, (await getJSON(`/v1/models/${encodeURIComponent(name)}/layers`)).data);
      } catch (error) {
        return this.banner(error);
      }
    }
    this.layers = this.catalogs.get(name);
    this.tree.setLayers(this.layers);
    this.views.find((v) => v.id === "classes").setLayers(this.layers);
    $("model").value = name;
    $("layer-count").textContent = `${this.layers.length}`;
    $("model-info").replaceChildren(
      `${model.architecture} · `,
      model.pretrained ? "trained weights" : h("span", { class: "random", title: "no trained weights were loaded: predictions and explanations are those of an untrained network" }, "⚠ random weights"),
      ` · ${model.device}`,
    );
    const patch = { model: name };
    if (!keep || !this.layer(this.state.layer)) patch.layer = defaultLayer(this.layers);
    if (!keep || !this.comparedLayers().length) patch.compare = defaultComparison(this.layers).join(",");
    if (!keep) Object.assign(patch, { target: "", camlayer: "", gparams: "", cparams: "", tlayer: "" });
    Object.assign(this.state, patch);
    writeState(this.state);
  }

  // --- the image ---------------------------------------------------------------------------

  #wireIntake() {
    const drop = $("drop");
    $("file").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) this.useImage(file, file.name);
    });
    // The whole window takes a dropped picture; the drop zone shows where.
    window.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("hover");
    });
    window.addEventListener("dragleave", (event) => {
      if (!event.relatedTarget) drop.classList.remove("hover");
    });
    window.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("hover");
      const file = [...(event.dataTransfer?.files ?? [])].find((f) => f.type.startsWith("image/")) ?? event.dataTransfer?.files?.[0];
      if (file) this.useImage(file, file.name);
    });
    window.addEventListener("paste", (event) => {
      const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
      if (file) this.useImage(file, file.name || "pasted image");
    });
    drop.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") $("file").click();
    });
  }

  async #loadSamples() {
    try {
      this.samples = (await getJSON("/ui/samples")).data;
    } catch (error) {
      return this.banner(error);
    }
    $("samples").replaceChildren(
      ...this.samples.map((sample) =>
        h("button", {
          type: "button", class: "sample", title: sample.name, dataset: { sample: sample.name },
          onclick: () => this.useSample(sample.name),
        }, h("img", { src: sample.url, alt: sample.name })),
      ),
    );
  }

  /** A built-in sample's bytes, fetched once per page. */
  async sampleBlob(name) {
    this.sampleBlobs ??= new Map();
    if (!this.sampleBlobs.has(name)) {
      const blob = request(`/ui/samples/${encodeURIComponent(name)}`).then((r) => r.blob());
      this.sampleBlobs.set(name, blob);
      blob.catch(() => this.sampleBlobs.delete(name));
    }
    return this.sampleBlobs.get(name);
  }

  async useSample(name, { quiet = false } = {}) {
    let blob;
    try {
      blob = await this.sampleBlob(name);
    } catch (error) {
      return this.banner(error);
    }
    const channels = this.samples.find((s) => s.name === name)?.channels ?? (blob.type === "image/png" ? 1 : 3);
    // A digit on the photo model (or a photo on the digit model) shows little: switch to a
    // model that takes this kind of picture, if there is one.
    if (!quiet && this.model.in_channels !== channels) {
      const fitting = this.models.find((m) => m.in_channels === channels);
      if (fitting) await this.setModel(fitting.name);
    }
    await this.useImage(blob, name, { sample: name });
  }

  async useImage(blob, filename, { sample = "" } = {}) {
    const preview = $("preview");
    if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    preview.hidden = false;
    preview.decode().then(
      () => preview.classList.toggle("small", preview.naturalWidth < 128),
      () => { preview.hidden = true; }, // not a picture the browser knows; the server will say more
    );
    $("image-info").textContent = `${filename}: uploading…`;
    let stored;
    try {
      stored = await uploadImage(blob, filename);
    } catch (error) {
      // A rejected picture leaves nothing of the previous one on screen.
      $("image-info").textContent = `${filename}: not accepted`;
      preview.hidden = true;
      this.picture = null;
      this.banner(error);
      return this.update({ image: "", sample: "", target: "" });
    }
    this.banner(null);
    this.picture = { blob, name: filename };
    $("image-info").textContent =
      `${filename} · ${stored.width}×${stored.height} ${stored.format} · ${(stored.bytes / 1024).toFixed(0)} KB`;
    const patch = { image: stored.image_id, sample };
    if (stored.image_id !== this.state.image) patch.target = "";
    this.update(patch);
  }

  /** A dataset's picture as the image of every tab: named by reference, never uploaded. */
  useDatasetImage(dataset, index) {
    const image = datasetReference(dataset, index);
    this.picture = null; // nothing to re-upload: the server holds the dataset
    this.#showDatasetImage(image);
    this.update({ image, sample: "", target: image === this.state.image ? this.state.target : "" });
  }

  async #showDatasetImage(reference) {
    const [dataset, index] = reference.slice("dataset:".length).split("/");
    const preview = $("preview");
    $("image-info").textContent = `${dataset} #${index} (dataset picture)`;
    try {
      const src = await pictureURL(`/v1/datasets/${encodeURIComponent(dataset)}/images/${index}`);
      if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
      preview.src = src;
      preview.hidden = false;
      preview.decode().then(() => preview.classList.toggle("small", preview.naturalWidth < 128), () => {});
    } catch (error) {
      preview.hidden = true;
      this.banner(error);
    }
  }

  // --- controls and views ------------------------------------------------------------------

  #wireControls() {
    $("model").addEventListener("change", async (event) => {
      await this.setModel(event.target.value);
      this.render();
    });
    const channelsChanged = () => {
      const mode = $("channels-mode").value;
      const n = Math.max(1, Number($("channels-n").value) || 16);
      const list = $("channels-list").value.trim();
      const channels = mode === "all" ? "all" : mode === "list" ? list || "0" : `${mode}:${n}`;
      this.update({ channels });
    };
    $("channels-mode").addEventListener("change", channelsChanged);
    $("channels-n").addEventListener("change", channelsChanged);
    $("channels-list").addEventListener("change", channelsChanged);
    $("reduce").addEventListener("change", (e) => {
      // PCA of the first 16 of 512 channels is rarely what anyone means: it takes every
      // channel, unless a list of channels was asked for.
      const patch = { reduce: e.target.value };
      if (patch.reduce === "pca" && /^(first|last|top):/.test(this.state.channels)) patch.channels = "all";
      this.update(patch);
    });
    $("colormap").addEventListener("change", (e) => this.update({ cmap: e.target.value }));
    $("scale").addEventListener("change", (e) => this.update({ scale: e.target.value }));
    $("overlay").addEventListener("change", (e) => this.update({ overlay: e.target.checked ? "1" : "0" }));
  }

  #buildTabs() {
    const FEATURE_MAPS = "/v1/models/{model}/feature-maps";
    const fill = (id, values) => $(id).replaceChildren(...values.map((v) => h("option", { value: v }, v)));
    fill("reduce", this.caps.choices(FEATURE_MAPS, "reduce", ["none", "pca", "mean", "sum", "max"]));
    fill("scale", this.caps.choices(FEATURE_MAPS, "scale", ["channel", "shared"]));
    fill("colormap", COLORMAPS);
    fill("cam-colormap", COLORMAPS);
    fill("grad-colormap", COLORMAPS);
    this.available = this.views.filter((view) => view.needs.some((path) => this.caps.has(path, view.httpMethod)));
    $("tabs").replaceChildren(
      ...this.available.map((view) =>
        h("button", {
          type: "button", role: "tab", id: `tab-${view.id}`, dataset: { view: view.id },
          onclick: () => this.update({ view: view.id }),
        }, $(`view-${view.id}`).dataset.title),
      ),
    );
  }

  #syncControls() {
    const { state } = this;
    const [mode, n] = /^(first|last|top):\d+$/.test(state.channels)
      ? state.channels.split(":")
      : [state.channels === "all" ? "all" : "list", $("channels-n").value];
    $("channels-mode").value = mode;
    $("channels-n").value = n;
    if (mode === "list") $("channels-list").value = state.channels;
    $("channels-n-field").hidden = mode === "all" || mode === "list";
    $("channels-list-field").hidden = mode !== "list";
    $("reduce").value = state.reduce;
    if (!COLORMAPS.includes(state.cmap)) $("colormap").append(h("option", { value: state.cmap }, state.cmap));
    $("colormap").value = state.cmap;
    $("scale").value = state.scale;
    $("overlay").checked = state.overlay === "1";
    this.#disableIdleOptions();
  }

  /** Options that change nothing for the chosen reduction or layer are disabled, with why. */
  #disableIdleOptions() {
    const { state } = this;
    const info = this.layer(state.layer);
    const vector = state.view === "maps" && isVector(info);
    const reasons = {
      "channels-mode": vector ? `${state.layer} is a vector: its values are all shown as a sorted bar chart` : "",
      "channels-n": vector ? "a vector's values are all shown" : "",
      reduce: vector ? "a vector has no map to reduce" : "",
      colormap: vector ? "a bar chart has no colormap"
        : state.reduce === "pca" ? "PCA shows the first three components as red, green and blue: no colormap applies" : "",
      scale: vector ? "a bar chart has one axis"
        : state.reduce === "pca" ? "PCA components are each scaled to their own range"
          : state.reduce !== "none" ? `${state.reduce} gives one map per layer, scaled to its own range` : "",
      overlay: vector ? "a vector has no positions to lay over the picture" : "",
    };
    for (const [id, reason] of Object.entries(reasons)) {
      const input = $(id);
      input.disabled = Boolean(reason);
      input.closest("label").title = reason;
    }
  }

  render() {
    if (!this.available) return;
    const { state } = this;
    const active = this.available.find((v) => v.id === state.view) ?? this.available[0];
    for (const view of this.views) $(`view-${view.id}`).hidden = view !== active;
    for (const tab of $("tabs").children) tab.setAttribute("aria-selected", String(tab.dataset.view === active.id));
    $("map-controls").hidden = !MAP_VIEWS.has(active.id);
    document.body.classList.toggle("comparing", active.id === "compare");
    this.#syncControls();
    this.tree.show(state.layer, this.comparedLayers());
    active.render();
  }

  /** A page-wide message for what no view owns (loading models, uploads); null clears it. */
  banner(error) {
    const banner = $("banner");
    if (!error) {
      banner.hidden = true;
      return;
    }
    banner.replaceChildren(error.message || String(error));
    if (error instanceof ApiError && error.status === 401) {
      const input = h("input", { type: "password", placeholder: "API key", "aria-label": "API key" });
      banner.append(" ", input, " ", h("button", {
        type: "button", onclick: () => { setApiKey(input.value.trim()); location.reload(); },
      }, "Use key"));
    }
    banner.hidden = false;
  }
}

new Portal().start();
