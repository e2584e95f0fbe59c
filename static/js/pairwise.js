/* Pairwise annotator page: keyboard shortcuts, time spent per label, small niceties.
 *
 * Every control is a plain form input, so the page works without this file; the
 * shortcuts only check radio buttons (data-key="...") and submit the form.
 * time_spent_ms runs from the moment a task is rendered to the moment it is submitted.
 */
(function () {
  "use strict";

  var ARROWS = { ArrowLeft: "1", ArrowRight: "2" };

  function labelForm() {
    return document.getElementById("label-form");
  }

  function startClock(root) {
    var form = (root && root.querySelector && root.querySelector("#label-form")) || labelForm();
    if (form && !form.dataset.startedAt) {
      form.dataset.startedAt = String(performance.now());
    }
    updateSummary();
  }

  function elapsedMs(form) {
    var start = parseFloat(form.dataset.startedAt || "NaN");
    return isNaN(start) ? "" : String(Math.max(0, Math.round(performance.now() - start)));
  }

  function updateSummary() {
    var form = labelForm();
    if (!form) return;
    warnAboutUnsafePreference(form);
    var out = form.querySelector("[data-summary]");
    if (!out) return;
    var choice = form.querySelector("input[name=choice]:checked");
    var strength = form.querySelector("input[name=strength]:checked");
    if (!choice) {
      out.textContent = "";
      return;
    }
    var winner = choice.value === "left" ? "Response 1" : "Response 2";
    var loser = choice.value === "left" ? "Response 2" : "Response 1";
    var how = strength ? strength.parentElement.querySelector("span").firstChild.textContent.trim().toLowerCase() : "…";
    out.textContent = "— " + winner + " is " + how + " than " + loser;
  }

  // Llama 2 drops "preferred unsafe, other safe" labels from safety training: make sure
  // the annotator meant it.
  function warnAboutUnsafePreference(form) {
    var box = form.querySelector("[data-safety-warning]");
    if (!box) return;
    var choice = form.querySelector("input[name=choice]:checked");
    var left = form.querySelector("input[name=safety_left]:checked");
    var right = form.querySelector("input[name=safety_right]:checked");
    var flagged = false;
    if (choice && left && right) {
      var preferred = choice.value === "left" ? left.value : right.value;
      var other = choice.value === "left" ? right.value : left.value;
      flagged = preferred === "unsafe" && other === "safe";
    }
    box.hidden = !flagged;
  }

  function isTyping(el) {
    if (!el) return false;
    var tag = el.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable) return true;
    return tag === "INPUT" && !/^(radio|checkbox|button|submit)$/.test(el.type);
  }

  function check(form, key) {
    var input = form.querySelector('input[data-key="' + key + '"]');
    if (!input) return false;
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    var card = input.closest(".response, fieldset");
    if (card) {
      card.classList.remove("pulse");
      void card.offsetWidth; // restart the animation
      card.classList.add("pulse");
    }
    return true;
  }

  document.addEventListener("keydown", function (event) {
    var form = labelForm();
    if (!form || event.altKey || event.metaKey || (event.ctrlKey && event.key !== "Enter")) return;
    var target = event.target;

    if (event.key === "Escape" && isTyping(target)) {
      target.blur();
      return;
    }
    if (event.key === "Enter") {
      if (target.tagName === "TEXTAREA" && !event.ctrlKey) return; // a newline in the comment
      if (target.closest && target.closest("#skip-form")) return; // the skip form submits itself
      if (isTyping(target) && target.tagName !== "TEXTAREA") return;
      if (target.tagName === "BUTTON" || target.tagName === "A" || target.tagName === "SUMMARY") return;
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (isTyping(target) || event.ctrlKey) return;

    var key = ARROWS[event.key] || event.key.toLowerCase();
    if (check(form, key)) {
      event.preventDefault();
      return;
    }
    if (key === "c") {
      event.preventDefault();
      form.querySelector("textarea[name=comment]").focus();
    } else if (key === "x") {
      var details = document.querySelector("#skip-form details");
      if (details) {
        event.preventDefault();
        details.open = true;
        details.querySelector("input[name=reason]").focus();
      }
    }
  });

  // Clicking anywhere on a response card (outside its safety buttons) chooses it.
  document.addEventListener("click", function (event) {
    var card = event.target.closest && event.target.closest(".response");
    if (!card || event.target.closest("fieldset, a, button, input, label")) return;
    if (window.getSelection && String(window.getSelection()).length) return; // selecting text
    var input = card.querySelector("input[name=choice]");
    if (input) {
      input.checked = true;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target.form && event.target.form.id === "label-form") updateSummary();
  });

  // Stamp the time spent just before the form is read, by htmx or by a plain POST.
  document.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      if (form.id !== "label-form") return;
      form.querySelector("input[name=time_spent_ms]").value = elapsedMs(form);
    },
    true
  );

  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "label-form") {
      event.detail.parameters.time_spent_ms = elapsedMs(form);
    }
  });

  document.addEventListener("htmx:load", function (event) {
    startClock(event.detail && event.detail.elt);
  });

  document.addEventListener("htmx:afterSwap", function () {
    hideError();
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
  });

  function showError(text) {
    var box = document.getElementById("net-error");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
  }

  function hideError() {
    var box = document.getElementById("net-error");
    if (box) box.hidden = true;
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : "?";
    var text = status === 403 ? "You are not allowed to do that (403)." : "The server could not save this (error " + status + "). Please try again.";
    showError(text);
  });

  document.addEventListener("htmx:sendError", function () {
    showError("Could not reach the server. Your answer was not saved; check your connection and try again.");
  });

  document.addEventListener("DOMContentLoaded", function () {
    startClock(document);
  });
})();
