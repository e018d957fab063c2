// The mask over the frame: painted on its own <canvas> of the frame's size (one canvas pixel per
// frame pixel), so a stroke never touches the tiles however large the canvas is. The unknown
// (never painted) part of the frame is shown striped on a second canvas: the server masks it
// for outpainting by itself.

const PAINT_RGB = [255, 72, 110];
const PAINT = `rgb(${PAINT_RGB.join(", ")})`;
const STRIPE = "rgba(122, 162, 255, 0.9)";

export class Mask {
  constructor(canvas, unknownCanvas, view, api) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
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
  placeAt(rect) {
    const previous = this.frame;
    if (previous && previous.x === rect.x && previous.y === rect.y && previous.width === rect.width
        && previous.height === rect.height) return;
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
  }

  local(cx, cy) { return [cx - this.frame.x, cy - this.frame.y]; }

  beginStroke(erase, cx, cy) {
    const [x, y] = this.local(cx, cy);
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

  endStroke() { this.stroke = null; }

  rectangle(x0, y0, x1, y1, erase) {
    const [ax, ay] = this.local(Math.min(x0, x1), Math.min(y0, y1));
    const width = Math.abs(x1 - x0), height = Math.abs(y1 - y0);
    if (erase) this.context.clearRect(ax, ay, width, height);
    else this.paint(false, () => this.context.fillRect(ax, ay, width, height));
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
  }

  clear() { this.context.clearRect(0, 0, this.canvas.width, this.canvas.height); }

  invert() {
    const { width, height } = this.canvas;
    const inverted = document.createElement("canvas");
    inverted.width = width;
    inverted.height = height;
    const context = inverted.getContext("2d");
    context.fillStyle = PAINT;
    context.fillRect(0, 0, width, height);
    context.globalCompositeOperation = "destination-out";
    context.drawImage(this.canvas, 0, 0);
    this.clear();
    this.context.drawImage(inverted, 0, 0);
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
    // The blur the paste will get, previewed at the current zoom.
    this.canvas.style.filter = this.blur ? `blur(${this.blur * this.view.zoom}px)` : "";
    const unknown = this.unknownFrame;
    if (unknown) place(this.unknownCanvas, this.view.screenBox(unknown.x, unknown.y, unknown.width, unknown.height));
  }
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
