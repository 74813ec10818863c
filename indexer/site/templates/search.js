// The search box of every page (templates/search.html): Pagefind's default UI, given an id
// for the page's <label>.
"use strict";
(function () {
  var box = document.getElementById("search");
  if (!box || typeof PagefindUI === "undefined") {
    return;
  }
  new PagefindUI({
    element: "#search",
    showImages: false,
    showSubResults: false,
    translations: { placeholder: "Search files, digests, uploaders" },
  });
  var input = box.querySelector("input");
  if (input) {
    input.id = "search-input";
  }
})();
