// The canvas page: pan and zoom over tiles, the generation frame, mask painting, staged variations,
// undo/redo, import and export. The request itself is the HTMX form in the side panel; this adds the
// painted mask to it as a PNG file just before it is sent.

import { Api, formData } from "./canvas/api.js";
import { Frame } from "./canvas/frame.js";
import { Mask } from "./canvas/mask.js";
import { Minimap } from "./canvas/minimap.js";
import { Staging } from "./canvas/staging.js";
import { TileLayer } from "./canvas/tiles.js";
import { View } from "./canvas/view.js";

const ARROW_STEP = 96; // screen pixels per arrow key press (four times that with Shift)
const WHEEL_ZOOM_RATE = 0.002;
const CHECKER = 32; // screen size of the checkerboard behind the tiles

const root = document.getElementById("canvas-app");
const viewport = document.getElementById("canvas-viewport");
const byId = (id) => document.getElementById(id);
const api = new Api(root);
const view = new View(viewport);
const state = {
  head: Number(root.dataset.head), canUndo: root.dataset.canUndo === "true", canRedo: root.dataset.canRedo === "true",
  tool: "brush", spaceHeld: false, gesture: null,
};
const storageKey = `tessera.canvas.${root.dataset.canvasId}`;

const tiles = new TileLayer(byId("canvas-tiles"), api, view, {
  tileSize: Number(root.dataset.tileSize), maxLevel: Number(root.dataset.levels),
  // A listing saw a newer head (another tab): the tiles come with it, the rest follows.
  onHead: (head) => {
    if (head !== state.head) applyState({ head, can_undo: state.canUndo, can_redo: state.canRedo }, false);
  },
  onError: (text) => say(text, true),
});
const mask = new Mask(byId("canvas-mask"), byId("canvas-unknown"), view, api);
const frame = new Frame(byId("canvas-frame"), view, {
  onChange: frameChanged, minSide: Number(root.dataset.frameMin), maxSide: Number(root.dataset.frameMax),
});
const staging = new Staging(byId("canvas-staging"), byId("staged-preview"), view, api, {
  onAccepted: (data, item) => {
    return applyState(data);
  },
  onMessage: (text, isError) => say(text, isError),
});

// ---- status line ---------------------------------------------------------------------------

// Messages say what just happened; they go after a while, so none stays to describe an older state.
const MESSAGE_MS = 8000;
let messageTimer = null;

function say(text, isError = false) {
  const message = byId("status-message");
  message.textContent = text || "";
  message.classList.toggle("is-error", isError);
  clearTimeout(messageTimer);
  if (text) messageTimer = setTimeout(() => say(""), isError ? 3 * MESSAGE_MS : MESSAGE_MS);
}

function showRevision() {
  byId("status-revision").textContent = `Revision ${state.head}`;
  const undoButton = root.querySelector('[data-action="undo"]'), redoButton = root.querySelector('[data-action="redo"]');
  undoButton.disabled = !state.canUndo;
  redoButton.disabled = !state.canRedo;
  undoButton.title = steps.undo ? `Undo: ${steps.undo} (Ctrl+Z)` : "Undo (Ctrl+Z)";
  redoButton.title = steps.redo ? `Redo: ${steps.redo} (Ctrl+Shift+Z)` : "Redo (Ctrl+Shift+Z)";
}

// Canvas changes from the server (undo, accept, import, another tab): redraw what changed.
function applyState(data, refreshTiles = true) {
  state.head = data.head;
  state.canUndo = data.can_undo;
  state.canRedo = data.can_redo;
  applyHistory(data.history);
  showRevision();
  const work = [mask.loadUnknown().then(showFrameSize), minimap.refresh()];
  if (refreshTiles) work.push(tiles.refresh());
  return Promise.all(work);
}

// ---- one history: mask edits and canvas changes, newest first, kept on the server per canvas and user ----

