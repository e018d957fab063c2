// Staged variations: each finished generation's outputs, previewed over their frame exactly as
// accepting would paste them, with a strip to look through, accept, discard, save or make more.
// After an accept the generation's variations stay, kept until discarded: the accepted one and the
// others "set aside". The strip then folds to one line (painting goes on); "Review" opens them again
// to look at, save to the gallery, discard, or accept another one instead.

import { formData } from "./api.js";

export class Staging {
  constructor(strip, preview, view, api, { onAccepted, onMessage }) {
    this.strip = strip;
    this.preview = preview;
    this.view = view;
    this.api = api;
    this.onAccepted = onAccepted;
    this.onMessage = onMessage;
    this.items = [];
    this.index = 0;
    this.busy = false;
    this.reviewing = false; // the strip is open over the canvas (staged ones open it by themselves)
    this.full = strip.querySelectorAll("[data-staging-full]");
    this.folded = strip.querySelector("[data-staging-folded]");
    this.summary = strip.querySelector("[data-staging-summary]");
    this.count = strip.querySelector("[data-staging-count]");
    this.details = strip.querySelector("[data-staging-details]");
    this.message = strip.querySelector("[data-staging-message]");
    this.anyway = strip.querySelector('[data-staging="accept-anyway"]');
    strip.addEventListener("click", (event) => {
      const button = event.target.closest("[data-staging]");
      if (!button || button.disabled) return;
      const action = {
        previous: () => this.step(-1), next: () => this.step(1), accept: () => this.accept(false),
        "accept-anyway": () => this.accept(true), discard: () => this.discard(), "discard-all": () => this.discardAll(),
        save: () => this.save(), more: () => this.more(), again: () => this.again(),
        review: () => this.review(true), close: () => this.review(false),
      }[button.dataset.staging];
      action?.();
    });
  }

  // Open over the canvas: arrows, Enter and Esc are the strip's, a drag pans instead of painting.
  get active() { return this.reviewing && this.items.length > 0; }
  get current() { return this.items[this.index]; }
  get anyStaged() { return this.items.some((item) => item.state === "staged"); }

  async load() {
    const { ok, data } = await this.api.get("/staging");
    if (ok) this.show(data.variations);
  }

  // Show a new list, staying on the same variation when it is still there. Newly staged variations
  // open the strip at the first of them; when none is staged any more it folds away.
  show(items) {
    const currentId = this.current?.id;
    const hadStaged = this.anyStaged;
    this.items = items;
    const kept = items.findIndex((item) => item.id === currentId);
    this.index = kept >= 0 ? kept : Math.min(this.index, Math.max(0, items.length - 1));
    if (this.anyStaged && (!hadStaged || this.current?.state !== "staged")) {
      this.reviewing = true;
      this.index = items.findIndex((item) => item.state === "staged");
    } else if (hadStaged && !this.anyStaged) {
      this.reviewing = false;
    }
    this.render();
  }

  review(open) {
    this.reviewing = open && this.items.length > 0;
    if (open) this.index = Math.min(this.index, this.items.length - 1);
    this.render();
  }

  step(by) {
    if (!this.active) return;
    this.index = (this.index + by + this.items.length) % this.items.length;
    this.render();
  }

  async accept(force) {
    const item = this.current;
    if (!item || this.busy) return;
    if (item.state === "accepted") return;
    await this.run(async () => {
      const instead = item.state === "set aside" ? item.accepted_id : null;
      const { ok, status, data } = await this.api.post(item.accept, formData({ force: force ? "1" : null, instead }));
      if (status === 409 && data.stale) {
        this.say(data.error, true);
        return;
      }
      if (status === 409 && data.already_accepted) {
        // Another tab or click won: show what is staged now, and say why.
        this.show(data.variations);
        this.onMessage(data.error, true);
        return;
      }
      if (!ok) {
        this.say(data.error);
        return;
      }
      // The preview stays up until the new tiles are on screen, so nothing flickers.
      await this.onAccepted(data, item);
      this.reviewing = false; // back to painting, unless other generations are still staged
      this.show(data.variations);
      if (this.anyStaged) this.review(true);
      const others = this.items.filter((other) => other.request === item.request && other.state === "set aside").length;
      const kept = others ? ` The other ${others === 1 ? "one is" : `${others} are`} kept below until discarded.` : "";
      this.onMessage(`${data.accepted}${force ? " (over the newer pixels)" : ""} Ctrl+Z undoes it.${kept}`);
    });
  }

