// Progressive enhancement only: every action also works without this file (plain forms, and a
// confirmation page for destructive ones).
(function () {
  "use strict";

  // Destructive forms carry data-confirm: ask in a <dialog>, then submit with confirm=yes so the
  // server skips its own confirmation page.
  function confirmDialog(form) {
    var dialog = document.createElement("dialog");
    var text = document.createElement("p");
    text.textContent = form.getAttribute("data-confirm");
    var actions = document.createElement("div");
    actions.className = "actions";
    var ok = document.createElement("button");
    ok.type = "button";
    ok.className = "danger";
    ok.textContent = "Yes, continue";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "secondary";
    cancel.textContent = "Cancel";
    actions.appendChild(ok);
    actions.appendChild(cancel);
    dialog.appendChild(text);
    dialog.appendChild(actions);
    document.body.appendChild(dialog);
    cancel.addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () { dialog.remove(); });
    ok.addEventListener("click", function () {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = "confirm";
      input.value = "yes";
      form.appendChild(input);
      dialog.close();
      form.submit();
    });
    dialog.showModal();
    cancel.focus();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) return;
    if (typeof HTMLDialogElement === "undefined") return;  // the server asks instead
    event.preventDefault();
    confirmDialog(form);
  });

  // "Select all" checkboxes: <input type=checkbox data-select-all="name">.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.hasAttribute || !box.hasAttribute("data-select-all")) return;
    var name = box.getAttribute("data-select-all");
    document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (other) {
      other.checked = box.checked;
    });
  });

  // Copy buttons: <button data-copy="text"> (or data-copy-from="element id").
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy],[data-copy-from]") : null;
    if (!button || !navigator.clipboard) return;
    var source = button.getAttribute("data-copy-from");
    var value = source ? (document.getElementById(source) || {}).textContent : button.getAttribute("data-copy");
    navigator.clipboard.writeText(value || "").then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // An unread message is marked read by a POST once its page has loaded, never by the GET
  // (prefetchers and link scanners open pages too): <form data-mark-read> (CSRF token inside);
  // without this script its "Mark read" button does the same.
  document.querySelectorAll("form[data-mark-read]").forEach(function (form) {
    fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin",
                        headers: {"Accept": "application/json"}}).then(function (resp) {
      if (resp.ok) form.remove();  // done; "Mark unread" is on the next visit
    });
  });
})();
