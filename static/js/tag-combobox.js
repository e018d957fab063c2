// Tag autocomplete as an ARIA combobox (the listbox pattern): the input keeps focus, ↑/↓ move the
// highlighted option (aria-activedescendant), Enter or Tab takes it, Esc closes the list.
// Keyboard navigation is GitHub's @github/combobox-nav (vendored); this module fetches the
// suggestions, renders them and decides what taking one means.
//
// Markup: <input data-combobox-url="…" aria-describedby…> followed by <ul role="listbox" hidden>.
// The URL answers ?tag=<what is typed> with JSON {"suggestions": [{tag, count, source, new, alias}]}.
// With data-combobox-submit, Enter on a suggestion also submits the input's form (the editor's
// "Add a tag": type 1gi, ↓, Enter adds 1girl). Only the text after the last comma is completed.

import Combobox from "../vendor/combobox-nav.js";

const DELAY_MS = 60;

function lastPart(value) {
  const cut = value.lastIndexOf(",");
  return { head: cut >= 0 ? value.slice(0, cut + 1) + " " : "", last: value.slice(cut + 1).trim() };
}

function describe(s) {
  if (s.source === "dataset") return `${s.count.toLocaleString()} image${s.count === 1 ? "" : "s"}`;
  return `${s.count.toLocaleString()} posts · ${s.source}`;
}