  async discard() {
    const item = this.current;
    if (!item || this.busy) return;
    await this.run(async () => {
      const { ok, data } = await this.api.post(item.discard);
      if (ok) this.show(data.variations);
      else this.say(data.error);
    });
  }

  async discardAll() {
    if (!this.active || this.busy) return;
    await this.run(async () => {
      const { ok, data } = await this.api.post("/staging/discard");
      if (ok) this.show(data.variations);
      else this.say(data.error);
    });
  }

  async save() {
    const item = this.current;
    if (!item || this.busy) return;
    await this.run(async () => {
      const { ok, data } = await this.api.post(item.save);
      this.say(ok ? "Saved to the gallery; it stays here until discarded." : data.error);
    });
  }

  // The same frame and mask again with a new seed; its progress shows with the other jobs.
  more() {
    const item = this.current;
    if (!item) return;
    window.htmx.ajax("POST", item.more, {
      target: "#canvas-jobs", swap: "afterbegin", headers: { "X-CSRFToken": this.api.csrf },
    });
    this.say("Generating more variations for this frame…");
  }

  // This exact output again: the same input and seed, the model making all N and this one staged.
  again() {
    const item = this.current;
    if (!item) return;
    window.htmx.ajax("POST", item.again, {
      target: "#canvas-jobs", swap: "afterbegin", headers: { "X-CSRFToken": this.api.csrf },
    });
    this.say(`Making ${item.label} again…`);
  }

  async run(work) {
    this.busy = true;
    this.strip.setAttribute("aria-busy", "true");
    try {
      await work();
    } finally {
      this.busy = false;
      this.strip.removeAttribute("aria-busy");
    }
  }

  say(text, offerAcceptAnyway = false) {
    this.message.textContent = text || "";
    this.message.hidden = !text;
    this.anyway.hidden = !offerAcceptAnyway;
  }

  render() {
    const item = this.current;
    const open = this.active;
    this.strip.hidden = !item;
    this.preview.hidden = !open;
    this.view.element.classList.toggle("is-staging", open);
    this.strip.classList.toggle("is-folded", Boolean(item) && !open);
    for (const part of this.full) part.hidden = !open;
    this.folded.hidden = open || !item;
    this.say("");
    if (!item) return;
    if (!open) {
      const count = (state) => this.items.filter((other) => other.state === state).length;
      const parts = [[count("accepted"), "accepted"], [count("set aside"), "set aside"]]
        .filter(([n]) => n).map(([n, what]) => `${n} ${what}`);
      this.summary.textContent = `Kept variations: ${parts.join(", ")}.`;
      this.position();
      return;
    }
    if (this.preview.getAttribute("src") !== item.preview) this.preview.src = item.preview;
    const state = item.state === "staged" ? "" : ` · ${item.state}`;
    this.preview.alt = `Variation ${item.index + 1} of ${item.outputs}${state}`;
    this.count.textContent = `Variation ${item.index + 1} of ${item.outputs}${state}`;
    // "seed S, output i of N": what "Make again" reproduces exactly.
    this.details.textContent = `${item.width} × ${item.height} · ${item.label}`
      + (this.items.length > item.outputs ? ` · ${this.index + 1} of ${this.items.length} shown` : "");
    this.strip.querySelector('[data-staging="again"]').disabled = item.seed === null || item.seed === undefined;
    const accept = this.strip.querySelector('[data-staging="accept"]');
    accept.disabled = item.state === "accepted";
    accept.textContent = { staged: "Accept", "set aside": "Accept instead", accepted: "Accepted" }[item.state];
    accept.title = item.state === "set aside" ? "Undo the accepted variation and accept this one (Enter)" : "Accept (Enter)";
    this.strip.querySelector('[data-staging="close"]').hidden = this.anyStaged;
    this.position();
  }

  position() {
    const item = this.current;
    if (!item) return;
    const box = this.view.screenBox(item.x, item.y, item.width, item.height);
    Object.assign(this.preview.style, {
      transform: `translate(${box.left}px, ${box.top}px)`, width: `${box.width}px`, height: `${box.height}px`,
    });
    // The strip sits under the frame, kept inside the viewport.
    const stripWidth = this.strip.offsetWidth, stripHeight = this.strip.offsetHeight;
    const left = Math.min(Math.max(8, box.left + box.width / 2 - stripWidth / 2), this.view.width - stripWidth - 8);
    const top = Math.min(Math.max(8, box.top + box.height + 8), this.view.height - stripHeight - 8);
    this.strip.style.transform = `translate(${Math.round(left)}px, ${Math.round(top)}px)`;
  }
}