// The server holds the order (so it survives a reload and is shared by every tab of this user): a mask
// edit is pushed as its box's alpha before and after; undo and redo ask the server, which answers what
// it took back. Painting never waits: pushes go one after another on a queue, which undo/redo join.
// `version` is the history version this page last saw; a step sent with an older one (another tab
// changed the history) is refused, and the page then shows the history as it is (nothing is lost:
// a refused mask edit is applied again on top and pushed again).
const steps = { version: Number(root.dataset.historyVersion) || 0, undo: null, redo: null };
const stepCache = new Map(); // step id → {before, after, box}: this tab's own mask edits, undone locally
const STEP_CACHE_LIMIT = 100;
let queue = Promise.resolve();

function enqueue(work) {
  queue = queue.then(work).catch((error) => say(`The history could not be updated: ${error.message}`, true));
  return queue;
}

function applyHistory(summary) {
  if (!summary) return;
  steps.version = summary.version;
  steps.undo = summary.undo;
  steps.redo = summary.redo;
  state.canUndo = summary.can_undo;
  state.canRedo = summary.can_redo;
  showRevision();
}

mask.onEdit = (step) => {
  state.canUndo = true; // at once, before the server has it: Ctrl+Z waits for the push in the queue
  state.canRedo = false;
  showRevision();
  enqueue(() => pushStep(step));
};

// A push that does not reach the server (no connection, or a 5xx answer) is sent again after the
// delays of data-push-retry-ms (app/canvas/params.py: about a minute in all), still in its place on
// the queue: no later step or undo goes first. Its key lets the server tell a push it already took
// (only the answer was lost) from a new step.
const retryDelays = () => (root.dataset.pushRetryMs || "").split(" ").filter(Boolean).map(Number);
// Set when a step never reached the server: the mask kept there lacks it until the whole mask is saved.
let keptMaskBehind = false;

async function pushStep(step) {
  const alpha = await deflate(step.before, step.after);
  const key = stepKey();
  const delays = retryDelays();
  let answer, tries = 0;
  for (;;) {
    answer = await api.post("/history/mask", formData({
      version: steps.version, label: step.label, x: step.x, y: step.y, w: step.width, h: step.height, key, alpha,
    }));
    tries += 1;
    if (!notDelivered(answer)) break;
    if (tries > delays.length) {
      keptMaskBehind = true;
      say(`Your ${step.label} could not be saved after ${tries} tries (${answer.data.error}) It stays on this ` +
          "page, and the whole mask is saved once the server answers again.", true);
      return;
    }
    const delay = delays[tries - 1];
    say(`Your ${step.label} did not reach the server; trying again in ${Math.ceil(delay / 1000)} s…`, true);
    await new Promise((done) => setTimeout(done, delay));
  }
  const { ok, data } = answer;
  if (ok && keptMaskBehind) {
    keptMaskBehind = false;
    enqueue(saveMask); // after this step: the kept mask catches up with what the page shows
  }
  if (ok && !data.stale_history && tries > 1) say(`Your ${step.label} reached the server (after ${tries} tries).`);
  if (data.stale_history) {
    await reloadFromServer(data);
    // Another tab changed the history: this edit goes on top of what is there now, not lost.
    // (mask.reapply reports the merged edit to onEdit, which queues it as a new step.)
    if (mask.reapply(step)) {
      say(`Another tab changed this canvas's history: your ${step.label} was added on top of it.`);
    }
    return;
  }
  if (!ok) {
    say(`The ${step.label} could not be kept in the history: ${data.error}`, true);
    return;
  }
  stepCache.set(data.step, step);
  if (stepCache.size > STEP_CACHE_LIMIT) stepCache.delete(stepCache.keys().next().value);
  applyHistory(data.history);
}

// Worth sending again: the request never got an answer, or the server (or a proxy) failed.
function notDelivered({ status }) {
  return status === 0 || status >= 500;
}

