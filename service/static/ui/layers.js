// The layer tree: the catalog's dotted names nested, searchable, with arrow-key navigation and
// a tick per layer for the compare view.

import { h, shape } from "./dom.js";

const parentOf = (name) => (name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : "");

/** The layer the first view opens on: the second convolution, early enough to still look like
 *  the picture and deep enough to show features; else the first layer with a spatial map. */
export function defaultLayer(layers) {
  const convolutions = layers.filter((l) => l.spatial && /conv/i.test(l.type));
  return (convolutions[1] ?? convolutions[0] ?? layers.find((l) => l.spatial) ?? layers[0])?.name ?? "";
}

/** Three convolutions spread over the depth: the "conv1 + conv2 + conv3" comparison. */
export function defaultComparison(layers) {
  const convolutions = layers.filter((l) => l.spatial && /conv/i.test(l.type));
  const pool = convolutions.length >= 3 ? convolutions : layers.filter((l) => l.spatial);
  if (pool.length <= 3) return pool.map((l) => l.name);
  const picks = [0, Math.floor((pool.length - 1) / 2), pool.length - 1];
  return picks.map((i) => pool[i].name);
}

export class LayerTree {
  /**
   * @param {HTMLElement} list the <ul role=tree>
   * @param {HTMLInputElement} search
   * @param {{onSelect(name), onToggleCompare(name, on)}} handlers
   */
  constructor(list, search, handlers) {
    this.list = list;
    this.search = search;
    this.handlers = handlers;
    this.layers = [];
    this.selected = "";
    this.compared = new Set();
    this.collapsed = new Set();
    search.addEventListener("input", () => this.render());
    list.addEventListener("keydown", (event) => this.#key(event));
  }

  setLayers(layers) {
    this.layers = layers;
    this.names = new Set(layers.map((l) => l.name));
    this.parents = new Set(layers.map((l) => parentOf(l.name)).filter((p) => this.names.has(p)));
    this.collapsed.clear();
    this.render();
  }

  /** Mark the selected layer (opening the way to it) and the layers being compared. */
  show(selected, compared) {
    this.selected = selected;
    this.compared = new Set(compared);
    for (let parent = parentOf(selected); parent; parent = parentOf(parent)) this.collapsed.delete(parent);
    this.render();
  }

  #visible() {
    const query = this.search.value.trim().toLowerCase();
    if (query) {
      const hits = new Set();
      for (const layer of this.layers) {
        const text = `${layer.name} ${layer.type} ${shape(layer.output_shape)}`.toLowerCase();
        if (!text.includes(query)) continue;
        for (let name = layer.name; name; name = parentOf(name)) hits.add(name);
      }
      return this.layers.filter((l) => hits.has(l.name));
    }
    return this.layers.filter((layer) => {
      for (let parent = parentOf(layer.name); parent; parent = parentOf(parent)) {
        if (this.collapsed.has(parent)) return false;
      }
      return true;
    });
  }

  render() {
    const rows = this.#visible().map((layer) => this.#row(layer));
    if (!rows.length) rows.push(h("li", { class: "muted small empty" }, "No layer matches."));
    this.list.replaceChildren(...rows);
    this.list.querySelector(".selected")?.scrollIntoView({ block: "nearest" });
  }

  #row(layer) {
    const depth = layer.name.split(".").length - 1;
    const isParent = this.parents.has(layer.name);
    const open = !this.collapsed.has(layer.name);
    const caret = isParent
      ? h("button", {
          type: "button", class: "caret", "aria-label": open ? "collapse" : "expand",
          onclick: (event) => {
            event.stopPropagation();
            if (open) this.collapsed.add(layer.name);
            else this.collapsed.delete(layer.name);
            this.render();
          },
        }, open ? "▾" : "▸")
      : h("span", { class: "caret" });
    const tick = h("input", {
      type: "checkbox", class: "compare-tick", title: "compare this layer",
      "aria-label": `compare ${layer.name}`, checked: this.compared.has(layer.name),
      onclick: (event) => event.stopPropagation(),
      onchange: (event) => this.handlers.onToggleCompare(layer.name, event.target.checked),
    });
    const label = layer.name.slice(layer.name.lastIndexOf(".") + 1);
    return h(
      "li",
      {
        role: "treeitem",
        class: ["layer", layer.name === this.selected && "selected", !layer.spatial && "flat"].filter(Boolean).join(" "),
        "aria-selected": layer.name === this.selected ? "true" : "false",
        title: `${layer.name} · ${layer.type} · ${shape(layer.output_shape)} · ${layer.params.toLocaleString()} parameters` +
          (layer.spatial ? "" : " · no spatial map"),
        dataset: { layer: layer.name },
        style: { "--depth": String(depth) },
        onclick: () => {
          this.list.focus({ preventScroll: true }); // arrow keys walk the tree from here
          this.handlers.onSelect(layer.name);
        },
      },
      caret, tick,
      h("span", { class: "name" }, label),
      h("span", { class: "type" }, layer.type),
      h("span", { class: "shape" }, shape(layer.output_shape)),
    );
  }

  #key(event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    event.preventDefault();
    const visible = this.#visible().map((l) => l.name);
    if (!visible.length) return;
    const index = visible.indexOf(this.selected);
    const step = event.key === "ArrowDown" ? 1 : -1;
    const next = index < 0 ? 0 : Math.min(visible.length - 1, Math.max(0, index + step));
    this.handlers.onSelect(visible[next]);
  }
}
