// The gallery's detail view: ← newer image, → older image, Esc back to the grid.
// Keys typed into a field (the dataset picker, the canvas picker) are left alone.
(function () {
  "use strict";
  const targets = { ArrowLeft: "a[rel=prev]", ArrowRight: "a[rel=next]", Escape: "#gallery-back" };
  document.addEventListener("keydown", (event) => {
    const selector = targets[event.key];
    if (!selector || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable], details[open] form")) return;
    const link = document.querySelector(selector);
    if (!link) return;
    event.preventDefault();
    window.location.assign(link.href);
  });
})();
