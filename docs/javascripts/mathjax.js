// MathJax 3 configuration for pymdownx.arithmatex (generic mode). MathJax itself is shipped
// with the site (javascripts/mathjax/, copied at build time by scripts/docs_hooks.py), so the
// equations render offline. Every use of MathJax is guarded: if it failed to load, the page
// shows the TeX source instead of throwing.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex"
  }
};

function ebmTypeset() {
  const mj = window.MathJax;
  if (!mj || !mj.startup || !mj.startup.promise || typeof mj.typesetPromise !== "function") {
    return;  // MathJax did not load (yet): nothing to do, and no TypeError
  }
  mj.startup.promise.then(() => {
    if (mj.startup.output && mj.startup.output.clearCache) mj.startup.output.clearCache();
    mj.typesetClear();
    mj.texReset();
    return mj.typesetPromise();
  });
}

if (typeof document$ !== "undefined") {
  document$.subscribe(ebmTypeset);  // Material's page-load observable (also instant loading)
}
