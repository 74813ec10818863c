// The search box of every page (templates/search.html): Pagefind's default UI over the
// recent bundle and the archive's, given an id for the page's <label>.
"use strict";
(function () {
  var script = document.currentScript;
  var box = document.getElementById("search");
  if (!box || typeof PagefindUI === "undefined") {
    return;
  }
  // The archive's bundle, merged with this one (its address relative to this script's).
  var archive = box.getAttribute("data-archive");
  var merged = archive && script ? [{ bundlePath: new URL(archive, script.src).pathname }] : [];
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
})();
