// Copy buttons: each copies the text of the <pre> its data-copy names. No inline scripts (the pages' CSP).
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) return;
  var source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent).then(function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  }, function () {
    button.textContent = "Select and copy";
  });
});