// A random name for a mask step (crypto.randomUUID needs https; this works over plain http too).
function stepKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// before ‖ after, zlib-compressed by the browser off the main thread (CompressionStream).
async function deflate(before, after) {
  const stream = new Blob([before, after]).stream().pipeThrough(new CompressionStream("deflate"));
  return new File([await new Response(stream).blob()], "alpha.zlib", { type: "application/octet-stream" });
}

function undo() { return enqueue(() => historyStep("undo")); }
function redo() { return enqueue(() => historyStep("redo")); }

async function historyStep(which) {
  const { ok, data } = await api.post(`/${which}`, formData({ version: steps.version }));
  if (data.stale_history) {
    await reloadFromServer(data);
    say(`${data.error} Press ${which === "undo" ? "Ctrl+Z" : "Ctrl+Shift+Z"} again to ${which} its newest step.`, true);
    return;
  }
  if (!ok) {
    say(data.error, true);
    return;
  }
  const label = which === "undo" ? data.undone : data.redone;
  if (!data.changed) {
    applyHistory(data.history);
    say(which === "undo" ? "Nothing to undo." : "Nothing to redo.");
    return;
  }
  if (data.kind === "mask") {
    const cached = stepCache.get(data.step.id);
    if (cached) mask.restore(cached, which === "undo" ? "before" : "after");
    else await reloadMask(); // a step of an earlier visit: the server applied it to the kept mask
    applyHistory(data.history);
  } else {
    staging.show(data.variations);
    // The tiles, the overlay and the minimap follow; the next step need not wait for them to load.
    applyState(data);
  }
  say(`${which === "undo" ? "Undid" : "Redid"}: ${label}`);
}

// Another tab changed things: show the history, the mask, the canvas and staging as the server has them.
async function reloadFromServer(data) {
  applyHistory(data.history);
  if ("mask" in data) await reloadMask(data.mask);
  if (data.variations) staging.show(data.variations);
  await applyState(data);
}

// A tab coming back to the front catches up with what another tab did meanwhile.
// (On the queue, like every change of the mask: a reload never races a push.)
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  enqueue(async () => {
    const { ok, data } = await api.get("/history");
    if (ok && data.history.version !== steps.version) {
      await reloadFromServer(data);
      say("Updated with what another tab changed.");
    }
  });
});

// ---- the mask, kept on the server for this canvas and user ----------------------------------------

// Mask edits reach the server as history steps; what a frame move drops is saved as the whole mask.
let maskSaveTimer = null;
function saveMaskSoon() {
  clearTimeout(maskSaveTimer);
  maskSaveTimer = setTimeout(() => enqueue(saveMask), 400);
}

async function saveMask() {
  if (!mask.frame) return;
  const blob = await mask.toBlob();
  const { x, y, width, height } = mask.frame;
  const { ok, status, data } = await api.post("/mask", formData({
    mask: new File([blob], "mask.png", { type: "image/png" }), x, y, w: width, h: height, history: steps.version,
  }));
  if (data.stale_history) {
    await reloadFromServer(data);
    say(data.error, true);
  } else if (!ok) {
    if (notDelivered({ status })) keptMaskBehind = true; // tried again after the next step that gets through
    say(`The mask could not be kept: ${data.error}`, true);
  } else {
    applyHistory(data.history);
  }
}

// Show the kept mask (`saved`: {x, y, width, height, url}; fetched when not given) in place of the page's.
async function reloadMask(saved) {
  if (saved === undefined) {
    const { ok, data } = await api.get("/mask");
    if (!ok) return;
    saved = data.mask;
  }
  mask.clearAll();
  if (saved) await mask.load(saved.url, saved);
}

function toggleMask() {
  mask.setVisible(!mask.visible);
  const button = root.querySelector('[data-action="toggle-mask"]');
  button.setAttribute("aria-pressed", String(!mask.visible));
  button.textContent = mask.visible ? "Hide mask" : "Show mask";
  say(mask.visible ? "Mask shown." : "Mask hidden, not lost: H shows it again.");
}

// ---- fit all content, minimap ------------------------------------------------------------------

const minimap = new Minimap(byId("canvas-minimap"), byId("minimap-canvas"), view, api, frame);

