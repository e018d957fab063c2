// Dataset grid niceties HTML cannot do alone: a live count of selected images, selecting all shown,
// and the ✎ button that puts a tag into the edit form. (Finding a tag is a server search: the
// panel pages through tens of thousands of tags.)

const bulkForm = document.getElementById("bulk-form");

function updateSelection() {
  const count = document.querySelectorAll(".ds-select:checked").length;
  const counter = document.getElementById("selected-count");
  if (counter) counter.textContent = String(count);
  const selectedScope = document.getElementById("scope-selected");
  if (selectedScope && count > 0 && !selectedScope.dataset.userChoice) {
    selectedScope.checked = true;
    document.getElementById("bulk-panel").open = true;
  }
}

document.addEventListener("change", (event) => {
  if (event.target.matches(".ds-select")) updateSelection();
  if (event.target.matches("input[name=scope]")) {
    // Once the user picks a scope, selecting images no longer switches it for them.
    document.getElementById("scope-selected").dataset.userChoice = "1";
  }
});

document.addEventListener("click", (event) => {
  if (event.target.id === "select-shown" || event.target.id === "select-none") {
    const checked = event.target.id === "select-shown";
    for (const box of document.querySelectorAll(".ds-select")) box.checked = checked;
    updateSelection();
    return;
  }
  const button = event.target.closest(".ds-use-tag");
  if (!button || !bulkForm) return;
  document.getElementById("bulk-panel").open = true;
  const tagField = document.getElementById("b-old");
  tagField.value = button.dataset.tag;
  const newName = document.getElementById("b-new");
  newName.value = button.dataset.tag;
  newName.focus();
  newName.select();
});

updateSelection();
