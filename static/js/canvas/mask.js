// The mask over the frame: painted on its own <canvas> of the frame's size (one canvas pixel per
// frame pixel), so a stroke never touches the tiles however large the canvas is. The unknown
// (never painted) part of the frame is shown striped on a second canvas: the server masks it
// for outpainting by itself.
//
// Every edit (stroke, erase, fill, rectangle, clear, invert) is reported to `onEdit` as an undo step:
// the alpha of the box it changed, before and after, in canvas coordinates (so it still applies after
// the frame moved). Only the changed box is kept, one byte a pixel.

const PAINT_RGB = [255, 72, 110];
const PAINT = `rgb(${PAINT_RGB.join(", ")})`;
const STRIPE = "rgba(122, 162, 255, 0.9)";

export class Mask {
  constructor(canvas, unknownCanvas, view, api) {
    this.canvas = canvas;
    // Read back after every edit (undo steps, saving): keep the pixels in memory, not on the GPU.
    this.context = canvas.getContext("2d", { willReadFrequently: true });
    this.unknownCanvas = unknownCanvas;
    this.unknownContext = unknownCanvas.getContext("2d");
    this.view = view;
    this.api = api;
    this.frame = null;
    this.brushSize = 64;
    this.blur = 8;
    this.known = "some"; // how much of the frame has pixels: "none", "some" or "all"
    this.stroke = null;
    this.unknownSequence = 0;
    this.stripes = this.unknownContext.createPattern(stripeTile(), "repeat");
    this.visible = true;
    this.pending = null; // an edit under way: {label, before}
    this.onEdit = () => {};
  }

  // ---- undo steps -------------------------------------------------------------------------------

  // The mask's alpha, one byte a pixel.
  alpha() {
    const { width, height } = this.canvas;
    const rgba = this.context.getImageData(0, 0, width, height).data;
    const out = new Uint8Array(width * height);
    for (let i = 0; i < out.length; i++) out[i] = rgba[i * 4 + 3];
    return out;
  }

  beginEdit(label) {
    if (!this.frame || !this.canvas.width) return;
    this.pending = { label, before: this.alpha(), frame: { ...this.frame } };
  }

