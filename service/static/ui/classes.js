// The class view: top-k predictions; pick a class and a method to see where the network looks
// (CAM overlay) and what the input gradient says. CAM and gradients appear when the server
// offers them.

import { h, number, pngData, ResultPane } from "./dom.js";

const PREDICT = "/v1/models/{model}/predict";
const CAM = "/v1/models/{model}/cam";
const GRADIENTS = "/v1/models/{model}/gradients";

export class ClassesView {
  id = "classes";
  needs = [PREDICT];

  constructor(app) {
    this.app = app;
    this.list = document.getElementById("predictions");
    this.predictions = new ResultPane(h("figure", { class: "result" }));
    this.cam = new ResultPane(document.getElementById("cam-result"));
    this.gradients = new ResultPane(document.getElementById("grad-result"));
    this.camMethod = document.getElementById("cam-method");
    this.camLayer = document.getElementById("cam-layer");
    this.gradMethod = document.getElementById("grad-method");
    this.note = document.getElementById("classes-note");
    this.list.after(this.predictions.figure);
    this.camMethod.addEventListener("change", () => app.update({ cam: this.camMethod.value }));
    this.camLayer.addEventListener("change", () => app.update({ camlayer: this.camLayer.value }));
    this.gradMethod.addEventListener("change", () => app.update({ grad: this.gradMethod.value }));
  }

  /** Fill the method lists from the schema, once it is known. */
  configure(caps) {
    this.hasCam = caps.has(CAM);
    this.hasGradients = caps.has(GRADIENTS);
    fill(this.camMethod, caps.choices(CAM, "method"));
    fill(this.gradMethod, caps.choices(GRADIENTS, "method"));
    document.getElementById("cam-column").hidden = !this.hasCam;
    document.getElementById("grad-column").hidden = !this.hasGradients;
    const missing = [!this.hasCam && "POST /v1/models/{model}/cam", !this.hasGradients && "POST /v1/models/{model}/gradients"].filter(Boolean);
    this.note.hidden = !missing.length;
    this.note.textContent = `Class activation maps and gradient maps appear here once the server offers ${missing.join(" and ")}.`;
  }

  /** The CAM layer choices follow the model: its layers with a spatial map. */
  setLayers(layers) {
    const options = [h("option", { value: "" }, "default (last spatial layer)")];
    for (const layer of layers.filter((l) => l.spatial)) options.push(h("option", { value: layer.name }, layer.name));
    this.camLayer.replaceChildren(...options);
  }

  render() {
    const { state } = this.app;
    this.camMethod.value = state.cam;
    this.camLayer.value = state.camlayer;
    this.gradMethod.value = state.grad;
    if (!state.image) {
      this.list.replaceChildren();
      this.predictions.empty("Choose an image on the left to see the model's top classes.");
      this.cam.empty("");
      this.gradients.empty("");
      return;
    }
    this.#predict();
    const target = state.target || undefined;
    const targetText = state.target ? `class ${state.target}` : "the top class";
    if (this.hasCam) {
      const params = {
        image_id: state.image, method: state.cam, layer: state.camlayer, target, format: "json",
      };
      this.cam.run(`${state.model}|${JSON.stringify(params)}`, async (signal) => {
        const answer = await this.app.post(CAM, params, signal);
        const map = answer.maps[0];
        return {
          src: pngData(answer.png_base64),
          caption: `${answer.method} on ${map.layer} for ${targetText} '${map.label}' · values ${number(map.min)} to ${number(map.max)}`,
        };
      });
    }
    if (this.hasGradients) {
      const params = { image_id: state.image, method: state.grad, target, format: "json" };
      this.gradients.run(`${state.model}|${JSON.stringify(params)}`, async (signal) => {
        const answer = await this.app.post(GRADIENTS, params, signal);
        const map = answer.maps[0];
        return {
          src: pngData(answer.png_base64),
          caption: `${answer.method} for ${targetText} '${map.label}' · values ${number(map.min)} to ${number(map.max)}`,
        };
      });
    }
  }

  #predict() {
    const { state } = this.app;
    const params = { image_id: state.image, top_k: 5 };
    this.predictions.run(`${state.model}|${state.image}|${state.target}`, async (signal) => {
      let answer;
      try {
        answer = await this.app.post(PREDICT, params, signal);
      } catch (error) {
        this.list.replaceChildren(); // never leave another image's classes beside an error
        throw error;
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
              title: "explain this class",
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

function fill(select, values) {
  select.replaceChildren(...values.map((value) => h("option", { value }, value)));
}
