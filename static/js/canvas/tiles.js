// Tiles on screen: which level to show, which tiles to ask for, and <img> elements for them.
//
// The rule (bench/bench_canvas.py simulates it): the view's tile rectangle at the level for the
// zoom is listed with LIST_MARGIN extra tiles on every side, in one request, and listed again only
// when the view leaves the listed rectangle (or the canvas changed). Of the listed tiles, only
// those within PRELOAD screen pixels of the view are loaded. Tile URLs carry the version, so the
// browser keeps each file for good and fetches a tile again only when it changed.

export const LIST_MARGIN = 1;
export const PRELOAD = 128;
// Tiles this far beyond the listed rectangle stay in the page, so panning back shows them at once.
const KEEP_MARGIN = 2;

// Level n tiles show tileSize·2^n canvas pixels; pick the one whose pixels are no smaller than the screen's.
export function levelFor(zoom, maxLevel) {
  return Math.max(0, Math.min(maxLevel, Math.floor(Math.log2(1 / zoom) + 1e-9)));
}

// Tiles (end exclusive) of `level` that a canvas rectangle touches.
export function tileRect(rect, level, tileSize) {
  const span = tileSize * 2 ** level;
  return {
    tx0: Math.floor(rect.x / span), ty0: Math.floor(rect.y / span),
    tx1: Math.floor((rect.x + rect.width) / span) + 1, ty1: Math.floor((rect.y + rect.height) / span) + 1,
  };
}

export function expand(r, by) {
  return { tx0: r.tx0 - by, ty0: r.ty0 - by, tx1: r.tx1 + by, ty1: r.ty1 + by };
}

export function contains(outer, inner) {
  return inner.tx0 >= outer.tx0 && inner.ty0 >= outer.ty0 && inner.tx1 <= outer.tx1 && inner.ty1 <= outer.ty1;
}

function holds(r, tx, ty) {
  return tx >= r.tx0 && tx < r.tx1 && ty >= r.ty0 && ty < r.ty1;
}

export class TileLayer {
  constructor(container, api, view, { tileSize, maxLevel, onHead, onError }) {
    this.container = container;
    this.api = api;
    this.view = view;
    this.tileSize = tileSize;
    this.maxLevel = maxLevel;
    this.onHead = onHead;
    this.onError = onError;
    // level -> {element, versions: Map("tx,ty" -> listed version), tiles: Map("tx,ty" -> shown tile)}
    this.layers = new Map();
    this.listed = null; // {level, tx0, ty0, tx1, ty1} asked for last
    this.sequence = 0;
    this.current = 0;
  }

  // Call on every view change; returns a promise that settles when what is in view has loaded.
  update() {
    const level = levelFor(this.view.zoom, this.maxLevel);
    const visible = tileRect(this.view.visibleRect(), level, this.tileSize);
    this.current = level;
    for (const [number, layer] of this.layers) layer.element.classList.toggle("is-current", number === level);
    this.container.classList.toggle("is-pixelated", this.view.zoom >= 2);
    const listing = !this.listed || this.listed.level !== level || !contains(this.listed, visible)
      ? this.list(level, expand(visible, LIST_MARGIN)) : Promise.resolve();
    const loaded = this.load(level);
    this.position();
    return Promise.all([listing, loaded]);
  }

  // Ask again for the tiles in view, e.g. after undo or accept changed versions.
  refresh() {
    this.listed = null;
    return this.update();
  }

  async list(level, rect) {
    const sequence = ++this.sequence;
    this.listed = { level, ...rect };
    const { ok, data } = await this.api.get("/tiles", { level, ...rect });
    if (sequence !== this.sequence) return; // a newer listing replaced this one
    if (!ok) {
      this.listed = null;
      this.onError(data.error);
      return;
    }
    this.onHead(data.head);
    const layer = this.layer(level);
    for (const key of layer.versions.keys()) {
      const [tx, ty] = key.split(",").map(Number);
      if (holds(rect, tx, ty)) layer.versions.delete(key);
    }
    for (const [tx, ty, version] of data.tiles) layer.versions.set(`${tx},${ty}`, version);
    const keep = expand(rect, KEEP_MARGIN);
    for (const [key, tile] of layer.tiles) {
      // Listed now without it: the tile is transparent (cleared, undone). Far away: let it go.
      if ((holds(rect, tile.tx, tile.ty) && !layer.versions.has(key)) || !holds(keep, tile.tx, tile.ty)) {
        this.drop(layer, key);
      }
    }
    for (const key of layer.versions.keys()) {
      const [tx, ty] = key.split(",").map(Number);
      if (!holds(keep, tx, ty)) layer.versions.delete(key);
    }
    await this.load(level);
    this.position();
  }

  // Show the listed tiles near the view at their listed versions; settles when they have all loaded.
  load(level) {
    const layer = this.layers.get(level);
    if (!layer) return Promise.resolve();
    const margin = PRELOAD / this.view.zoom;
    const rect = this.view.visibleRect();
    const near = tileRect({ x: rect.x - margin, y: rect.y - margin, width: rect.width + 2 * margin,
                            height: rect.height + 2 * margin }, level, this.tileSize);
    const loads = [];
    for (const [key, version] of layer.versions) {
      const [tx, ty] = key.split(",").map(Number);
      if (!holds(near, tx, ty)) continue;
      const shown = layer.tiles.get(key);
      loads.push(shown && shown.version === version ? shown.ready : this.show(layer, level, tx, ty, version, shown));
    }
    return Promise.all(loads).then(() => this.dropOtherLevels(level));
  }

  show(layer, level, tx, ty, version, shown) {
    const img = new Image();
    img.alt = "";
    img.draggable = false;
    img.decoding = "async";
    // The older version stays on screen until the new one can replace it without a gap.
    const tile = { tx, ty, version, img, previous: shown ? shown.img : null };
    shown?.previous?.remove();
    const loaded = new Promise((resolve) => {
      img.addEventListener("load", () => { tile.previous?.remove(); tile.previous = null; resolve(); }, { once: true });
      img.addEventListener("error", () => { img.remove(); resolve(); }, { once: true });
    });
    tile.ready = loaded;
    img.src = this.api.tileUrl(level, tx, ty, version);
    layer.element.append(img);
    layer.tiles.set(`${tx},${ty}`, tile);
    return loaded;
  }

  drop(layer, key) {
    const tile = layer.tiles.get(key);
    tile.img.remove();
    tile.previous?.remove();
    layer.tiles.delete(key);
  }

  // Other levels stay underneath while the current one loads, then go.
  dropOtherLevels(level) {
    if (this.current !== level) return;
    for (const [number, other] of this.layers) {
      if (number !== level) {
        other.element.remove();
        this.layers.delete(number);
      }
    }
  }

  layer(level) {
    let layer = this.layers.get(level);
    if (!layer) {
      const element = document.createElement("div");
      element.className = "canvas-tile-level";
      element.dataset.level = level;
      this.container.append(element);
      layer = { element, versions: new Map(), tiles: new Map() };
      this.layers.set(level, layer);
    }
    layer.element.classList.toggle("is-current", level === this.current);
    return layer;
  }

  position() {
    for (const [level, layer] of this.layers) {
      const span = this.tileSize * 2 ** level;
      for (const tile of layer.tiles.values()) {
        const box = this.view.screenBox(tile.tx * span, tile.ty * span, span, span);
        for (const img of [tile.img, tile.previous]) {
          if (!img) continue;
          img.style.transform = `translate(${box.left}px, ${box.top}px)`;
          img.style.width = `${box.width}px`;
          img.style.height = `${box.height}px`;
        }
      }
    }
  }
}
