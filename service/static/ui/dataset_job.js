// One dataset job at a time for a portal tab: submit it, follow its progress in a JobBox,
// cancel it (DELETE), and tell the tab how it ended. The Dataset, Compare models and Trust
// (dataset mode) tabs share it.

import { followJob, request } from "./api.js";
import { number } from "./dom.js";

export class DatasetJob {
  /** `box`: the tab's JobBox; `cancelButton`: its Cancel; `say(text, error)`: its message line. */
  constructor(box, cancelButton, say) {
    this.box = box;
    this.cancelButton = cancelButton;
    this.say = say;
    this.controller = null;
    this.location = null;
    cancelButton.addEventListener("click", () => this.cancel());
  }

  /** True from submission until the job ends or is cancelled. */
  get running() {
    return this.controller !== null;
  }

  /** POST `path` with `params`, then follow the job; its finished body, or null when it was
   * cancelled, replaced by a newer run or failed (the failure is said). */
  async run(path, params, { working, onProgress }) {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.box.start("submitting…");
    this.cancelButton.hidden = false;
    this.say(working);
    try {
      const response = await request(path, { method: "POST", params, signal: controller.signal });
      this.location = response.headers.get("Location");
      const job = await followJob(this.location, {
        signal: controller.signal,
        onProgress: onProgress ?? ((j) => this.box.show(j, `${j.status}: ${j.progress.step} of ${j.progress.total} pictures`)),
      });
      this.box.say(`done: ${job.result.images} pictures in ${number(job.elapsed_s)} s`);
      return job;
    } catch (error) {
      if (error.name !== "AbortError") {
        this.box.say("failed");
        this.say(error.message, true);
      }
      return null;
    } finally {
      if (this.controller === controller) {
        this.location = null;
        this.controller = null;
        this.cancelButton.hidden = true;
      }
    }
  }

  async cancel() {
    const location = this.location;
    this.controller?.abort();
    this.controller = null;
    this.location = null;
    this.cancelButton.hidden = true;
    this.box.say("cancelled");
    this.say("Cancelled.");
    if (location) await request(location, { method: "DELETE" }).catch(() => {});
  }
}
