// The attribution methods the server offers, read from GET /v1/methods (their family, the
// endpoints that serve them and their parameters with defaults). Every method picker and
// every method parameter input of the portal is built from that list: no method or
// parameter is named here.

import { h } from "./dom.js";

export const METHODS = "/v1/methods";
export const CAM = "/v1/models/{model}/cam";
export const GRADIENTS = "/v1/models/{model}/gradients";
export const ATTRIBUTIONS = "/v1/models/{model}/attributions";
/** The endpoint names /v1/methods uses, and their path templates. */
export const ENDPOINTS = Object.freeze({ cam: CAM, gradients: GRADIENTS, attributions: ATTRIBUTIONS });

/** The methods served at `endpoint` (cam, gradients, attributions), in the server's order. */
export function methodsAt(methods, endpoint) {
  return methods.filter((m) => m.endpoints.includes(endpoint));
}

/** Method parameter values kept in one state entry as a query string, "steps=8&seed=1". */
export function readParams(text) {
  return Object.fromEntries(new URLSearchParams(text || ""));
}

export function writeParams(values) {
  const kept = Object.entries(values).filter(([, value]) => value !== "" && value !== undefined && value !== null);
  return new URLSearchParams(kept).toString();
}

/** The values of `text` (readParams) that `method` takes: another method's are dropped. */
export function paramsFor(method, text) {
  const names = new Set(Object.keys(method?.parameters ?? {}));
  return Object.fromEntries(Object.entries(readParams(text)).filter(([name]) => names.has(name)));
}

/** Whether a CAM reads a layer (/v1/methods lists `layer`; a bare name from OpenAPI: yes). */
export const takesLayer = (method) => !method?.parameters || "layer" in method.parameters;

/** Whether a method re-runs the model once per perturbation (slow: runs as a job). */
export const isPerturbation = (method) => method?.family === "perturbation";

/**
 * The inputs of one method's parameters, rebuilt when the method changes: a number input
 * for a number, a select for a parameter whose OpenAPI schema lists choices (or a boolean),
 * text otherwise; each shows its default and the schema's bounds and description.
 */
export class ParameterFields {
  /**
   * @param box the element the labelled inputs go in
   * @param caps the Capabilities (OpenAPI) for bounds, choices and descriptions
   * @param onChange (values) called with every non-empty value when one changes
   * @param layers () => layer names, for a parameter named `layer` without choices
   * @param skip parameters the view has its own input for
   */
  constructor(box, { caps, path, prefix, onChange, layers = () => [], skip = [] }) {
    Object.assign(this, { box, caps, path, prefix, onChange, layers, skip: new Set(skip) });
    this.key = null;
  }

  /** Show `method`'s parameters with `values` filled in (inputs kept while the method is). */
  show(method, values) {
    const parameters = method?.parameters ?? {};
    const key = `${method?.name}|${this.layers().length}`;
    if (key !== this.key) {
      this.key = key;
      this.inputs = Object.entries(parameters).filter(([name]) => !this.skip.has(name)).map(([name, fallback]) => this.#field(name, fallback));
      this.box.replaceChildren(...this.inputs.map((input) => input.closest("label")));
      this.box.hidden = !this.inputs.length;
    }
    for (const input of this.inputs) input.value = values[input.dataset.param] ?? "";
  }

  values() {
    return Object.fromEntries((this.inputs ?? []).map((i) => [i.dataset.param, i.value.trim()]).filter(([, v]) => v !== ""));
  }

  #field(name, fallback) {
    const described = this.caps.parameter(this.path, name);
    const schema = described?.schema ?? {};
    const choices = this.caps.choices(this.path, name);
    const shown = fallback === null || fallback === undefined ? "none" : String(fallback);
    const attributes = { id: `${this.prefix}-${name}`, dataset: { param: name } };
    let input;
    if (choices.length || typeof fallback === "boolean" || (name === "layer" && this.layers().length)) {
      const values = choices.length ? choices : typeof fallback === "boolean" ? ["true", "false"] : this.layers();
      input = h("select", attributes, h("option", { value: "" }, `default: ${shown}`),
        ...values.map((value) => h("option", { value: String(value) }, String(value))));
    } else if (typeof fallback === "number") {
      input = h("input", { ...attributes, type: "number", placeholder: shown, step: Number.isInteger(fallback) ? "1" : "any" });
      if (schema.minimum !== undefined) input.min = String(schema.minimum);
      if (schema.maximum !== undefined) input.max = String(schema.maximum);
    } else {
      input = h("input", { ...attributes, type: "text", placeholder: shown, size: 10 });
    }
    input.addEventListener("change", () => this.onChange(this.values()));
    const label = h("label", { class: "field param", title: described?.description ?? `${name} (default ${shown})` }, `${name} `, input);
    return label.querySelector("[data-param]");
  }
}
