// The one script of the status page: reloads it every 15 s while the box is ticked (off until
// ticked; the choice is kept in this browser), but not while someone types in a field or has
// a section open. Without JavaScript the box stays hidden and the page reads the same.
(function () {
  "use strict";
  var KEY = "mls-sync-ui-refresh";
  var box = document.getElementById("auto-refresh");
  if (!box) { return; }
  box.parentElement.parentElement.hidden = false;
  box.checked = window.localStorage.getItem(KEY) === "on";
  box.addEventListener("change", function () {
    window.localStorage.setItem(KEY, box.checked ? "on" : "off");
  });
  window.setInterval(function () {
    var busy = document.activeElement && document.activeElement.tagName === "INPUT" &&
      document.activeElement !== box;
    if (box.checked && !document.hidden && !busy && !document.querySelector("details[open]")) {
      window.location.reload();
    }
  }, 15000);
})();
