// The search box of every page (templates/search.html): Pagefind's default UI over the
// recent bundle and the archive's, given an id for the page's <label>.
"use strict";
(function () {
  var script = document.currentScript;
  var box = document.getElementById("search");
  if (!box || typeof PagefindUI === "undefined") {
    return;
  }
  var start = function (merged) {
    new PagefindUI({
      element: "#search",
      mergeIndex: merged,
      showImages: false,
      showSubResults: false,
      translations: { placeholder: "Search files, digests, uploaders" },
    });
    var input = box.querySelector("input");
    if (input) {
      input.id = "search-input";
    }
  };
  // Whether the oldest records are in an archive bundle to merge with pagefind/ (the
  // addresses are relative to this script's, and path-absolute: links stay under a prefix).
  var archive = new URL("../pagefind-archive/", script.src).pathname;
  fetch(new URL("../pagefind/archive.json", script.src))
    .then(function (answer) {
      return answer.json();
    })
    .then(function (found) {
      start(found.archive ? [{ bundlePath: archive }] : []);
    })
    .catch(function () {
      start([]);
    });
})();