class TagCombobox {
  constructor(input) {
    this.input = input;
    this.list = document.getElementById(input.getAttribute("aria-controls")) || input.parentElement.querySelector("[role=listbox]");
    this.status = document.getElementById(input.dataset.comboboxStatus || "");
    this.url = input.dataset.comboboxUrl;
    this.submit = input.hasAttribute("data-combobox-submit");
    this.nav = new Combobox(input, this.list, { tabInsertsSuggestions: true, firstOptionSelectionMode: "none" });
    this.open = false;
    this.timer = null;
    this.request = null;
    this.lastQuery = null;
    // Keys pressed before the suggestions arrived: a fast "1gi ↓ Enter" means the first suggestion,
    // not the typed "1gi" (the list opens, highlighted, and the Enter waits for it).
    this.pending = false;
    this.wantFirst = false;
    this.enterQueued = false;

    input.setAttribute("autocomplete", "off");
    input.addEventListener("input", () => {
      this.wantFirst = false;
      this.enterQueued = false;
      this.schedule();
    });
    input.addEventListener("focus", () => { if (this.input.value.trim()) this.schedule(); });
    input.addEventListener("blur", () => this.close());
    // Escape closes the list (and stops there, so the page's own Esc handling does not also run).
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.open) {
        event.preventDefault();
        event.stopPropagation();
        this.close();
      } else if (event.key === "ArrowDown" && !this.open && lastPart(this.input.value).last) {
        event.preventDefault();
        this.wantFirst = true;
        if (!this.pending) this.schedule();
      } else if (event.key === "Enter" && this.wantFirst) {
        event.preventDefault();  // the suggestion asked for with ↓ is on its way: take it then
        this.enterQueued = true;
      }
    });
    // Keep focus in the input when an option is clicked.
    this.list.addEventListener("pointerdown", (event) => event.preventDefault());
    this.list.addEventListener("combobox-commit", (event) => this.take(event.target.closest("[role=option]"), event.detail && event.detail.event));
  }

  schedule() {
    clearTimeout(this.timer);
    this.pending = true;
    this.timer = setTimeout(() => this.fetch(), DELAY_MS);
  }

  // The typed text goes in as it is (what Enter does when there is nothing to choose).
  settleWithoutSuggestion() {
    const enter = this.enterQueued;
    this.wantFirst = false;
    this.enterQueued = false;
    if (enter && this.submit && this.input.form) this.input.form.requestSubmit();
  }

  async fetch() {
    const { last } = lastPart(this.input.value);
    if (!last) {
      this.close();
      return;
    }
    if (last === this.lastQuery && this.open) {
      this.pending = false;
      return;
    }
    if (this.request) this.request.abort();
    const request = new AbortController();
    this.request = request;
    const url = new URL(this.url, window.location.href);
    url.searchParams.set("tag", last);
    let data;
    try {
      const response = await fetch(url, { signal: request.signal, headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
    } catch {
      // Aborted by a newer keystroke (which fetches again), or offline: keep what is shown.
      if (request === this.request) {
        this.pending = false;
        this.settleWithoutSuggestion();
      }
      return;
    }
    if (request !== this.request || document.activeElement !== this.input) return;
    this.pending = false;
    this.lastQuery = last;
    this.render(data.suggestions || []);
  }

  render(suggestions) {
    this.list.replaceChildren();
    suggestions.forEach((s, i) => {
      const option = document.createElement("li");
      option.setAttribute("role", "option");
      option.id = `${this.list.id}-${i}`;
      option.dataset.value = s.tag;
      const name = document.createElement("span");
      name.className = "ds-option-tag";
      name.textContent = s.tag;
      option.append(name);
      if (s.alias) {
        const alias = document.createElement("span");
        alias.className = "ds-option-alias";
        alias.textContent = `← ${s.alias}`;
        option.append(alias);
      }
      const meta = document.createElement("span");
      meta.className = "ds-option-meta";
      meta.textContent = describe(s);
      option.append(meta);
      if (s.new) {
        const badge = document.createElement("span");
        badge.className = "badge ds-option-new";
        badge.textContent = "new";
        badge.title = "Not yet in this dataset";
        option.append(badge);
      }
      this.list.append(option);
    });
    if (suggestions.length) {
      this.list.hidden = false;
      if (!this.open) this.nav.start();
      else this.nav.resetSelection();
      this.open = true;
      if (this.wantFirst) {
        this.wantFirst = false;
        this.nav.navigate(1);
        if (this.enterQueued) {
          this.enterQueued = false;
          this.pendingKey = "Enter";
          this.take(this.list.querySelector("[aria-selected=true]") || this.list.firstElementChild);
        }
      }
    } else {
      this.close();
      this.settleWithoutSuggestion();
    }
    if (this.status) {
      this.status.textContent = suggestions.length ? `${suggestions.length} suggestion${suggestions.length === 1 ? "" : "s"}; use the arrow keys` : "";
    }
  }

  close() {
    clearTimeout(this.timer);
    this.pending = false;
    if (this.request) this.request.abort();
    this.request = null;
    this.lastQuery = null;
    if (this.open) this.nav.stop();
    this.open = false;
    this.list.hidden = true;
    this.list.replaceChildren();
    if (this.status) this.status.textContent = "";
  }

  take(option, clickEvent) {
    if (!option) return;
    const { head } = lastPart(this.input.value);
    this.input.value = head + option.dataset.value;
    // A key press (Enter/Tab) arrives as the library's synthetic click; a real click has detail.event.
    const viaKeyboard = !clickEvent || clickEvent.detail === 0;
    const pressedEnter = this.pendingKey === "Enter";
    this.close();
    this.input.focus();
    if (this.submit && (pressedEnter || !viaKeyboard) && this.input.form) {
      this.input.form.requestSubmit();
    }
  }
}

function enhance(root) {
  for (const input of root.querySelectorAll("input[data-combobox-url]")) {
    if (input.dataset.comboboxReady) continue;
    input.dataset.comboboxReady = "1";
    const box = new TagCombobox(input);
    // Which key committed: Enter adds the tag at once, Tab only fills it in.
    input.addEventListener("keydown", (event) => { box.pendingKey = event.key; }, true);
  }
}

enhance(document);
// The editor panel is re-rendered by HTMX after each edit; enhance the new input too.
document.body.addEventListener("htmx:load", (event) => enhance(event.detail.elt.parentElement || document));
