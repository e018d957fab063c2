// Keyboard shortcuts of the dataset image editor (the keys are listed on the page).
// Moving to another image first saves text that is typed but not yet saved.

const caption = () => document.getElementById("caption-text");
// The caption text the server has: what the page loaded, then what each successful save sent.
let savedText = caption() ? caption().value : "";
let sendingText = null;
if (caption()) caption().dataset.known = "1";

document.body.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.elt === caption()) sendingText = caption().value;
});
document.body.addEventListener("htmx:afterRequest", (event) => {
  if (event.detail.elt === caption() && event.detail.successful) savedText = sendingText;
});
document.body.addEventListener("htmx:afterSwap", () => {
  // A chip action re-renders the editor with the caption it saved.
  const textarea = caption();
  if (textarea && !textarea.dataset.known) {
    textarea.dataset.known = "1";
    savedText = textarea.value;
  }
});

function saveThen(action) {
  const textarea = caption();
  if (!textarea || textarea.value === savedText || !window.htmx) {
    action();
    return;
  }
  const done = (event) => {
    if (event.detail.elt !== textarea) return;
    if (!event.detail.successful) {
      document.body.removeEventListener("htmx:afterRequest", done);  // a conflict stays on screen
    } else if (textarea.value === savedText) {
      document.body.removeEventListener("htmx:afterRequest", done);
      action();
    }  // else an older save finished first; the one asked for below is still to come
  };
  document.body.addEventListener("htmx:afterRequest", done);
  window.htmx.trigger(textarea, "change");
}

function go(selector) {
  const link = document.querySelector(selector);
  if (link && link.href) saveThen(() => { window.location.href = link.href; });
}

function focusTagInput() {
  const input = document.getElementById("tag-input");
  if (input) {
    input.focus();
    input.select();
  }
}

function review(thenNext) {
  const form = document.getElementById("reviewed-form");
  if (!form) return;
  const alreadyReviewed = form.querySelector("input[name=reviewed]").value === "0";
  if (thenNext && alreadyReviewed) {
    go("#next-image");
    return;
  }
  form.querySelector("input[name=then]").value = thenNext ? "next" : "";
  saveThen(() => form.requestSubmit());
}

function moveToTrash() {
  const form = document.getElementById("trash-form");
  if (form) form.requestSubmit();
}

// Typed text is saved first (button or key), so the caption that goes to the trash, and comes
// back from it, is the latest.
const trashForm = document.getElementById("trash-form");
if (trashForm) {
  trashForm.addEventListener("submit", (event) => {
    const textarea = caption();
    if (!textarea || textarea.value === savedText || !window.htmx) return;
    event.preventDefault();
    saveThen(() => trashForm.submit());
  });
}

document.addEventListener("keydown", (event) => {
  const inField = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
  if (event.altKey && !event.ctrlKey && !event.metaKey) {
    // event.code, not event.key: Option+N on a Mac types "˜".
    const actions = {
      KeyN: () => go("#next-image"),
      KeyP: () => go("#prev-image"),
      KeyT: focusTagInput,
      KeyR: () => review(false),
      Enter: () => review(true),
      Delete: moveToTrash,
    };
    const action = actions[event.code];
    if (action) {
      event.preventDefault();
      action();
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "PageDown" || event.key === "PageUp") {
    event.preventDefault();
    go(event.key === "PageDown" ? "#next-image" : "#prev-image");
  } else if (event.key === "Delete" && !inField) {
    // Not on a focused control either: Delete on a tag chip's button must not trash the image.
    if (event.target.closest && event.target.closest("button, a, summary, [role=option]")) return;
    event.preventDefault();
    moveToTrash();
  } else if (event.key === "Escape" && inField) {
    event.target.blur();
  } else if (!inField) {
    const actions = {
      ArrowRight: () => go("#next-image"),
      ArrowLeft: () => go("#prev-image"),
      "/": focusTagInput,
      t: focusTagInput,
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  }
});
