// The viewport: which part of the canvas is shown and how large. Canvas pixels (x, y) map to
// screen pixels ((x - view.x) * zoom, (y - view.y) * zoom) inside the viewport element.
// Everything on screen is positioned from this in screen pixels, so far-out coordinates never
// pass through a CSS transform's limited precision.

export const MIN_ZOOM = 1 / 16;
export const MAX_ZOOM = 4;

export class View {
  constructor(element) {
    this.element = element;
    this.x = 0;
    this.y = 0;
    this.zoom = 1;
    this.listeners = [];
    this.scheduled = false;
  }

  get width() { return this.element.clientWidth; }
  get height() { return this.element.clientHeight; }

  toScreen(x, y) { return [(x - this.x) * this.zoom, (y - this.y) * this.zoom]; }

  toCanvas(sx, sy) { return [this.x + sx / this.zoom, this.y + sy / this.zoom]; }

  // Screen coordinates of a pointer event, relative to the viewport.
  eventPoint(event) {
    const box = this.element.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  // The screen box of a canvas rectangle, with edges rounded so neighbours share them exactly.
  screenBox(x, y, width, height) {
    const [left, top] = this.toScreen(x, y);
    const [right, bottom] = this.toScreen(x + width, y + height);
    const l = Math.round(left), t = Math.round(top);
    return { left: l, top: t, width: Math.round(right) - l, height: Math.round(bottom) - t };
  }

  // The canvas rectangle on screen.
  visibleRect() {
    return { x: this.x, y: this.y, width: this.width / this.zoom, height: this.height / this.zoom };
  }

  panBy(dx, dy) {
    this.x -= dx / this.zoom;
    this.y -= dy / this.zoom;
    this.changed();
  }

  // Zoom by `factor` keeping the canvas point under screen point (sx, sy) in place.
  zoomAt(factor, sx = this.width / 2, sy = this.height / 2) {
    this.setZoom(this.zoom * factor, sx, sy);
  }

  setZoom(zoom, sx = this.width / 2, sy = this.height / 2) {
    const [cx, cy] = this.toCanvas(sx, sy);
    this.zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom));
    this.x = cx - sx / this.zoom;
    this.y = cy - sy / this.zoom;
    this.changed();
  }

  // Show a canvas rectangle whole, centred, with a little room around it.
  fit(x, y, width, height) {
    const zoom = Math.min(this.width / (width * 1.1), this.height / (height * 1.1));
    // Snap to a power of two: tiles are drawn at their own size or a clean multiple of it.
    this.zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, 2 ** Math.floor(Math.log2(zoom))));
    this.x = x + width / 2 - this.width / 2 / this.zoom;
    this.y = y + height / 2 - this.height / 2 / this.zoom;
    this.changed();
  }

  onChange(listener) { this.listeners.push(listener); }

  // Listeners run once per animation frame however many changes came in.
  changed() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      for (const listener of this.listeners) listener(this);
    });
  }
}