  // Report the edit as an undo step (nothing if no pixel changed).
  endEdit() {
    const pending = this.pending;
    this.pending = null;
    if (!pending || !sameRect(pending.frame, this.frame)) return;
    const after = this.alpha();
    const { width, height } = this.canvas;
    let x0 = width, y0 = height, x1 = -1, y1 = -1;
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let x = 0; x < width; x++) {
        if (after[row + x] !== pending.before[row + x]) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          y1 = y;
        }
      }
    }
    if (x1 < 0) return;
    const box = { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
    this.onEdit({
      kind: "mask", label: pending.label,
      x: this.frame.x + box.x, y: this.frame.y + box.y, width: box.width, height: box.height,
      before: crop(pending.before, width, box), after: crop(after, width, box),
    });
  }

  // Put an undo step's alpha (`which`: "before" or "after") back where it was on the canvas.
  restore(step, which) {
    const local = { x: step.x - this.frame.x, y: step.y - this.frame.y };
    const image = this.context.createImageData(step.width, step.height);
    const alpha = step[which];
    for (let i = 0; i < alpha.length; i++) {
      image.data.set(PAINT_RGB, i * 4);
      image.data[i * 4 + 3] = alpha[i];
    }
    this.context.putImageData(image, local.x, local.y); // what lies outside the frame now is dropped
  }

  // An edit refused by the server (another tab changed the history first), made again on the mask as
  // it is now: the pixels the edit changed get its values, the rest stays; reported as a new edit.
  reapply(step) {
    if (!this.frame) return false;
    const local = { x: step.x - this.frame.x, y: step.y - this.frame.y };
    this.beginEdit(step.label);
    const image = this.context.getImageData(local.x, local.y, step.width, step.height);
    for (let i = 0; i < step.after.length; i++) {
      if (step.after[i] !== step.before[i]) {
        image.data.set(PAINT_RGB, i * 4);
        image.data[i * 4 + 3] = step.after[i];
      }
    }
    this.context.putImageData(image, local.x, local.y);
    this.endEdit();
    return true;
  }

  // ---- showing, saving, loading ------------------------------------------------------------------

  // Empty the mask (not an edit: the page is about to show the kept mask instead).
  clearAll() {
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  // Hide the mask without losing it (InvokeAI's H); painting still works, unseen.
  setVisible(visible) {
    this.visible = visible;
    this.view.element.classList.toggle("is-mask-hidden", !visible);
  }

  isEmpty() {
    const alpha = this.alpha();
    return !alpha.some((value) => value > 0);
  }

  // Draw a saved mask ("L" PNG at canvas rect) into the frame's mask.
  async load(url, rect) {
    let response;
    try {
      response = await fetch(url);
    } catch {
      return false;
    }
    if (!response.ok) return false;
    const bitmap = await createImageBitmap(await response.blob());
    const scratch = document.createElement("canvas");
    scratch.width = rect.width;
    scratch.height = rect.height;
    const context = scratch.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    const grey = context.getImageData(0, 0, rect.width, rect.height);
    for (let i = 0; i < grey.data.length; i += 4) {
      const value = grey.data[i];
      grey.data.set(PAINT_RGB, i);
      grey.data[i + 3] = value;
    }
    context.putImageData(grey, 0, 0);
    this.context.drawImage(scratch, rect.x - this.frame.x, rect.y - this.frame.y);
    return true;
  }

  // The brush diameter in canvas pixels, rounded and kept within [min, max]; returns the size used.
  setBrushSize(size, min, max) {
    this.brushSize = Math.max(min, Math.min(max, Math.round(size)));
    return this.brushSize;
  }

  // The mask blur in pixels (0 to max) the paste will get, previewed on the painted mask.
  setBlur(pixels, max) {
    this.blur = Math.max(0, Math.min(max, Number(pixels) || 0));
    this.position();
  }

  // Follow the frame; painted pixels stay where they are on the canvas, what falls outside is dropped.
  // Returns whether an earlier frame moved (what fell outside it may have been dropped).
  placeAt(rect) {
    const previous = this.frame;
    if (previous && previous.x === rect.x && previous.y === rect.y && previous.width === rect.width
        && previous.height === rect.height) return false;
    let copy = null;
    if (previous && this.canvas.width && this.canvas.height) {
      copy = document.createElement("canvas");
      copy.width = this.canvas.width;
      copy.height = this.canvas.height;
      copy.getContext("2d").drawImage(this.canvas, 0, 0);
    }
    this.canvas.width = rect.width; // resizing clears it
    this.canvas.height = rect.height;
    if (copy) this.context.drawImage(copy, previous.x - rect.x, previous.y - rect.y);
    this.frame = { ...rect };
    this.position();
    return previous !== null;
  }

  local(cx, cy) { return [cx - this.frame.x, cy - this.frame.y]; }

  beginStroke(erase, cx, cy) {
    const [x, y] = this.local(cx, cy);
    this.beginEdit(erase ? "eraser stroke" : "brush stroke");
    this.stroke = { erase, x, y };
    this.paint(erase, () => {
      this.context.beginPath();
      this.context.arc(x, y, this.brushSize / 2, 0, Math.PI * 2);
      this.context.fill();
    });
  }

  strokeTo(cx, cy) {
    if (!this.stroke) return;
    const [x, y] = this.local(cx, cy);
    const { erase } = this.stroke;
    this.paint(erase, () => {
      this.context.beginPath();
      this.context.moveTo(this.stroke.x, this.stroke.y);
      this.context.lineTo(x, y);
      this.context.stroke();
    });
    this.stroke.x = x;
    this.stroke.y = y;
  }

  endStroke() {
    this.stroke = null;
    this.endEdit();
  }

  rectangle(x0, y0, x1, y1, erase) {
    const [ax, ay] = this.local(Math.min(x0, x1), Math.min(y0, y1));
    const width = Math.abs(x1 - x0), height = Math.abs(y1 - y0);
    this.beginEdit(erase ? "erase rectangle" : "rectangle");
    if (erase) this.context.clearRect(ax, ay, width, height);
    else this.paint(false, () => this.context.fillRect(ax, ay, width, height));
    this.endEdit();
  }

  // Fill the connected unpainted area around a point (or, erasing, the connected painted area).
  fill(cx, cy, erase) {
    const [x, y] = this.local(Math.floor(cx), Math.floor(cy));
    const { width, height } = this.canvas;
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const image = this.context.getImageData(0, 0, width, height);
    const data = image.data;
    const painted = (i) => data[i * 4 + 3] > 127;
    const target = painted(y * width + x);
    if (target !== erase) return; // nothing to fill there
    this.beginEdit(erase ? "empty fill" : "fill");
    const colour = erase ? new Uint8ClampedArray(4) : Uint8ClampedArray.of(...PAINT_RGB, 255);
    const seen = new Uint8Array(width * height);
    const stack = [y * width + x];
    while (stack.length) {
      const start = stack.pop();
      if (seen[start]) continue;
      const row = Math.floor(start / width);
      let left = start, right = start;
      const rowStart = row * width, rowEnd = rowStart + width - 1;
      while (left > rowStart && !seen[left - 1] && painted(left - 1) === target) left--;
      while (right < rowEnd && !seen[right + 1] && painted(right + 1) === target) right++;
      for (let i = left; i <= right; i++) {
        seen[i] = 1;
        data.set(colour, i * 4);
        for (const next of [i - width, i + width]) {
          if (next >= 0 && next < width * height && !seen[next] && painted(next) === target) stack.push(next);
        }
      }
    }
    this.context.putImageData(image, 0, 0);
    this.endEdit();
  }

  clear() {
    this.beginEdit("clear mask");
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.endEdit();
  }

  invert() {
    this.beginEdit("invert mask");
    const { width, height } = this.canvas;
    const inverted = document.createElement("canvas");
    inverted.width = width;
    inverted.height = height;
    const context = inverted.getContext("2d");
    context.fillStyle = PAINT;
    context.fillRect(0, 0, width, height);
    context.globalCompositeOperation = "destination-out";
    context.drawImage(this.canvas, 0, 0);
    this.context.clearRect(0, 0, width, height);
    this.context.drawImage(inverted, 0, 0);
    this.endEdit();
  }

  // The mask as the server takes it: a PNG of the frame's size, white where painted, transparent elsewhere.
  toBlob() {
    const { width, height } = this.canvas;
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const context = out.getContext("2d");
    context.drawImage(this.canvas, 0, 0);
    context.globalCompositeOperation = "source-in";
    context.fillStyle = "#fff";
    context.fillRect(0, 0, width, height);
    return new Promise((resolve) => out.toBlob(resolve, "image/png"));
  }

  // Ask which part of the frame was never painted and stripe it.
  async loadUnknown() {
    const sequence = ++this.unknownSequence;
    const { x, y, width, height } = this.frame;
    let response;
    try {
      response = await fetch(this.api.url("/unknown.png", { x, y, w: width, h: height }));
    } catch {
      return;
    }
    if (!response.ok || sequence !== this.unknownSequence) return;
    const bitmap = await createImageBitmap(await response.blob());
    if (sequence !== this.unknownSequence) return;
    this.known = response.headers.get("X-Canvas-Known") || "some";
    this.unknownCanvas.width = width;
    this.unknownCanvas.height = height;
    const context = this.unknownContext;
    context.drawImage(bitmap, 0, 0);
    context.globalCompositeOperation = "source-in";
    context.fillStyle = this.stripes;
    context.fillRect(0, 0, width, height);
    context.globalCompositeOperation = "source-over";
    this.unknownFrame = { x, y, width, height };
    this.position();
  }

  paint(erase, draw) {
    const context = this.context;
    context.save();
    context.globalCompositeOperation = erase ? "destination-out" : "source-over";
    context.fillStyle = context.strokeStyle = PAINT;
    context.lineWidth = this.brushSize;
    context.lineCap = context.lineJoin = "round";
    draw();
    context.restore();
  }

  position() {
    if (!this.frame) return;
    place(this.canvas, this.view.screenBox(this.frame.x, this.frame.y, this.frame.width, this.frame.height));
    // The blend the paste will get lies outside what is painted (up to 3× the mask blur): a glow around it.
    this.canvas.style.filter = this.blur ? `drop-shadow(0 0 ${1.5 * this.blur * this.view.zoom}px ${PAINT})` : "";
    const unknown = this.unknownFrame;
    if (unknown) place(this.unknownCanvas, this.view.screenBox(unknown.x, unknown.y, unknown.width, unknown.height));
  }
}

function sameRect(a, b) {
  return a && b && a.x === b.x && a.y === b.y && a.width === b.width && a.height === b.height;
}

function crop(alpha, width, box) {
  const out = new Uint8Array(box.width * box.height);
  for (let y = 0; y < box.height; y++) {
    const start = (box.y + y) * width + box.x;
    out.set(alpha.subarray(start, start + box.width), y * box.width);
  }
  return out;
}

function place(element, box) {
  Object.assign(element.style, {
    transform: `translate(${box.left}px, ${box.top}px)`, width: `${box.width}px`, height: `${box.height}px`,
  });
}

function stripeTile() {
  const tile = document.createElement("canvas");
  tile.width = tile.height = 16;
  const context = tile.getContext("2d");
  context.strokeStyle = STRIPE;
  context.lineWidth = 4;
  context.beginPath();
  context.moveTo(-4, 20);
  context.lineTo(20, -4);
  context.moveTo(-4, 4);
  context.lineTo(4, -4);
  context.moveTo(12, 20);
  context.lineTo(20, 12);
  context.stroke();
  return tile;
}
