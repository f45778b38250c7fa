// trimswarm admin console: live refresh without reloading the page.
// Tables marked data-live="URL" get their body rebuilt from the JSON cells at
// URL; figures marked data-live-svg="URL" get the chart SVG the server drew.
// Text goes in with textContent, so nothing from the data is parsed as HTML.
'use strict'
;(function () {
  var period = Number(document.body.getAttribute('data-refresh-ms')) || 0
  var status = document.getElementById('live-status')
  if (period <= 0) return

  function get (url, type) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: type }, cache: 'no-store' }).then(function (res) {
      if (res.status === 401) { window.location.reload(); throw new Error('logged out') }
      if (!res.ok) throw new Error(url + ': HTTP ' + res.status)
      return type === 'application/json' ? res.json() : res.text()
    })
  }

  function fillTable (table, data) {
    var tbody = table.tBodies[0]
    var cols = table.tHead.rows[0].cells
    var body = document.createElement('tbody')
    if (data.cells.length === 0) {
      var tr = body.insertRow()
      tr.className = 'empty'
      var td = tr.insertCell()
      td.colSpan = cols.length
      td.textContent = 'nothing yet'
    }
    data.cells.forEach(function (row) {
      var tr = body.insertRow()
      row.forEach(function (cell, i) {
        var td = tr.insertCell()
        if (cols[i] && cols[i].className) td.className = cols[i].className
        if (cell.length > 1 && typeof cell[1] === 'string' && cell[1].charAt(0) === '/') {
          var a = document.createElement('a')
          a.href = cell[1]
          a.textContent = cell[0]
          td.appendChild(a)
        } else {
          td.textContent = cell[0]
        }
      })
    })
    table.replaceChild(body, tbody)
  }

  function tick () {
    // a hidden tab does not poll; it catches up when shown again
    if (document.hidden) { setTimeout(tick, period); return }
    var jobs = []
    document.querySelectorAll('table[data-live]').forEach(function (t) {
      jobs.push(get(t.getAttribute('data-live'), 'application/json').then(function (d) { fillTable(t, d) }))
    })
    document.querySelectorAll('[data-live-svg]').forEach(function (f) {
      jobs.push(get(f.getAttribute('data-live-svg'), 'image/svg+xml').then(function (svg) {
        // the server draws the SVG and escapes every text in it
        if (svg.indexOf('<svg') === 0) f.innerHTML = svg
      }))
    })
    Promise.all(jobs).then(function () {
      if (status) status.textContent = 'live · updated ' + new Date().toLocaleTimeString()
      document.body.setAttribute('data-updated', String(Date.now()))
    }, function (err) {
      if (status) status.textContent = 'live · update failed: ' + err.message
    }).then(function () { setTimeout(tick, period) })
  }
  setTimeout(tick, period)
})()