async function fitAll() {
  const box = await minimap.refresh();
  if (!box) {
    say("The canvas is empty: nothing to fit.");
    return;
  }
  view.fit(box[0], box[1], box[2], box[3]);
}

// ---- the request's progress and errors, on the frame as well -------------------------------------

function frameStatus(text, isError = false) {
  const status = byId("frame-status");
  status.textContent = text || "";
  status.hidden = !text;
  status.classList.toggle("is-error", isError);
}

// The newest job's state, read from its status partial as it polls.
function followJobs() {
  const job = byId("canvas-jobs").querySelector(".job");
  if (!job) return;
  const failed = job.querySelector(".error-text");
  const progress = job.querySelector("progress");
  if (failed) frameStatus(`Failed: ${failed.textContent.trim()}`, true);
  else if (progress) frameStatus(`Generating… ${progress.value}%`);
  else frameStatus("");
}
new MutationObserver(followJobs).observe(byId("canvas-jobs"), { childList: true, subtree: true });

function generate() {
  const button = byId("canvas-generate");
  if (!button || button.disabled) {
    say("Generate is not available: see the note in the panel.", true);
    return;
  }
  byId("canvas-form").requestSubmit(button);
}

// ---- frame and form fields -------------------------------------------------------------------

const frameField = (name) => document.querySelector(`#canvas-form [name="frame_${name}"]`);

function frameChanged(rect) {
  for (const [name, value] of [["x", rect.x], ["y", rect.y], ["w", rect.width], ["h", rect.height]]) {
    const field = frameField(name);
    if (field) field.value = value;
  }
  const query = { x: rect.x, y: rect.y, w: rect.width, h: rect.height };
  byId("export-frame").href = api.url("/export.png", query);
  showFrameSize();
  if (!frame.drag) settleFrame();
}

// After a move or resize ends: the mask follows, the unknown area is asked for again.
function settleFrame() {
  const moved = mask.placeAt(frame.rect);
  mask.loadUnknown().then(showFrameSize);
  if (moved) saveMaskSoon(); // what fell outside the frame was dropped
  remember();
}

function showFrameSize() {
  const megapixels = (frame.width * frame.height / 1e6).toFixed(2);
  const budget = (frame.maxPixels / 1e6).toFixed(2);
  const what = { none: "Empty frame: drawn from the prompt by a text-to-image model.",
                 some: "Striped parts are empty and get outpainted; paint over anything else to change.",
                 all: "Paint the mask over what should change." }[mask.known];
  const text = `${frame.width} × ${frame.height} px · ${megapixels} of ${budget} MP. ${what}`;
  const size = byId("frame-size");
  if (size) size.textContent = text;
  byId("status-frame").textContent = `Frame ${frame.x}, ${frame.y} · ${frame.width} × ${frame.height}`;
}

// The model's size rules come with its options (swapped in when the model changes).
function readRules() {
  const options = byId("canvas-model-options");
  if (!options) return;
  const multiple = Number(options.dataset.multiple) || 8;
  const snap = byId("frame-snap");
  if (snap) snap.querySelector('option[value="model"]').textContent = `${multiple} px (the model's multiple)`;
  frame.setRules({
    grid: snap && snap.value === "model" ? multiple : Math.max(64, multiple),
    maxPixels: Number(options.dataset.maxPixels) || 1024 * 1024,
  });
  showFrameSize();
}

function frameFromFields() {
  const value = (name) => Number(frameField(name)?.value);
  if (["x", "y", "w", "h"].some((name) => !Number.isFinite(value(name)))) return;
  frame.set({ x: value("x"), y: value("y"), width: value("w"), height: value("h") });
}

// ---- view -------------------------------------------------------------------------------------

