// Keyboard shortcuts of the evaluation pages (no build step, no libraries).
// Keys act only when the focus is not in a text box; Esc leaves a text box, Ctrl+Enter submits from it.
(function () {
  'use strict';
  var kind = document.body.getAttribute('data-kind');
  var form = document.getElementById('answer-form');
  var help = document.getElementById('help');
  var skipPanel = document.getElementById('skip-panel');
  var skipButton = document.getElementById('skip-button');
  var undoForm = document.getElementById('undo-form');
  var status = document.getElementById('key-status');
  var sent = false;

  function say(text) { if (status) { status.textContent = text; } }

  function isTextBox(el) {
    if (!el) { return false; }
    if (el.tagName === 'TEXTAREA') { return true; }
    return el.tagName === 'INPUT' && (el.type === 'text' || el.type === 'password');
  }

  function send(target) {
    if (sent || !target) { return; }
    sent = true;
    if (target.requestSubmit) { target.requestSubmit(); } else { target.submit(); }
  }

  function pick(name, key) {
    if (!form) { return false; }
    var inputs = form.querySelectorAll('input[name="' + name + '"]');
    for (var i = 0; i < inputs.length; i++) {
      if (inputs[i].getAttribute('data-key') === key) {
        inputs[i].checked = true;
        say('');
        return true;
      }
    }
    return false;
  }

  function checked(name) {
    var el = form && form.querySelector('input[name="' + name + '"]:checked');
    return el ? el.value : null;
  }

  // Ranking: digits append a response number, Backspace removes the last one.
  var rankingInput = document.getElementById('ranking');
  var rankingOrder = document.getElementById('ranking-order');
  var count = form ? parseInt(form.getAttribute('data-count') || '0', 10) : 0;
  function rankingList() {
    return rankingInput.value.split(',').map(function (s) { return s.trim(); }).filter(function (s) { return s !== ''; });
  }
  function showRanking() {
    if (!rankingInput) { return; }
    var list = rankingList();
    rankingOrder.textContent = list.length ? list.join(' > ') : '(none)';
  }
  if (rankingInput) { rankingInput.addEventListener('input', showRanking); }

  function ready() {
    if (!form) { return false; }
    if (kind === 'ranking') {
      var list = rankingList();
      if (list.length !== count) {
        say('Rank all ' + count + ' responses first (' + list.length + ' so far).');
        return false;
      }
      return true;
    }
    if (!form.checkValidity()) {
      say(kind === 'chat' ? 'Type a message first (press M).' : 'Choose an answer first (press ? for the keys).');
      return false;
    }
    return true;
  }

  function submitAnswer() { if (ready()) { send(form); } }

  function openSkip() {
    if (!skipPanel) { return; }
    skipPanel.hidden = false;
    document.getElementById('skip-reason').focus();
  }

  function toggleHelp(show) { if (help) { help.hidden = show === undefined ? !help.hidden : !show; } }

  if (skipButton) { skipButton.addEventListener('click', openSkip); }
  if (form) {
    form.addEventListener('submit', function (e) {
      if (!ready()) { e.preventDefault(); sent = false; }
    });
  }

  // Chat: Y / N rate the newest reply (a second press of the other key changes the thumb).
  function thumbLastReply(value) {
    var turns = document.querySelectorAll('#conversation .turn');
    if (!turns.length) { say('No reply to rate yet.'); return true; }
    var button = turns[turns.length - 1].querySelector('button[value="' + value + '"]');
    if (button && !sent) { sent = true; button.click(); }
    return true;
  }

  function kindKey(key) {
    if (kind === 'rating') { return pick('rating', key); }
    if (kind === 'chat') {
      if (key === 'y' || key === '+') { return thumbLastReply('up'); }
      if (key === 'n' || key === '-') { return thumbLastReply('down'); }
    }
    if (kind === 'thumbs') {
      if (key === 'y' || key === '+') { return pick('thumb', 'y'); }
      if (key === 'n' || key === '-') { return pick('thumb', 'n'); }
      return false;
    }
    if (kind === 'pairwise') {
      if (key === 'a' || key === 'b' || key === 't' || key === 'n') {
        pick('choice', key);
        if (key === 't' || key === 'n') {
          var s = form.querySelector('input[name="strength"]:checked');
          if (s) { s.checked = false; }
        }
        return true;
      }
      if (key === '1' || key === '2' || key === '3') {
        var choice = checked('choice');
        if (choice !== 'A' && choice !== 'B') { say('Choose A or B before saying how much better.'); return true; }
        return pick('strength', key);
      }
      return false;
    }
    if (kind === 'ranking' && rankingInput) {
      if (key === 'backspace') {
        var list = rankingList();
        list.pop();
        rankingInput.value = list.join(',');
        showRanking();
        return true;
      }
      var n = parseInt(key, 10);
      if (n >= 1 && n <= count) {
        var current = rankingList();
        if (current.indexOf(String(n)) < 0) { current.push(String(n)); }
        rankingInput.value = current.join(',');
        showRanking();
        return true;
      }
      return false;
    }
    if (kind === 'comment' || kind === 'edit' || kind === 'chat') {
      var box = form && form.querySelector('textarea[data-focus-key="' + key + '"]');
      if (box) { box.focus(); return true; }
    }
    return false;
  }

  document.addEventListener('keydown', function (e) {
    var key = e.key.toLowerCase();
    var target = e.target;
    if ((e.ctrlKey || e.metaKey) && key === 'enter') {
      if (target && target.id === 'skip-reason') { return; }
      e.preventDefault();
      submitAnswer();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (key === 'escape') {
      toggleHelp(false);
      if (isTextBox(target)) { target.blur(); }
      if (skipPanel && target && target.id === 'skip-reason') { skipPanel.hidden = true; }
      return;
    }
    if (isTextBox(target) && !(kind === 'ranking' && target === rankingInput && key === 'enter')) { return; }
    if (key === '?') { e.preventDefault(); toggleHelp(); return; }
    if (help && !help.hidden) { return; }
    if (key === 'enter') { e.preventDefault(); submitAnswer(); return; }
    if (key === 'u') { e.preventDefault(); send(undoForm); return; }
    if (key === 's' && skipPanel) { e.preventDefault(); openSkip(); return; }
    if (kindKey(key)) { e.preventDefault(); }
  });
})();
