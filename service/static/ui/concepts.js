// The concepts view: Deep Feature Factorization of the current picture at the selected layer
// (POST /v1/models/{model}/concepts): the server's overlay, one colour per concept, and a
// table of each concept's top classes (or why there are none).

import { h, number, pngData, View } from "./dom.js";

export const CONCEPTS = "/v1/models/{model}/concepts";

export class ConceptsView extends View {
  constructor(app) {
    super(app, { id: "concepts", needs: [CONCEPTS], inputs: { ck: "concepts-k" } });
  }

  render() {
    const { state } = this.app;
    this.inputs.ck.value = state.ck;
    if (!state.image) return this.pane.empty("Choose an image on the left to factorize a layer into concepts.");
    const info = this.app.layer(state.layer);
    const layer = info?.spatial ? state.layer : undefined;
    const params = { image_id: state.image, layer, k: state.ck, top: 3, format: "json" };
    const key = `${state.model}|${JSON.stringify(params)}`;
    return this.pane.run(key, async (signal) => {
      const answer = await this.app.post(CONCEPTS, params, signal);
      await this.pane.show({ src: pngData(answer.png_base64), caption: `${answer.k} concepts of ${answer.layer}` });
      this.pane.extra.replaceChildren(table(answer));
      return null;
    });
  }
}

function table(answer) {
  const rows = answer.concepts.map((concept) =>
    h("tr", { dataset: { concept: String(concept.concept) } },
      h("td", {}, `concept ${concept.concept}`),
      h("td", {}, concept.classes
        ? concept.classes.map((c) => `${c.label} ${number(c.score)}`).join(", ")
        : "–")));
  const note = answer.classes_note ? h("p", { class: "muted small concepts-note" }, `No classes: ${answer.classes_note}.`) : "";
  return h("div", {},
    h("table", { class: "stats concepts" },
      h("thead", {}, h("tr", {}, h("th", {}, "Concept"), h("th", {}, "Top classes (softmax of the classifier on the concept)"))),
      h("tbody", {}, ...rows)),
    note);
}