view.onChange(() => {
  tiles.update();
  frame.position();
  mask.position();
  staging.position();
  byId("status-zoom").textContent = `${Math.round(view.zoom * 10000) / 100}%`;
  const offset = (value) => `${(((-value * view.zoom) % CHECKER) + CHECKER) % CHECKER}px`;
  viewport.style.backgroundPosition = `${offset(view.x)} ${offset(view.y)}`;
  byId("brush-cursor").style.width = byId("brush-cursor").style.height = `${mask.brushSize * view.zoom}px`;
  remember();
});

// Where the user was, for the next visit; written once things settle, not on every frame of a pan.
let rememberTimer = null;
function remember() {
  clearTimeout(rememberTimer);
  rememberTimer = setTimeout(() => {
    try {
      localStorage.setItem(storageKey, JSON.stringify({ view: { x: view.x, y: view.y, zoom: view.zoom }, frame: frame.rect }));
    } catch {
      // Private browsing: the page still works, it just starts at the frame next time.
    }
  }, 300);
}

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(storageKey)) || {};
  } catch {
    return {};
  }
}

// ---- tools and pointer gestures --------------------------------------------------------------

function setTool(tool) {
  state.tool = tool;
  for (const button of root.querySelectorAll("[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
  }
  viewport.dataset.tool = tool;
}

// The blur's upper bound is the input's max, which the page takes from the server's limit.
function setMaskBlur(input) {
  mask.setBlur(input.value, Number(input.max));
}

function setBrushSize(size) {
  const input = byId("brush-size");
  const used = mask.setBrushSize(size, Number(input.min), Number(input.max));
  input.value = used;
  byId("brush-size-value").textContent = `${used} px`;
  view.changed();
}

function canvasPoint(event) {
  const [sx, sy] = view.eventPoint(event);
  const [cx, cy] = view.toCanvas(sx, sy);
  return { sx, sy, cx, cy };
}

viewport.addEventListener("pointerdown", (event) => {
  if (event.target.closest("#canvas-staging")) return;
  const point = canvasPoint(event);
  const handle = event.target.closest("[data-handle]");
  let gesture = null;
  if (event.button === 1 || (event.button === 0 && (state.spaceHeld || state.tool === "hand"))) {
    gesture = { kind: "pan" };
  } else if (event.button !== 0) {
    return;
  } else if (handle) {
    gesture = { kind: "frame" };
    if (handle.dataset.handle === "move") frame.beginMove(point.cx, point.cy);
    else frame.beginResize(handle.dataset.handle, point.cx, point.cy);
  } else if (staging.active && state.tool !== "frame") {
    gesture = { kind: "pan" }; // the mask is hidden under the staged preview: drag to look around instead
  } else if (state.tool === "frame") {
    gesture = { kind: frame.contains(point.cx, point.cy) ? "frame" : "pan" };
    if (gesture.kind === "frame") frame.beginMove(point.cx, point.cy);
  } else if (state.tool === "brush" || state.tool === "eraser") {
    gesture = { kind: "stroke" };
    mask.beginStroke(state.tool === "eraser" || event.altKey, point.cx, point.cy);
  } else if (state.tool === "fill") {
    mask.fill(point.cx, point.cy, event.altKey);
  } else if (state.tool === "rect") {
    gesture = { kind: "rect", x0: Math.round(point.cx), y0: Math.round(point.cy), erase: event.altKey };
  }
  viewport.focus({ preventScroll: true });
  event.preventDefault();
  if (!gesture) return;
  gesture.last = point;
  state.gesture = gesture;
  viewport.setPointerCapture(event.pointerId);
  viewport.classList.add(`is-${gesture.kind}ing`);
});

viewport.addEventListener("pointermove", (event) => {
  const point = canvasPoint(event);
  byId("status-coords").textContent = `x ${Math.floor(point.cx)}, y ${Math.floor(point.cy)}`;
  const cursor = byId("brush-cursor");
  cursor.style.transform = `translate(${point.sx}px, ${point.sy}px) translate(-50%, -50%)`;
  const gesture = state.gesture;
  if (!gesture) return;
  if (gesture.kind === "pan") {
    view.panBy(point.sx - gesture.last.sx, point.sy - gesture.last.sy);
  } else if (gesture.kind === "stroke") {
    // Every sampled position, not just one per frame, so fast strokes stay smooth.
    for (const sample of event.getCoalescedEvents?.() || [event]) {
      const p = canvasPoint(sample);
      mask.strokeTo(p.cx, p.cy);
    }
  } else if (gesture.kind === "frame") {
    frame.dragTo(point.cx, point.cy);
  } else if (gesture.kind === "rect") {
    const [x1, y1] = [Math.round(point.cx), Math.round(point.cy)];
    const box = view.screenBox(Math.min(gesture.x0, x1), Math.min(gesture.y0, y1),
                               Math.abs(x1 - gesture.x0), Math.abs(y1 - gesture.y0));
    const preview = byId("rect-preview");
    preview.hidden = false;
    Object.assign(preview.style, { transform: `translate(${box.left}px, ${box.top}px)`,
                                   width: `${box.width}px`, height: `${box.height}px` });
  }
  gesture.last = point;
});

function endGesture(event) {
  const gesture = state.gesture;
  if (!gesture) return;
  state.gesture = null;
  viewport.classList.remove(`is-${gesture.kind}ing`);
  if (gesture.kind === "stroke") mask.endStroke();
  if (gesture.kind === "frame" && frame.endDrag()) settleFrame();
  if (gesture.kind === "rect") {
    byId("rect-preview").hidden = true;
    if (event.type === "pointerup") {
      const point = canvasPoint(event);
      mask.rectangle(gesture.x0, gesture.y0, Math.round(point.cx), Math.round(point.cy), gesture.erase);
    }
  }
}

viewport.addEventListener("pointerup", endGesture);
viewport.addEventListener("pointercancel", endGesture);

viewport.addEventListener("wheel", (event) => {
  event.preventDefault();
  const [sx, sy] = view.eventPoint(event);
  const delta = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
  view.zoomAt(Math.exp(-delta * WHEEL_ZOOM_RATE), sx, sy);
}, { passive: false });

// ---- keyboard ----------------------------------------------------------------------------------

// As in InvokeAI: H hides the mask, Shift+C clears it, V is the hand (pan) tool.
const TOOL_KEYS = { v: "hand", m: "frame", b: "brush", e: "eraser", g: "fill", r: "rect" };

function typing(target) {
  return target.closest("input, textarea, select, [contenteditable]") !== null;
}

document.addEventListener("keydown", (event) => {
  const key = event.key.toLowerCase();
  // Ctrl+Enter generates from anywhere, the prompt box included.
  if ((event.ctrlKey || event.metaKey) && key === "enter") {
    event.preventDefault();
    generate();
    return;
  }
  if (typing(event.target) || event.target.closest("dialog")) return;
  if (event.ctrlKey || event.metaKey) {
    if (key === "z" || key === "y") {
      event.preventDefault();
      if (key === "y" || event.shiftKey) redo();
      else undo();
    }
    return;
  }
  if (event.key === "?") {
    event.preventDefault();
    byId("shortcuts").showModal();
    return;
  }
  if (event.shiftKey && (event.code === "Digit1" || event.code === "Digit2")) {
    event.preventDefault();
    if (event.code === "Digit1") fitAll();
    else view.fit(frame.x, frame.y, frame.width, frame.height);
    return;
  }
  if (event.shiftKey && (key === "c" || key === "i")) {
    event.preventDefault();
    if (key === "c") mask.clear();
    else mask.invert();
    return;
  }
  // A focused button or link keeps Enter and Space for itself.
  if ((key === "enter" || key === " ") && event.target.closest("button, a, summary")) return;
  const step = event.shiftKey ? ARROW_STEP * 4 : ARROW_STEP;
  if ((key === "arrowleft" || key === "arrowright") && staging.active && !event.shiftKey) {
    staging.step(key === "arrowleft" ? -1 : 1);
  } else if (key.startsWith("arrow")) {
    const [dx, dy] = { arrowleft: [step, 0], arrowright: [-step, 0], arrowup: [0, step], arrowdown: [0, -step] }[key];
    view.panBy(dx, dy);
  } else if (key === "enter" && staging.active) {
    staging.accept(false);
  } else if (key === "escape" && staging.active) {
    if (staging.current.state === "staged") staging.discard();
    else staging.review(false);
  } else if (key === " ") {
    state.spaceHeld = true;
    viewport.classList.add("is-space-held");
  } else if (key === "h") {
    toggleMask();
  } else if (TOOL_KEYS[key]) {
    setTool(TOOL_KEYS[key]);
  } else if (key === "[" || key === "]") {
    setBrushSize(mask.brushSize * (key === "[" ? 0.8 : 1.25));
  } else if (key === "+" || key === "=" || key === "-") {
    view.zoomAt(key === "-" ? 0.5 : 2);
  } else {
    return;
  }
  event.preventDefault();
});

document.addEventListener("keyup", (event) => {
  if (event.key === " ") {
    state.spaceHeld = false;
    viewport.classList.remove("is-space-held");
  }
});

// ---- toolbar ------------------------------------------------------------------------------------

root.addEventListener("click", (event) => {
  const tool = event.target.closest("[data-tool]");
  if (tool) setTool(tool.dataset.tool);
  const preset = event.target.closest("[data-frame-preset]");
  if (preset) {
    frame.preset(Number(preset.dataset.framePreset));
    view.changed();
  }
  const action = event.target.closest("[data-action]")?.dataset.action;
  const actions = {
    undo, redo,
    "clear-mask": () => mask.clear(), "invert-mask": () => mask.invert(), "toggle-mask": toggleMask,
    "zoom-in": () => view.zoomAt(2), "zoom-out": () => view.zoomAt(0.5),
    "show-frame": () => view.fit(frame.x, frame.y, frame.width, frame.height), "fit-all": fitAll,
    shortcuts: () => byId("shortcuts").showModal(),
  };
  actions[action]?.();
});

root.addEventListener("input", (event) => {
  if (event.target.id === "brush-size") setBrushSize(Number(event.target.value));
  if (event.target.id === "mask-blur") setMaskBlur(event.target);
});

root.addEventListener("change", (event) => {
  if (/^frame_[xywh]$/.test(event.target.name)) frameFromFields();
  if (event.target.id === "frame-snap") readRules();
});

// Importing: the frame fits the picture (snapped to its grid, within the model's budget) or, when their
// shapes differ, the user is asked — never a silent letterbox that the next inpaint would outpaint.
byId("canvas-import").addEventListener("change", async (event) => {
  const input = event.target;
  const [file] = input.files;
  input.value = "";
  if (!file) return;
  let fit = "none";
  if (!byId("import-keep-size").checked) {
    const size = await pictureSize(file);
    if (!size) {
      say(`${file.name} is not a picture this browser can read.`, true);
      return;
    }
    const fitted = frameForPicture(size.width, size.height);
    const sameShape = Math.abs(fitted.width / fitted.height - frame.width / frame.height) < 0.01;
    fit = "cover";
    if (sameShape && fitted.width <= frame.width) {
      frame.set(fitted); // the same shape, smaller: the frame shrinks to the picture
    } else if (!sameShape) {
      const choice = await askFit(file.name, size, fitted);
      if (choice === "cancel") return;
      if (choice === "fit-frame") frame.set(fitted);
      else fit = "contain";
    }
    settleFrame();
  }
  say(`Importing ${file.name}…`);
  const { ok, data } = await api.post("/import", formData({
    image: file, x: frame.x, y: frame.y, w: frame.width, h: frame.height, base_revision: state.head, fit,
  }));
  if (!ok) {
    say(data.error, true);
    return;
  }
  await applyState(data);
  say(`Imported ${file.name}. Ctrl+Z undoes it.`);
});

// The picture's width and height, decoded by the browser (no URL: nothing for the CSP to refuse).
async function pictureSize(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const size = { width: bitmap.width, height: bitmap.height };
    bitmap.close();
    return size;
  } catch {
    return null;
  }
}

