// The generation frame: the canvas rectangle a request sends. Moved and resized on a grid, sized
// within the model's pixel budget, and mirrored in the form's x/y/width/height fields. The side limits
// come from the page (data-frame-min/max on #canvas-app, from app/canvas/params.py FRAME_LIMITS).

const snapTo = (value, grid) => Math.round(value / grid) * grid;

export class Frame {
  constructor(element, view, { onChange, minSide, maxSide }) {
    this.element = element;
    this.minSide = minSide;
    this.maxSide = maxSide;
    this.label = element.querySelector(".canvas-frame-label");
    this.view = view;
    this.onChange = onChange;
    this.x = 0;
    this.y = 0;
    this.width = 1024;
    this.height = 1024;
    this.grid = 64;
    this.maxPixels = 1024 * 1024;
    this.drag = null;
  }

  get rect() { return { x: this.x, y: this.y, width: this.width, height: this.height }; }

  // The model's budget, and the grid (64 px or the model's multiple) positions and sizes snap to.
  setRules({ grid, maxPixels }) {
    this.grid = grid;
    this.maxPixels = maxPixels;
    this.set(this.rect);
  }

  // Snap and fit a rectangle; `changing` says which sides the user is dragging ("w", "h" or both),
  // so the budget shortens those and leaves the others as they are.
  set({ x, y, width, height }, changing = "wh") {
    const grid = this.grid;
    const low = Math.max(this.minSide, grid), high = Math.floor(this.maxSide / grid) * grid;
    width = Math.min(high, Math.max(low, snapTo(width, grid)));
    height = Math.min(high, Math.max(low, snapTo(height, grid)));
    while (width * height > this.maxPixels && (width > low || height > low)) {
      const shrinkWidth = changing === "w" || (changing !== "h" && width >= height);
      if (shrinkWidth && width > low) width -= grid;
      else if (height > low) height -= grid;
      else width -= grid;
    }
    const moved = { x: snapTo(x, grid), y: snapTo(y, grid), width, height };
    const same = moved.x === this.x && moved.y === this.y && width === this.width && height === this.height;
    Object.assign(this, moved);
    this.position();
    if (!same) this.onChange(this.rect);
  }

  // A square preset (512, 768, 1024) around the frame's centre, made smaller to fit the budget.
  preset(side) {
    const cx = this.x + this.width / 2, cy = this.y + this.height / 2;
    this.set({ x: cx - side / 2, y: cy - side / 2, width: side, height: side }, "h");
  }

  contains(cx, cy) {
    return cx >= this.x && cx < this.x + this.width && cy >= this.y && cy < this.y + this.height;
  }

  beginMove(cx, cy) {
    this.drag = { kind: "move", start: this.rect, cx, cy };
  }

  beginResize(handle, cx, cy) {
    this.drag = { kind: handle, start: this.rect, cx, cy };
  }

  dragTo(cx, cy) {
    const { kind, start } = this.drag;
    const dx = cx - this.drag.cx, dy = cy - this.drag.cy;
    if (kind === "move") {
      this.set({ ...start, x: start.x + dx, y: start.y + dy });
      return;
    }
    let left = start.x, top = start.y, right = start.x + start.width, bottom = start.y + start.height;
    if (kind.includes("w")) left = snapTo(left + dx, this.grid);
    if (kind.includes("e")) right = snapTo(right + dx, this.grid);
    if (kind.includes("n")) top = snapTo(top + dy, this.grid);
    if (kind.includes("s")) bottom = snapTo(bottom + dy, this.grid);
    const changing = (/[ew]/.test(kind) ? "w" : "") + (/[ns]/.test(kind) ? "h" : "");
    const width = right - left, height = bottom - top;
    this.set({ x: left, y: top, width, height }, changing);
    // Dragging the left or top edge keeps the opposite edge where it was.
    const fixRight = kind.includes("w") ? right - this.width : this.x;
    const fixBottom = kind.includes("n") ? bottom - this.height : this.y;
    if (fixRight !== this.x || fixBottom !== this.y) this.set({ ...this.rect, x: fixRight, y: fixBottom }, changing);
  }

  endDrag() {
    const dragged = this.drag !== null;
    this.drag = null;
    return dragged;
  }

  position() {
    const box = this.view.screenBox(this.x, this.y, this.width, this.height);
    Object.assign(this.element.style, {
      transform: `translate(${box.left}px, ${box.top}px)`, width: `${box.width}px`, height: `${box.height}px`,
    });
    this.label.textContent = `${this.width} × ${this.height}`;
  }
}
