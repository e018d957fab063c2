// The minimap: the whole canvas in a corner, shown when the content reaches beyond the view, with the
// view and the frame outlined; a click there moves the view to that spot.

const VIEW_COLOUR = "rgba(255, 255, 255, 0.9)";
const FRAME_COLOUR = "rgb(122, 162, 255)";

export class Minimap {
  constructor(container, canvas, view, api, frame) {
    this.container = container;
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    this.view = view;
    this.api = api;
    this.frame = frame;
    this.box = null; // [x, y, width, height] of the content, canvas pixels
    this.image = null;
    this.sequence = 0;
    this.mapping = null;
    view.onChange(() => this.draw());
    canvas.addEventListener("pointerdown", (event) => {
      if (!this.mapping) return;
      event.preventDefault();
      event.stopPropagation();
      const box = canvas.getBoundingClientRect();
      const [cx, cy] = this.mapping.toCanvas(event.clientX - box.left, event.clientY - box.top);
      this.view.x = cx - this.view.width / 2 / this.view.zoom;
      this.view.y = cy - this.view.height / 2 / this.view.zoom;
      this.view.changed();
    });
  }

  // Ask for the content's box (and its thumbnail) again; resolves to the box, or null when empty.
  async refresh() {
    const sequence = ++this.sequence;
    const { ok, data } = await this.api.get("/bounds");
    if (!ok || sequence !== this.sequence) return this.box;
    this.box = data.box;
    if (this.box) {
      const image = new Image();
      image.src = data.thumbnail;
      try {
        await image.decode();
        if (sequence === this.sequence) this.image = image;
      } catch {
        this.image = null;
      }
    }
    this.draw();
    return this.box;
  }

  draw() {
    const box = this.box;
    const visible = this.view.visibleRect();
    const inView = box && box[0] >= visible.x && box[1] >= visible.y && box[0] + box[2] <= visible.x + visible.width
      && box[1] + box[3] <= visible.y + visible.height;
    this.container.hidden = !box || inView;
    if (this.container.hidden) {
      this.mapping = null;
      return;
    }
    // Everything worth showing: the content, the view and the frame.
    const x0 = Math.min(box[0], visible.x, this.frame.x), y0 = Math.min(box[1], visible.y, this.frame.y);
    const x1 = Math.max(box[0] + box[2], visible.x + visible.width, this.frame.x + this.frame.width);
    const y1 = Math.max(box[1] + box[3], visible.y + visible.height, this.frame.y + this.frame.height);
    const { width, height } = this.canvas;
    const scale = Math.min((width - 4) / (x1 - x0), (height - 4) / (y1 - y0));
    const ox = (width - (x1 - x0) * scale) / 2, oy = (height - (y1 - y0) * scale) / 2;
    const toMap = (x, y) => [ox + (x - x0) * scale, oy + (y - y0) * scale];
    this.mapping = { toCanvas: (mx, my) => [x0 + (mx - ox) / scale, y0 + (my - oy) / scale] };
    const context = this.context;
    context.clearRect(0, 0, width, height);
    const [bx, by] = toMap(box[0], box[1]);
    if (this.image) context.drawImage(this.image, bx, by, box[2] * scale, box[3] * scale);
    else {
      context.fillStyle = "rgba(255, 255, 255, 0.25)";
      context.fillRect(bx, by, box[2] * scale, box[3] * scale);
    }
    const outline = (rect, colour) => {
      const [rx, ry] = toMap(rect.x, rect.y);
      context.strokeStyle = colour;
      context.lineWidth = 1.5;
      context.strokeRect(rx, ry, Math.max(2, rect.width * scale), Math.max(2, rect.height * scale));
    };
    outline(this.frame.rect, FRAME_COLOUR);
    outline(visible, VIEW_COLOUR);
  }
}
