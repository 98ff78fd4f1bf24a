// The one script of the status page: reload every 15 s while the box is ticked (remembered
// in this browser). Without JavaScript the box stays hidden and the page is read as it is.
(function () {
  "use strict";
  var KEY = "mls-sync-ui-refresh";
  var box = document.getElementById("auto-refresh");
  if (!box) { return; }
  box.parentElement.parentElement.hidden = false;
  box.checked = window.localStorage.getItem(KEY) !== "off";
  box.addEventListener("change", function () {
    window.localStorage.setItem(KEY, box.checked ? "on" : "off");
  });
  window.setInterval(function () {
    if (box.checked && !document.hidden) { window.location.reload(); }
  }, 15000);
})();
