// Ordo's pages work without this script; it only adds conveniences.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // The editor: load a chosen file into the text area (nothing is uploaded
  // until Check or Deploy is pressed).
  const upload = document.getElementById("upload");
  if (upload) {
    upload.addEventListener("change", () => {
      const file = upload.files && upload.files[0];
      if (!file) return;
      file.text().then((text) => {
        document.getElementById("source").value = text;
        document.getElementById("name").value = file.name;
      });
    });
  }
  // Forms that ask before doing something that cannot be undone.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  }
  // An instance page follows its instance: when the instance changes, the page
  // reloads itself. It polls a small JSON document every two seconds while the
  // tab is visible.
  const live = document.querySelector("[data-poll]");
  if (live) {
    const revision = live.dataset.revision;
    const poll = () => {
      if (document.hidden) return;
      fetch(live.dataset.poll, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((s) => {
          if (s && String(s.revision) !== revision) window.location.reload();
        })
        .catch(() => {});
    };
    window.setInterval(poll, 2000);
  }
});
