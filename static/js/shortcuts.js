// Ctrl+Enter (⌘+Enter on a Mac) submits a form marked data-ctrl-enter from any of its fields, the way
// A1111 and InvokeAI generate; with the focus outside every form it submits the page's first such form.
(function () {
  "use strict";
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.altKey || event.repeat) return;
    const inForm = event.target.closest ? event.target.closest("form") : null;
    const form = inForm ? (inForm.matches("[data-ctrl-enter]") ? inForm : null) : document.querySelector("form[data-ctrl-enter]");
    if (!form) return;
    event.preventDefault();
    const button = form.querySelector("button[type=submit]:not([disabled])");
    if (button) form.requestSubmit(button);
  });
})();
