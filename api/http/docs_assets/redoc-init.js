// Starts ReDoc on /redoc. A static file, so the page's policy needs no inline script. ReDoc
// styles itself with <style> elements: they carry this script's nonce, which the page's
// policy names (style-src 'self' 'nonce-…'), so no 'unsafe-inline' is needed.
(function () {
  var nonce = document.currentScript.nonce;
  window.addEventListener("load", function () {
    var root = document.getElementById("redoc");
    Redoc.init(root.dataset.specUrl, { nonce: nonce }, root);
  });
})();
