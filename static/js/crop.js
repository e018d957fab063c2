// The crop tool: drag the box (its shape is the chosen bucket's) over the part of the image to keep.
// The box's position in the image's own pixels goes into the form's hidden fields. It starts where
// the server's automatic crop puts it (data-auto-box: the face, else the subject); "Automatic" asks
// the server again for the chosen bucket, "Centre" puts it in the middle. Without JavaScript the
// form writes the automatic crop.

const stage = document.getElementById("crop-stage");
const image = stage && stage.querySelector("img");
const box = document.getElementById("crop-box");
const form = document.getElementById("crop-form");

function field(name) {
  return form.querySelector(`input[name=${name}]`);
}

function bucketSize() {
  const [w, h] = form.querySelector("select[name=bucket]").value.split("x").map(Number);
  return { w, h };
}

// The box in image pixels (left, top, width, height), kept inside the image.
let state = null;

function fit(centreX, centreY) {
  const natural = { w: Number(stage.dataset.width), h: Number(stage.dataset.height) };
  const { w, h } = bucketSize();
  let boxW = natural.w;
  let boxH = Math.round(natural.w * h / w);
  if (boxH > natural.h) {
    boxH = natural.h;
    boxW = Math.round(natural.h * w / h);
  }
  const left = Math.round(Math.min(Math.max(centreX - boxW / 2, 0), natural.w - boxW));
  const top = Math.round(Math.min(Math.max(centreY - boxH / 2, 0), natural.h - boxH));
  state = { left, top, w: boxW, h: boxH, natural };
  draw();
}

function draw() {
  const scale = image.clientWidth / state.natural.w;
  box.style.left = `${state.left * scale}px`;
  box.style.top = `${state.top * scale}px`;
  box.style.width = `${state.w * scale}px`;
  box.style.height = `${state.h * scale}px`;
  field("left").value = state.left;
  field("top").value = state.top;
  field("right").value = state.left + state.w;
  field("bottom").value = state.top + state.h;
}

function centre() {
  fit(Number(stage.dataset.width) / 2, Number(stage.dataset.height) / 2);
  note("Centred: what the trainer would keep.");
}

function note(text) {
  const line = document.getElementById("crop-note");
  if (line) line.textContent = text;
}

// Face outlines found by the automatic crop, placed over the shown image.
function drawFaces() {
  const scale = image.clientWidth / Number(stage.dataset.width);
  for (const face of stage.querySelectorAll(".ds-crop-face")) {
    const [l, t, r, b] = face.dataset.box.split(",").map(Number);
    face.style.left = `${l * scale}px`;
    face.style.top = `${t * scale}px`;
    face.style.width = `${(r - l) * scale}px`;
    face.style.height = `${(b - t) * scale}px`;
  }
}

function placeBox(box) {
  const [l, t, r, b] = box;
  fit((l + r) / 2, (t + b) / 2);
}

// The automatic box for the chosen bucket, from the server (the same placement the bulk crop uses).
async function automatic() {
  const { w, h } = bucketSize();
  const url = new URL(stage.dataset.autoUrl, window.location.href);
  url.searchParams.set("bucket", `${w}x${h}`);
  box.setAttribute("aria-busy", "true");
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const answer = await response.json();
    if (!response.ok) {
      note(answer.error || "The automatic crop failed; drag the box instead.");
      return;
    }
    placeBox(answer.box);
    note(`Automatic: ${answer.note}`);
  } catch (error) {
    note("The automatic crop could not be reached; drag the box instead.");
  } finally {
    box.removeAttribute("aria-busy");
  }
}

function start() {
  drawFaces();
  if (stage.dataset.autoBox) placeBox(stage.dataset.autoBox.split(",").map(Number));
  else fit(Number(stage.dataset.width) / 2, Number(stage.dataset.height) / 2);
}

if (stage && image && box && form) {
  let drag = null;
  box.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, left: state.left, top: state.top };
    box.setPointerCapture(event.pointerId);
  });
  box.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const scale = image.clientWidth / state.natural.w;
    const cx = drag.left + (event.clientX - drag.x) / scale + state.w / 2;
    const cy = drag.top + (event.clientY - drag.y) / scale + state.h / 2;
    fit(cx, cy);
  });
  box.addEventListener("pointerup", () => { drag = null; });
  // Arrow keys move the focused box by 1% of the image (10% with Shift).
  box.addEventListener("keydown", (event) => {
    const step = (event.shiftKey ? 0.1 : 0.01) * Math.max(state.natural.w, state.natural.h);
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    fit(state.left + state.w / 2 + move[0], state.top + state.h / 2 + move[1]);
  });
  // A new bucket is a new shape: the automatic crop places it again (the user adjusts from there).
  form.querySelector("select[name=bucket]").addEventListener("change", automatic);
  document.getElementById("crop-centre").addEventListener("click", centre);
  document.getElementById("crop-auto").addEventListener("click", automatic);
  window.addEventListener("resize", () => { if (state) { draw(); drawFaces(); } });
  if (image.complete) start();
  else image.addEventListener("load", start);
}
