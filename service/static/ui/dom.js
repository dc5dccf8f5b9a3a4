// Small DOM helpers and the result pane every view draws into: empty, busy, picture or error,
// never blank.

/** `h("button", {class: "x", onclick}, "text", child)`: an element with attributes and children. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    // CSSOM, not a style attribute: the page's Content-Security-Policy forbids inline styles.
    else if (name === "style") for (const [k, v] of Object.entries(value)) element.style.setProperty(k, v);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

/** A number in few characters: 3 significant digits, no exponent for ordinary values. */
export function number(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)) return value.toExponential(2);
  return String(Number(value.toPrecision(3)));
}

export const shape = (dims) => (dims ? dims.join("×") : "–");

export const $ = (id) => document.getElementById(id);

/**
 * The controls with these element ids, by state key: each writes its value (a checkbox "1" or
 * "0", text trimmed) to that key of the app's state when it changes.
 */
function bindInputs(app, ids) {
  const inputs = {};
  for (const [key, id] of Object.entries(ids)) {
    const input = $(id);
    input.addEventListener("change", () => {
      app.update({ [key]: input.type === "checkbox" ? (input.checked ? "1" : "0") : input.value.trim() });
    });
    inputs[key] = input;
  }
  return inputs;
}

/**
 * One figure that shows the answer of one kind of request. `run(work)` cancels the request
 * still in flight, shows a busy state, and then the picture or the error's message.
 */
export class ResultPane {
  constructor(figure) {
    this.figure = figure;
    this.image = h("img", { class: "panel", alt: "" });
    this.hotspots = h("div", { class: "hotspots" });
    this.frame = h("div", { class: "picture" }, this.image, this.hotspots);
    this.message = h("p", { class: "message muted" });
    this.errorBox = h("p", { class: "error", role: "alert", hidden: true });
    this.caption = h("figcaption", { class: "small" });
    this.scale = h("div", { class: "scale" }); // colorbars
    this.readout = h("p", { class: "readout small" }); // the value under the cursor
    this.extra = h("div", { class: "extra" });
    this.hover = null; // (x, y) in the picture's pixels -> a sentence, or null
    figure.replaceChildren(this.message, this.errorBox, this.frame, this.scale, this.readout, this.caption, this.extra);
    this.frame.addEventListener("pointermove", (event) => {
      if (!this.hover) return;
      const rect = this.image.getBoundingClientRect();
      if (!rect.width || !rect.height) return;
      const x = ((event.clientX - rect.left) * this.image.naturalWidth) / rect.width;
      const y = ((event.clientY - rect.top) * this.image.naturalHeight) / rect.height;
      this.readout.textContent = this.hover(x, y) ?? "";
    });
    this.frame.addEventListener("pointerleave", () => {
      this.readout.textContent = "";
    });
    this.controller = null;
    this.objectURL = null;
    this.frame.hidden = true;
  }

  /** Nothing to show yet: say what to do instead. */
  empty(text) {
    this.cancel();
    this.figure.classList.remove("busy");
    this.message.textContent = text;
    this.message.hidden = false;
    this.errorBox.hidden = true;
    this.frame.hidden = true;
    this.#clearExtras();
    delete this.figure.dataset.key;
  }

  #clearExtras() {
    this.caption.textContent = "";
    this.extra.replaceChildren();
    this.scale.replaceChildren();
    this.readout.textContent = "";
    this.hover = null;
  }

  cancel() {
    this.controller?.abort();
    this.controller = null;
    this.figure.classList.remove("busy");
    delete this.figure.dataset.pending;
  }

  /**
   * Run `work(signal)`; it resolves to what `show` takes, or draws itself and resolves to
   * null. `key` skips work whose answer is already on screen.
   */
  async run(key, work) {
    if (key && this.figure.dataset.key === key && !this.figure.classList.contains("busy")) return;
    this.cancel();
    const controller = new AbortController();
    this.controller = controller;
    this.figure.dataset.pending ||= "working…";
    this.figure.classList.add("busy");
    this.message.hidden = true;
    const started = performance.now();
    try {
      const answer = await work(controller.signal);
      if (controller.signal.aborted) return;
      if (answer) await this.show(answer);
      const ms = Math.round(performance.now() - started);
      this.figure.dataset.ms = String(ms);
      this.figure.dataset.key = key || "";
      this.errorBox.hidden = true;
      document.dispatchEvent(new CustomEvent("layerscope:answer", { detail: { ms, figure: this.figure.id } }));
    } catch (error) {
      if (error.name === "AbortError" || controller.signal.aborted) return;
      this.fail(error);
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        this.figure.classList.remove("busy");
        delete this.figure.dataset.pending;
      }
    }
  }

  /** Draw a picture (`src`: data or object URL) with its caption; resolves once decoded. */
  async show({ src, caption = "", objectURL = false }) {
    const previous = this.objectURL;
    this.objectURL = objectURL ? src : null;
    this.image.src = src;
    try {
      await this.image.decode();
    } catch {
      throw new Error("The server's picture could not be decoded.");
    } finally {
      if (previous) URL.revokeObjectURL(previous);
    }
    this.image.classList.toggle("small", this.image.naturalWidth < 160);
    this.hotspots.replaceChildren();
    this.scale.replaceChildren();
    this.readout.textContent = "";
    this.hover = null;
    this.frame.hidden = false;
    this.message.hidden = true;
    this.caption.textContent = caption;
  }

  fail(error) {
    this.figure.dataset.key = "";
    this.errorBox.textContent = error.message || String(error);
    this.errorBox.hidden = false;
    this.frame.hidden = true;
    this.#clearExtras();
  }
}

/**
 * A job's progress under a view: the box #ID (class "job") gets a bar #ID-progress and a line
 * of text #ID-text before anything it already holds (a Cancel button).
 */
export class JobBox {
  constructor(id) {
    this.box = $(id);
    this.bar = h("progress", { id: `${id}-progress`, max: "1", value: "0" });
    this.text = h("span", { id: `${id}-text`, class: "muted small" });
    this.box.prepend(this.bar, this.text);
  }

  /** Show the box: an empty bar (an indeterminate one when `waiting`) and `text`. */
  start(text, { waiting = false } = {}) {
    this.box.hidden = false;
    if (waiting) this.bar.removeAttribute("value");
    else this.bar.value = 0;
    this.text.textContent = text;
  }

  /** The bar at the job's fraction done, and `text`. */
  show(job, text) {
    this.bar.value = job.progress.fraction;
    this.text.textContent = text;
  }

  say(text) {
    this.text.textContent = text;
  }
}

/**
 * A tab of the portal: `id` names it (in the URL, #view-ID and, with `pane`, its result pane
 * #ID-result), `needs` lists the endpoints it draws from, `inputs` the controls it binds
 * (`bindInputs`).
 */
export class View {
  constructor(app, { id, needs, inputs = {}, pane = true }) {
    this.app = app;
    this.id = id;
    this.needs = needs;
    if (pane) this.pane = new ResultPane($(`${id}-result`));
    this.inputs = bindInputs(app, inputs);
  }
}

export const pngData = (base64) => `data:image/png;base64,${base64}`;
