// Line charts drawn on the server as inline SVG: the dashboard needs no script and no CDN, so it
// works offline and in any browser. One chart = axes with ticks and labels, one polyline per run of
// finite points of each series (a NaN or infinite value breaks the line), a dot for a lone point.

import Foundation

/// A line chart over (x, y) points, rendered as an `<svg>` element.
///
/// ```swift
/// let chart = LineChart(title: "loss", series: [.init(name: "wide_loss", points: [(0, 0.7), (10, 0.5)])])
/// let html = chart.svg()
/// ```
public struct LineChart: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var points: [Point]
        public var color: String
        public init(name: String, points: [(Double, Double)], color: String? = nil) {
            self.name = name
            self.points = points.map { Point(x: $0.0, y: $0.1) }
            self.color = color ?? ""
        }
    }

    public struct Point: Sendable, Equatable {
        public var x: Double
        public var y: Double
        public init(x: Double, y: Double) { self.x = x; self.y = y }
    }

    /// The plot area inside the SVG (pixels; y grows downwards).
    public struct Frame: Sendable, Equatable {
        public var left: Double, top: Double, width: Double, height: Double
        public init(left: Double, top: Double, width: Double, height: Double) {
            self.left = left; self.top = top; self.width = width; self.height = height
        }
        public var right: Double { left + width }
        public var bottom: Double { top + height }
    }

    /// How x values are labelled: plain numbers, or ms since the epoch shown as UTC clock time.
    public enum XAxis: Sendable { case number, timeMs }

    public static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    public var title: String
    public var series: [Series]
    public var width: Double = 600
    public var height: Double = 220
    public var xAxis: XAxis = .timeMs
    public var xLabel: String = "time (UTC)"
    public var yLabel: String = ""

    public init(title: String, series: [Series], xAxis: XAxis = .timeMs, xLabel: String = "time (UTC)", yLabel: String = "",
                width: Double = 600, height: Double = 220) {
        self.title = title
        self.series = series.enumerated().map { i, s in
            var s = s
            if s.color.isEmpty { s.color = LineChart.palette[i % LineChart.palette.count] }
            return s
        }
        self.xAxis = xAxis; self.xLabel = xLabel; self.yLabel = yLabel; self.width = width; self.height = height
    }

    public var frame: Frame { Frame(left: 64, top: 28, width: width - 64 - 16, height: height - 28 - 44) }

    /// The data ranges: over the finite points; a flat range is widened so the line sits in the middle.
    public var ranges: (x: ClosedRange<Double>, y: ClosedRange<Double>)? {
        let pts = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        guard let first = pts.first else { return nil }
        var (x0, x1, y0, y1) = (first.x, first.x, first.y, first.y)
        for p in pts { x0 = min(x0, p.x); x1 = max(x1, p.x); y0 = min(y0, p.y); y1 = max(y1, p.y) }
        func widened(_ a: Double, _ b: Double) -> ClosedRange<Double> {
            if b > a { return a...b }
            let pad = a == 0 ? 1 : abs(a) * 0.1
            return (a - pad)...(b + pad)
        }
        return (widened(x0, x1), widened(y0, y1))
    }

    /// Pixel position of a data point in `frame` for the given ranges.
    public static func project(_ p: Point, frame: Frame, x: ClosedRange<Double>, y: ClosedRange<Double>) -> (Double, Double) {
        let fx = (p.x - x.lowerBound) / (x.upperBound - x.lowerBound)
        let fy = (p.y - y.lowerBound) / (y.upperBound - y.lowerBound)
        return (frame.left + fx * frame.width, frame.bottom - fy * frame.height)
    }

    /// The runs of consecutive finite points of a series, each as pixel coordinates.
    public func segments(of s: Series) -> [[(Double, Double)]] {
        guard let r = ranges else { return [] }
        var out: [[(Double, Double)]] = [], run: [(Double, Double)] = []
        for p in s.points {
            if p.x.isFinite && p.y.isFinite {
                run.append(Self.project(p, frame: frame, x: r.x, y: r.y))
            } else if !run.isEmpty {
                out.append(run); run = []
            }
        }
        if !run.isEmpty { out.append(run) }
        return out
    }

    /// The `points` attribute of a polyline ("x,y x,y …", two decimals).
    public static func pointsAttribute(_ run: [(Double, Double)]) -> String {
        run.map { String(format: "%.2f,%.2f", $0.0, $0.1) }.joined(separator: " ")
    }

    public func svg() -> String {
        let f = frame
        var out = #"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="\#(Int(width))" height="\#(Int(height))" "#
            + #"viewBox="0 0 \#(Int(width)) \#(Int(height))" role="img" aria-label="\#(escapeHTML(title))">"#
        out += #"<rect x="0" y="0" width="\#(Int(width))" height="\#(Int(height))" fill="white"/>"#
        out += #"<text x="\#(Int(f.left))" y="16" class="chart-title" font-size="13" font-weight="bold">\#(escapeHTML(title))</text>"#
        // Axes.
        out += line(f.left, f.top, f.left, f.bottom, stroke: "#444")
        out += line(f.left, f.bottom, f.right, f.bottom, stroke: "#444")
        guard let r = ranges else {
            out += #"<text x="\#(fmt(f.left + f.width / 2))" y="\#(fmt(f.top + f.height / 2))" text-anchor="middle" fill="gray" font-size="12">no data yet</text>"#
            return out + "</svg>"
        }
        // Y ticks with grid lines.
        for i in 0...4 {
            let v = r.y.lowerBound + Double(i) / 4 * (r.y.upperBound - r.y.lowerBound)
            let py = f.bottom - Double(i) / 4 * f.height
            out += line(f.left - 4, py, f.right, py, stroke: i == 0 ? "#444" : "#e5e5e5")
            out += #"<text x="\#(fmt(f.left - 6))" y="\#(fmt(py + 4))" text-anchor="end" font-size="11">\#(Self.tickLabel(v))</text>"#
        }
        // X ticks.
        for i in 0...3 {
            let v = r.x.lowerBound + Double(i) / 3 * (r.x.upperBound - r.x.lowerBound)
            let px = f.left + Double(i) / 3 * f.width
            out += line(px, f.bottom, px, f.bottom + 4, stroke: "#444")
            let label = xAxis == .timeMs ? Self.clock(v) : Self.tickLabel(v)
            let anchor = i == 0 ? "start" : i == 3 ? "end" : "middle"
            out += #"<text x="\#(fmt(px))" y="\#(fmt(f.bottom + 17))" text-anchor="\#(anchor)" font-size="11">\#(label)</text>"#
        }
        out += #"<text x="\#(fmt(f.left + f.width / 2))" y="\#(fmt(height - 6))" text-anchor="middle" font-size="11" fill="dimgray">\#(escapeHTML(xLabel))</text>"#
        if !yLabel.isEmpty {
            out += #"<text x="12" y="\#(fmt(f.top + f.height / 2))" text-anchor="middle" font-size="11" fill="dimgray" "#
                + #"transform="rotate(-90 12 \#(fmt(f.top + f.height / 2)))">\#(escapeHTML(yLabel))</text>"#
        }
        // Series.
        for s in series {
            for run in segments(of: s) {
                if run.count == 1 {
                    out += #"<circle cx="\#(fmt(run[0].0))" cy="\#(fmt(run[0].1))" r="3" fill="\#(s.color)"/>"#
                } else {
                    out += #"<polyline fill="none" stroke="\#(s.color)" stroke-width="1.8" data-series="\#(escapeHTML(s.name))" "#
                        + #"points="\#(Self.pointsAttribute(run))"/>"#
                }
            }
        }
        // Legend (top right), with each series' last finite value.
        var lx = f.right
        for s in series.reversed() {
            let last = s.points.last { $0.y.isFinite }.map { " " + Self.tickLabel($0.y) } ?? ""
            let text = escapeHTML(s.name + last)
            lx -= Double(text.count) * 6.5 + 22
            out += #"<rect x="\#(fmt(lx))" y="8" width="10" height="10" fill="\#(s.color)"/>"#
            out += #"<text x="\#(fmt(lx + 14))" y="17" font-size="11">\#(text)</text>"#
        }
        return out + "</svg>"
    }

    private func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String) -> String {
        #"<line x1="\#(fmt(x1))" y1="\#(fmt(y1))" x2="\#(fmt(x2))" y2="\#(fmt(y2))" stroke="\#(stroke)" stroke-width="1"/>"#
    }

    /// A compact number: 3 significant digits, k/M for large values.
    public static func tickLabel(_ v: Double) -> String {
        let a = abs(v)
        if a >= 1e6 { return String(format: "%.3gM", v / 1e6) }
        if a >= 1e4 { return String(format: "%.3gk", v / 1e3) }
        if a >= 100 { return String(format: "%.0f", v) }
        if a == 0 { return "0" }
        return String(format: "%.3g", v)
    }

    /// HH:mm:ss (UTC) of a time in ms since the epoch.
    public static func clock(_ ms: Double) -> String {
        let s = Int((ms / 1000).rounded(.down))
        let d = ((s % 86_400) + 86_400) % 86_400
        return String(format: "%02d:%02d:%02d", d / 3600, d / 60 % 60, d % 60)
    }
}

private func fmt(_ v: Double) -> String { String(format: "%.2f", v) }

/// Text for HTML (element content and attribute values).
public func escapeHTML(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(c)
        }
    }
    return out
}