// The frame for a picture: its size, scaled down into the model's budget and the frame's limits;
// frame.set snaps it to the grid.
function frameForPicture(width, height) {
  const scale = Math.min(1, Math.sqrt(frame.maxPixels / (width * height)), frame.maxSide / Math.max(width, height));
  const grid = frame.grid;
  const snap = (value) => Math.max(frame.minSide, Math.round(value / grid) * grid);
  return { x: frame.x, y: frame.y, width: snap(width * scale), height: snap(height * scale) };
}

function askFit(name, size, fitted) {
  const dialog = byId("import-fit");
  byId("import-fit-text").textContent = `${name} is ${size.width} × ${size.height}; the frame is ${frame.width} × `
    + `${frame.height}. Fit the frame to the picture (${fitted.width} × ${fitted.height}), or keep the frame and `
    + "leave the rest of it empty, to be outpainted by the next generation?";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue || "cancel"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    byId("import-fit-frame").focus();
  });
}

// ---- the request form (HTMX) ------------------------------------------------------------------

// Said on the frame as well as in the panel: the request went, or could not.
document.body.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.elt.id === "canvas-form") frameStatus("Sending…");
});
document.body.addEventListener("htmx:responseError", (event) => {
  if (event.detail.elt.id !== "canvas-form" && !event.detail.elt.closest?.("#canvas-staging")) return;
  const text = `The request failed: the server answered ${event.detail.xhr.status}.`;
  frameStatus(text, true);
  say(text, true);
});
document.body.addEventListener("htmx:sendError", () => {
  frameStatus("The server cannot be reached.", true);
});

