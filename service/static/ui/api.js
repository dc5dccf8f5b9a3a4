// Talking to the v1 API: requests with readable errors, the OpenAPI schema as a capability
// list, image upload and job polling. Nothing here touches the page.

const KEY_STORAGE = "layerscope.apiKey";

/** An answer that is not 2xx, carrying the server's JSON body (`detail`, `field`, ...). */
export class ApiError extends Error {
  constructor(status, body, path) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
    this.path = path;
  }
}

/** One readable sentence (or two) from an error body: the detail, then hints it carries. */
export function describe(status, body) {
  if (!body || typeof body !== "object") return `HTTP ${status}: the server gave no explanation`;
  const parts = [String(body.detail ?? `HTTP ${status}`)];
  if (Array.isArray(body.closest) && body.closest.length) parts.push(`Closest: ${body.closest.join(", ")}.`);
  if (Array.isArray(body.choices) && body.choices.length && body.choices.length <= 12) {
    parts.push(`Choices: ${body.choices.join(", ")}.`);
  }
  if (status === 503 || status === 504) parts.push("The server is busy; try again in a moment.");
  return parts.join(" ");
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY_STORAGE, value);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** `path` with query parameters; arrays and empty values are dropped or joined sensibly. */
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    query.set(name, Array.isArray(value) ? value.join(",") : String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * fetch() that throws ApiError for non-2xx answers (with the JSON `detail`) and a readable
 * Error when the server cannot be reached. Returns the Response.
 */
export async function request(path, { method = "GET", params, body, signal } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(url(path, params), { method, body, signal, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error(`Cannot reach the server (${error.message}). Is layerscope still running?`);
  }
  if (!response.ok) {
    let errorBody = null;
    try {
      errorBody = await response.json();
    } catch {
      // not JSON (a proxy's HTML page, say): the status alone has to do
    }
    throw new ApiError(response.status, errorBody, path);
  }
  return response;
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

export async function postJSON(path, options = {}) {
  return (await request(path, { ...options, method: "POST" })).json();
}

/** A PNG (or any picture) answer as an object URL; the caller revokes it when replaced. */
export async function pictureURL(path, options) {
  const blob = await (await request(path, options)).blob();
  return URL.createObjectURL(blob);
}

/** Store a picture once; every view then names it by `image_id`. */
export async function uploadImage(blob, filename) {
  const form = new FormData();
  form.append("image", blob, filename);
  return postJSON("/v1/images", { body: form });
}

/** What the server offers, read from /openapi.json: paths and enum choices of parameters. */
export class Capabilities {
  constructor(schema, methods = [], metrics = []) {
    this.schema = schema;
    this.methods = methods; // GET /v1/methods: every method, its family, endpoints and parameters
    this.metrics = metrics; // and every evaluation metric: family, reference, direction
  }

  static async load() {
    const schema = await getJSON("/openapi.json");
    const listing = schema.paths?.["/v1/methods"]?.get ? await getJSON("/v1/methods") : {};
    return new Capabilities(schema, listing.data ?? [], listing.metrics ?? []);
  }

  has(path, method = "post") {
    return Boolean(this.schema.paths?.[path]?.[method]);
  }

  /** The OpenAPI description of query parameter `name` on `path` (schema resolved), or null. */
  parameter(path, name, method = "post") {
    const parameters = this.schema.paths?.[path]?.[method]?.parameters ?? [];
    const parameter = parameters.find((p) => p.name === name);
    if (!parameter) return null;
    const schema = parameter.schema?.$ref ? this.#resolve(parameter.schema.$ref) : parameter.schema;
    const plain = (schema?.anyOf ?? []).find((s) => s.type && s.type !== "null");
    return { ...parameter, schema: { ...(plain ?? {}), ...(schema ?? {}) } };
  }

  /** The enum values of query parameter `name` on `path`, or `fallback`. */
  choices(path, name, fallback = [], method = "post") {
    const parameter = this.parameter(path, name, method);
    const values = parameter ? this.#enum(parameter.schema) : null;
    return values?.length ? values : fallback;
  }

  #enum(schema) {
    if (!schema) return null;
    if (schema.$ref) return this.#enum(this.#resolve(schema.$ref));
    if (schema.enum) return schema.enum;
    for (const option of schema.anyOf ?? schema.allOf ?? schema.oneOf ?? []) {
      const found = this.#enum(option);
      if (found) return found;
    }
    return null;
  }

  #resolve(ref) {
    return ref.replace(/^#\//, "").split("/").reduce((node, key) => node?.[key], this.schema);
  }
}

/**
 * Follow a job from its 202 answer to the end: `onProgress(job)` after each poll. Resolves
 * with the job body once it succeeded; throws ApiError-like errors when it failed.
 */
export async function followJob(location, { onProgress, signal, interval = 250 } = {}) {
  for (;;) {
    const job = await getJSON(location, { signal });
    onProgress?.(job);
    if (job.status === "succeeded") return job;
    if (job.status === "failed") throw new ApiError(job.error_status ?? 500, job.error, location);
    if (job.status === "cancelled") throw new Error("The job was cancelled.");
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, interval);
      signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      });
    });
  }
}
