// The file control of model inputs that take images (templates/_schema_fields.html): upload several,
// pick gallery or canvas images, paste links; previews; remove and reorder. Without this script the
// same form still posts: the file box sends its files and the link box its link.
//
// Every chosen item is an <li> holding a hidden input named after the model input, in order:
// "file:K" (its file rides along in a hidden file input named "<input>.file.K"), "generation:ID",
// "canvas:ID", or the link itself. The server turns that list into the JSON list sent to Replicate.
// A link typed but not added is still sent: its box carries the input's name, after the items.
// Works on forms HTMX swaps in later: everything is delegated from the document.

let counter = 0;

function control(element) {
  return element.closest("[data-file-input]");
}

function say(box, message) {
  const status = box.querySelector(".file-status");
  if (status) status.textContent = message;
}

function room(box) {
  const max = parseInt(box.dataset.max || "", 10);
  const count = box.querySelectorAll(".file-items > li").length;
  if (!max) return Infinity;
  if (max === 1 && count === 1) {
    // A one-image input: the new image replaces the old one.
    box.querySelector(".file-items > li").remove();
    return 1;
  }
  return max - count;
}

function button(label, text, data) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = "small";
  node.textContent = text;
  node.setAttribute("aria-label", label);
  Object.assign(node.dataset, data);
  return node;
}

function addItem(box, value, label, preview, file) {
  const name = box.dataset.name;
  const many = box.dataset.max !== "1";
  const item = document.createElement("li");
  item.className = "file-item";
  if (preview) {
    const img = document.createElement("img");
    img.src = preview;
    img.alt = "";
    img.width = 64;
    img.height = 64;
    item.append(img);
  } else {
    const icon = document.createElement("span");
    icon.className = "file-icon";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = "🔗";
    item.append(icon);
  }
  const text = document.createElement("span");
  text.className = "file-label";
  text.textContent = label;
  item.append(text);
  const hidden = document.createElement("input");
  hidden.type = "hidden";
  hidden.name = name;
  hidden.value = value;
  item.append(hidden);
  if (file) {
    const holder = document.createElement("input");
    holder.type = "file";
    holder.hidden = true;
    holder.name = `${name}.file.${value.slice(5)}`;
    const transfer = new DataTransfer();
    transfer.items.add(file);
    holder.files = transfer.files;
    item.append(holder);
  }
  if (many) {
    item.append(button(`Move ${label} earlier`, "↑", { move: "-1" }));
    item.append(button(`Move ${label} later`, "↓", { move: "1" }));
  }
  item.append(button(`Remove ${label}`, "✕", { remove: "" }));
  box.querySelector(".file-items").append(item);
}

function addFiles(box, input) {
  const files = Array.from(input.files || []);
  let free = room(box);
  let skipped = 0;
  for (const file of files) {
    if (free <= 0) {
      skipped += 1;
      continue;
    }
    counter += 1;
    const key = `${Date.now().toString(36)}${counter}`;
    addItem(box, `file:${key}`, file.name, file.type.startsWith("image/") ? URL.createObjectURL(file) : "", file);
    free -= 1;
  }
  // The files now ride in their items; the picker itself sends nothing.
  input.value = "";
  say(box, skipped ? `${skipped} not added: this input takes at most ${box.dataset.max}.` : `${files.length - skipped} added.`);
}

function addLink(box) {
  const field = box.querySelector(".file-url input");
  const link = field.value.trim();
  if (!link) return;
  if (!/^(https?:\/\/|data:)/i.test(link)) {
    say(box, "A link must start with https:// (or be a data: URI).");
    return;
  }
  if (room(box) <= 0) {
    say(box, `This input takes at most ${box.dataset.max}.`);
    return;
  }
  // No preview for outside links: the page's content policy loads images from Tessera only.
  addItem(box, link, link.length > 60 ? `${link.slice(0, 57)}…` : link, "", null);
  field.value = "";
  say(box, "Link added.");
}

async function openPicker(box, url) {
  const dialog = box.querySelector("dialog.picker");
  const response = await fetch(url, { headers: { "HX-Request": "true" } });
  if (!response.ok) {
    say(box, "The gallery could not be loaded; try again.");
    return;
  }
  dialog.innerHTML = await response.text();
  dialog.showModal();
}

document.addEventListener("change", (event) => {
  const box = control(event.target);
  if (box && event.target.matches("input[type=file]:not([hidden])")) addFiles(box, event.target);
});

document.addEventListener("keydown", (event) => {
  const box = control(event.target);
  if (box && event.key === "Enter" && event.target.closest(".file-url")) {
    event.preventDefault(); // Enter adds the link instead of submitting the whole form
    addLink(box);
  }
});

document.addEventListener("click", (event) => {
  const target = event.target.closest("button");
  const box = target && control(target);
  if (!box) return;
  const item = target.closest(".file-items > li");
  if ("remove" in target.dataset && item) {
    item.remove();
    say(box, "Removed.");
  } else if (target.dataset.move && item) {
    const sibling = target.dataset.move === "-1" ? item.previousElementSibling : item.nextElementSibling;
    if (sibling) {
      if (target.dataset.move === "-1") sibling.before(item);
      else sibling.after(item);
      target.focus();
    }
  } else if ("addUrl" in target.dataset) {
    addLink(box);
  } else if (target.dataset.pick) {
    openPicker(box, target.dataset.pick);
  } else if (target.dataset.value) {
    // A gallery or canvas image in the picker dialog.
    if (room(box) <= 0) {
      say(box, `This input takes at most ${box.dataset.max}.`);
    } else {
      addItem(box, target.dataset.value, target.dataset.label, target.dataset.preview, null);
      say(box, `${target.dataset.label} added.`);
    }
    if (box.dataset.max === "1") target.closest("dialog").close();
  } else if ("close" in target.dataset) {
    target.closest("dialog").close();
  }
});