// Put the painted mask in the form's file input just before HTMX sends the form.
document.body.addEventListener("htmx:confirm", (event) => {
  if (event.detail.elt.id !== "canvas-form") return;
  event.preventDefault();
  mask.toBlob().then((blob) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([blob], "mask.png", { type: "image/png" }));
    byId("canvas-mask-file").files = transfer.files;
    event.detail.issueRequest(true);
  });
});

// The form was re-rendered (errors) or the model's options swapped in: read sizes and fields again.
document.body.addEventListener("htmx:afterSwap", (event) => {
  const path = event.detail.pathInfo?.requestPath || "";
  if (path.startsWith(api.base + "/form") || path.startsWith(api.base + "/generate")) {
    readRules();
    frameFromFields();
  }
  if (path.startsWith(api.base + "/generate")) {
    const errors = byId("canvas-form-errors");
    if (errors) frameStatus(errors.querySelector("p")?.textContent.trim(), true);
  }
});

// A finished generation's result partial marks itself: show its variations over the frame.
document.body.addEventListener("htmx:load", (event) => {
  const element = event.detail.elt;
  if (element.matches?.("[data-canvas-staged]") || element.querySelector?.("[data-canvas-staged]")) {
    staging.load();
    minimap.refresh();
  }
});

// ---- start ------------------------------------------------------------------------------------

new ResizeObserver(() => view.changed()).observe(viewport);
setTool("brush");
setBrushSize(Number(byId("brush-size").value));
setMaskBlur(byId("mask-blur"));
showRevision();
// ?show=1 (an image just opened here from the gallery): start at the server's frame, not where the
// user last looked; the parameter is dropped so a reload behaves as usual.
const showFrame = new URLSearchParams(location.search).has("show");
if (showFrame) history.replaceState(null, "", location.pathname);
const saved = showFrame ? {} : remembered();
readRules();
if (saved.frame) frame.set(saved.frame);
else frameFromFields();
frameChanged(frame.rect);
if (saved.view) {
  Object.assign(view, saved.view);
  view.setZoom(view.zoom, 0, 0);
} else {
  view.fit(frame.x, frame.y, frame.width, frame.height);
}
staging.load();
enqueue(() => reloadMask());
minimap.refresh();
