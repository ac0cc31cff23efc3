// The dashboard's one HTML page: plain HTML and inline SVG (no script, no external resource), a
// <meta refresh> reloads it. Sections: trainer (figures and curves), serving, feature pipeline
// (partitions, workers, shards), checkpoints.

import FeatureStore
import Foundation

public enum DashboardPage {
    /// The page for a snapshot; `refreshSeconds` goes into the meta refresh.
    public static func render(_ s: DashboardSnapshot, refreshSeconds: Int) -> String {
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta http-equiv="refresh" content="\(refreshSeconds)">
        <title>StreamRec dashboard</title>
        <style>
        body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; background: #f6f7f9; }
        h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 22px 0 8px; border-bottom: 1px solid #ccc; }
        .sub { color: #666; font-size: 12px; }
        .cards { display: flex; flex-wrap: wrap; gap: 10px; }
        .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 120px; }
        .card .v { font-size: 20px; font-weight: 600; } .card .k { color: #666; font-size: 12px; }
        .charts { display: flex; flex-wrap: wrap; gap: 10px; }
        .chart { border: 1px solid #ddd; border-radius: 6px; }
        table { border-collapse: collapse; background: #fff; font-size: 13px; }
        th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #eef0f3; }
        td.l, th.l { text-align: left; }
        .bad { color: #b00020; font-weight: 600; } .ok { color: #1b7f3b; } .note { color: #8a5a00; }
        </style></head><body>
        <h1>StreamRec cluster</h1>
        <div class="sub">Redis \(escapeHTML(s.redis)) · prefix \(escapeHTML(s.prefix)) · \(escapeHTML(s.serveURL.map { "serve \($0)" } ?? "no serve"))
         · updated \(escapeHTML(iso(s.generatedMs))) · refreshes every \(refreshSeconds) s · <a href="dashboard.json">JSON</a></div>

        """
        h += trainerSection(s)
        h += servingSection(s)
        h += pipelineSection(s)
        h += checkpointsSection(s)
        h += "</body></html>\n"
        return h
    }

    // MARK: Trainer

    static func trainerSection(_ s: DashboardSnapshot) -> String {
        var h = #"<h2 id="trainer">Trainer</h2>"#
        if let e = s.trainerError { h += #"<p class="note">\#(escapeHTML(e))</p>"# }
        let latest = s.latest
        let step = s.trainer.map { max($0.step, latest?.step ?? 0) } ?? latest?.step
        var cards: [(String, String)] = []
        if let step { cards.append(("step", "\(step)")) }
        // The heartbeat (every 20 steps) and the history (every --log-every steps, and the final
        // step): whichever is newer.
        let samples = latest.map { p in s.trainer.map { $0.step > p.step ? $0.samplesTrained : p.samples } ?? p.samples }
            ?? s.trainer?.samplesTrained
        if let samples { cards.append(("samples trained", "\(samples)")) }
        if let r = latest?.ranks ?? s.trainer?.ranks { cards.append(("ranks", "\(r)")) }
        if let p = latest { cards.append(("samples/s", String(format: "%.0f", p.samplesPerSecond))) }
        if let kind = latest?.kind { cards.append(("model", kind)) }
        for name in ["pv_auc", "pv_ndcg@10"] { if let v = latest?.metrics[name] { cards.append((name, String(format: "%.4f", v))) } }
        if let f = latest?.freshnessMs { cards.append(("event → trained", duration(ms: f))) }
        // The checkpoints root knows the final version too (written after the last point).
        if let c = s.checkpoints.last(where: \.latest)?.version ?? latest?.checkpoint { cards.append(("newest checkpoint", c)) }
        if let t = s.trainer {
            let age = Double(s.generatedMs - t.updatedMs) / 1000
            cards.append(("heartbeat", String(format: "%.0f s ago", max(0, age))))
        }
        h += cardsHTML(cards, id: "trainer-cards")
        let history = s.history
        guard !history.isEmpty else {
            return h + #"<p class="note">No history yet: the trainer writes a point every --log-every steps.</p>"#
        }
        h += #"<div class="charts" id="trainer-charts">"#
        func series(_ name: String, _ value: (TrainerHistoryPoint) -> Double?) -> LineChart.Series {
            LineChart.Series(name: name, points: history.map { (Double($0.timeMs), value($0) ?? .nan) })
        }
        let names = Set(history.flatMap(\.metrics.keys))
        // Progressive validation first (the quality curve), then the loss terms, one chart each:
        // their scales differ too much for one axis.
        let quality = names.filter { $0.hasPrefix("pv_") }.sorted()
        let losses = names.subtracting(quality).sorted()
        for name in quality + losses {
            h += LineChart(title: name, series: [series(name) { $0.metrics[name] }]).svg()
        }
        h += LineChart(title: "step", series: [series("step") { Double($0.step) }]).svg()
        h += LineChart(title: "samples per second", series: [series("samples/s") { $0.samplesPerSecond }]).svg()
        if history.contains(where: { $0.freshnessMs != nil }) {
            h += LineChart(title: "freshness: Kafka event → trained (s)", series: [series("freshness s") { $0.freshnessMs.map { $0 / 1000 } }]).svg()
        }
        return h + "</div>"
    }

    // MARK: Serving

    static func servingSection(_ s: DashboardSnapshot) -> String {
        guard s.serveURL != nil else { return "" }
        var h = #"<h2 id="serving">Serving</h2>"#
        if let e = s.serveError { h += #"<p class="bad">\#(escapeHTML(e))</p>"# }
        if let m = s.served {
            var cards: [(String, String)] = [("served version", m.modelVersion), ("model", m.modelKind), ("step", "\(m.step)"),
                                             ("samples trained", "\(m.samplesTrained)"), ("loaded at", m.loadedAt)]
            if let trainerStep = s.trainer?.step ?? s.latest?.step { cards.append(("steps behind the trainer", "\(max(0, trainerStep - m.step))")) }
            h += cardsHTML(cards, id: "served")
            if !m.metrics.isEmpty {
                h += #"<p>Checkpoint metrics: "# + m.metrics.sorted { $0.key < $1.key }
                    .map { "\(escapeHTML($0.key)) <b>\(String(format: "%.4f", $0.value))</b>" }.joined(separator: " · ") + "</p>"
            }
        }
        let metrics = s.serveMetrics
        if !metrics.isEmpty {
            func sum(_ name: String) -> Double { metrics.filter { $0.key.hasPrefix(name) }.values.reduce(0, +) }
            let requests = sum("streamrec_serve_requests_total")
            let errors = metrics.filter { $0.key.hasPrefix("streamrec_serve_requests_total") && $0.key.contains("status=\"5") }.values.reduce(0, +)
            let latencySum = sum("streamrec_serve_request_duration_seconds_sum"), latencyCount = sum("streamrec_serve_request_duration_seconds_count")
            var cards: [(String, String)] = [("requests", String(format: "%.0f", requests)), ("5xx", String(format: "%.0f", errors))]
            if latencyCount > 0 { cards.append(("mean latency", duration(ms: latencySum / latencyCount * 1000))) }
            cards += [("reloads", String(format: "%.0f", sum("streamrec_serve_reloads_total"))),
                      ("rejected checkpoints", String(format: "%.0f", sum("streamrec_serve_rejected_checkpoints_total"))),
                      ("rows predicted", String(format: "%.0f", sum("streamrec_serve_rows_predicted_total"))),
                      ("last load", duration(ms: sum("streamrec_serve_model_load_seconds") * 1000))]
            h += "<p></p>" + cardsHTML(cards, id: "serve-metrics")
        }
        return h
    }

    // MARK: Feature pipeline

    static func pipelineSection(_ s: DashboardSnapshot) -> String {
        var h = #"<h2 id="pipeline">Feature pipeline</h2>"#
        if let e = s.clusterError { h += #"<p class="bad">\#(escapeHTML(e))</p>"# }
        guard let c = s.cluster else { return h }
        let lagKnown = c.partitions.contains { $0.lag != nil }
        let totalLag = c.partitions.compactMap(\.lag).reduce(0, +)
        var cards: [(String, String)] = [("partitions", "\(c.partitions.count)"),
                                         ("workers", "\(c.workers.filter { !$0.dead }.count) live / \(c.workers.count)")]
        if lagKnown { cards.append(("total lag", "\(totalLag)")) }
        cards += [("rows in store", "\(c.shards.map(\.rows).reduce(0, +))"),
                  ("batches pending", "\(c.shards.map(\.pending).reduce(0, +))"),
                  ("dead letters", "\(c.deadLettersTotal)"), ("lost upstream", "\(c.lostUpstream.values.reduce(0, +))"),
                  ("dictionary", "\(c.dictionaryState), \(c.dictionaryNextId) ids")]
        h += cardsHTML(cards, id: "pipeline-cards")
        if let note = s.lagNote { h += #"<p class="note">\#(escapeHTML(note))</p>"# }
        h += #"<h3>Partitions (\#(c.partitions.count))</h3><table id="partitions"><tr><th class="l">topic</th><th>partition</th><th>progress</th>"#
            + #"<th>high watermark</th><th>lag</th><th>lost upstream</th><th class="l">owner</th></tr>"#
        for p in c.partitions {
            let owner = p.owner.map { "\(escapeHTML($0)) (token \(p.leaseToken ?? 0))" } ?? #"<span class="bad">NO OWNER</span>"#
            h += "<tr class=\"partition\"><td class=\"l\">\(escapeHTML(p.topic))</td><td>\(p.partition)</td><td>\(p.progress)</td>"
                + "<td>\(p.highWatermark.map(String.init) ?? "–")</td><td>\(p.lag.map(String.init) ?? "–")</td>"
                + "<td>\(p.lostUpstream)</td><td class=\"l\">\(owner)</td></tr>"
        }
        h += "</table>"
        h += #"<h3>Workers (\#(c.workers.count))</h3><table id="workers"><tr><th class="l">worker</th><th class="l">state</th><th>heartbeat</th>"#
            + #"<th class="l">partitions</th><th>rows</th><th>batches</th><th>dead letters</th><th class="l">paused</th></tr>"#
        for w in c.workers {
            let state = w.dead ? #"<span class="bad">DEAD</span>"# : #"<span class="ok">live</span>"#
            func f(_ k: String) -> String { escapeHTML(w.info[k] ?? "–") }
            h += "<tr class=\"worker\"><td class=\"l\">\(escapeHTML(w.id))</td><td class=\"l\">\(state)</td>"
                + String(format: "<td>%.1f s ago</td>", w.heartbeatAgeSeconds)
                + "<td class=\"l\">\(f("partitions"))</td><td>\(f("rows"))</td><td>\(f("batches"))</td><td>\(f("dead_letters"))</td><td class=\"l\">\(f("paused"))</td></tr>"
        }
        h += "</table>"
        h += #"<h3>Feature shards (\#(c.shards.count))</h3><table id="shards"><tr><th>shard</th><th>batches appended</th><th>rows</th>"#
            + "<th>trained</th><th>pending</th><th>in stream</th></tr>"
        for sh in c.shards {
            h += "<tr><td>\(sh.shard)</td><td>\(sh.appended)</td><td>\(sh.rows)</td><td>\(sh.trained)</td><td>\(sh.pending)</td><td>\(sh.streamLength)</td></tr>"
        }
        return h + "</table>"
    }

    // MARK: Checkpoints

    static func checkpointsSection(_ s: DashboardSnapshot) -> String {
        var h = #"<h2 id="checkpoints">Checkpoints</h2><div class="sub">from \#(escapeHTML(s.checkpointsSource))</div>"#
        if let e = s.checkpointsError { h += #"<p class="note">\#(escapeHTML(e))</p>"# }
        guard !s.checkpoints.isEmpty else { return h + "<p>None yet.</p>" }
        h += #"<table id="checkpoint-table"><tr><th class="l">version</th><th>step</th><th class="l">created</th><th>samples</th><th class="l">metrics</th></tr>"#
        for c in s.checkpoints.reversed() {
            let served = c.version == s.served?.modelVersion ? " (served)" : ""
            let metrics = c.problem.map { #"<span class="bad">PROBLEM: \#(escapeHTML($0))</span>"# }
                ?? c.metrics.sorted { $0.key < $1.key }.map { "\(escapeHTML($0.key))=\(String(format: "%.4f", $0.value))" }.joined(separator: " ")
            h += "<tr><td class=\"l\">\(escapeHTML(c.version))\(c.latest ? " ★" : "")\(served)</td><td>\(c.step)</td>"
                + "<td class=\"l\">\(escapeHTML(c.createdAt ?? "?"))</td><td>\(c.samplesTrained.map(String.init) ?? "–")</td><td class=\"l\">\(metrics)</td></tr>"
        }
        return h + "</table>"
    }

    // MARK: Helpers

    static func cardsHTML(_ cards: [(String, String)], id: String) -> String {
        #"<div class="cards" id="\#(id)">"# + cards.map { k, v in
            #"<div class="card"><div class="v">\#(escapeHTML(v))</div><div class="k">\#(escapeHTML(k))</div></div>"#
        }.joined() + "</div>"
    }

    static func duration(ms: Double) -> String {
        if !ms.isFinite { return "–" }
        if ms < 1 { return String(format: "%.2f ms", ms) }
        if ms < 1000 { return String(format: "%.0f ms", ms) }
        return String(format: "%.1f s", ms / 1000)
    }

    static func iso(_ ms: Int64) -> String { DashboardCollector.iso8601(ms: ms) }
}
