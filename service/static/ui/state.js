// The page state lives in the URL hash, so any view can be shared as a link and comes back on
// reload. Only values that differ from the defaults are written, to keep links short.

export const DEFAULTS = Object.freeze({
  view: "maps", // maps | compare | classes | trust | stats | filters | synthesis | embedding | dataset | concepts | models
  model: "",
  image: "", // image_id from POST /v1/images, or dataset:NAME/INDEX
  sample: "", // the built-in sample the image came from: lets a link outlive a server restart
  layer: "",
  channels: "first:16",
  reduce: "none",
  cmap: "viridis",
  scale: "channel",
  overlay: "0",
  compare: "", // comma-separated layer names
  target: "", // class index, or #i the i-th detection; empty: the top-1 class
  cam: "gradcam",
  camlayer: "",
  ccmap: "jet", // CAM colormap
  norm: "0", // CAM normalize
  alpha: "0.5", // overlay opacity, drawn by the page
  topk: "5",
  grad: "vanilla",
  gview: "heatmap",
  gcmap: "inferno",
  gparams: "", // the input method's parameters as a query string ("steps=8"); empty: defaults
  cparams: "", // the CAM method's parameters, the same way
  tlayer: "", // trust view: layer, curve points, randomized top layers
  tsteps: "16",
  trand: "2",
  tmode: "image", // trust view: "image" (one picture, every method) or "dataset"
  tset: "", // its dataset mode: the dataset (default: the first listed), sample size,
  tlimit: "20", // methods and metrics (comma-separated)
  tmethods: "gradcam,layercam,vanilla,input-x-gradient",
  tmetrics: "deletion,insertion,sparseness,complexity",
  fchannels: "first:64",
  fview: "auto",
  fscale: "channel",
  unit: "0", // the channel to maximize
  steps: "128",
  embed: "pca", // embedding projection
  elayer: "", // "" (the classifier's input) or "selected" (the selected layer)
  dset: "", // dataset tab: the dataset (default: the first listed)
  dmethod: "tsne", // its embedding's projection
  dlimit: "", // a random sample of this many pictures; empty: all
  dcolour: "label", // scatter coloured by "label" (true class) or "predicted"
  ck: "4", // concepts view: how many concepts
  ma: "", // compare models tab: the two models (default: the first two listed), dataset, limit
  mb: "",
  mset: "",
  mlimit: "",
});

export function readState(hash = location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const state = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    if (params.has(key)) state[key] = params.get(key);
  }
  return state;
}

export function stateHash(state) {
  const params = new URLSearchParams();
  for (const [key, fallback] of Object.entries(DEFAULTS)) {
    const value = state[key] ?? fallback;
    if (value !== fallback) params.set(key, value);
  }
  return `#${params.toString()}`;
}

/** Replace (not push) the history entry: every click would otherwise add one. */
export function writeState(state) {
  const hash = stateHash(state);
  if (hash !== location.hash && !(hash === "#" && !location.hash)) {
    history.replaceState(null, "", hash === "#" ? location.pathname : hash);
  }
}
