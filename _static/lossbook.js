// lossbook's page helpers (Jupyter Book adds every _static/*.js to every page).

// 1. The ipywidgets HTML manager typesets widget labels with MathJax 2's API
//    (MathJax.Hub.Queue); the book loads MathJax 3, where that call threw "Cannot read properties of
//    undefined (reading 'Queue')" and stopped the widgets from drawing. Provide Hub.Queue on top of
//    MathJax 3's typesetPromise, whether this runs before or after MathJax has started.
(function () {
  const hub = {
    Queue: (...jobs) => {
      const mj = window.MathJax;
      const elements = jobs.map((job) => (Array.isArray(job) ? job[2] : null)).filter((el) => el instanceof Element);
      const ready = mj && mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
      return ready.then(() => (mj && mj.typesetPromise ? mj.typesetPromise(elements.length ? elements : undefined) : null));
    },
  };
  const mj = window.MathJax;
  if (mj && mj.version) {
    mj.Hub = mj.Hub || hub; // MathJax 3 already running
    return;
  }
  const config = (window.MathJax = mj || {});
  const startup = (config.startup = config.startup || {});
  const ready = startup.ready;
  startup.ready = function () {
    if (ready) ready(); else window.MathJax.startup.defaultReady();
    window.MathJax.Hub = window.MathJax.Hub || hub;
  };
})();

// 2. Claims tables (lossbook.lab.experiments.claims_table) as one card per claim, see lossbook.css.
//    Without JavaScript the plain table stays, scrolling sideways.
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.lossbook-claims")) {
    const labels = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, i) => {
        const label = labels[i] || "";
        cell.dataset.name = label;
        cell.dataset.label = label.replace(/_/g, " ");
        if (!cell.textContent.trim()) cell.classList.add("lossbook-empty");
        if (label === "verdict") {
          const verdict = cell.textContent.trim();
          const kind = ["not supported", "premise absent", "inconclusive", "supported"].find((k) =>
            verdict.toLowerCase().startsWith(k));
          if (kind) row.classList.add("verdict-" + kind.replace(" ", "-"));
          cell.textContent = "";
          const badge = document.createElement("span");
          badge.className = "lossbook-verdict";
          badge.textContent = verdict;
          cell.appendChild(badge);
        }
      });
    }
    table.classList.add("lossbook-cards");
  }
});
